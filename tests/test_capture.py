"""record(): what every snapshot holds, and what it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from conftest import rows

import replay
from replay.core.digest import table_digest
from replay.core.manifest import Manifest
from replay.errors import CaptureError, InputError, StepError
from replay.store import commit


def _entry(store: replay.Store, run_id: str) -> dict:
    return next(e for _, e in store.entries() if e["run_id"] == run_id)


def _spec(store: replay.Store, manifest: Manifest) -> dict:
    return json.loads(store.get_object(manifest.version))


def test_record_returns_the_run_id_and_the_last_steps_output(store, toy) -> None:
    result = replay.record(toy, rows(3), store=store, record_key="id")
    assert result.output.column_names == ["id", "x", "score", "label", "noise", "at"]
    assert result.output["score"].to_pylist() == [0.0, 2.0, 4.0]
    assert _entry(store, result.run_id)["seq"] == result.seq == 1


def test_run_ids_sort_in_the_order_runs_were_recorded(store, toy) -> None:
    ids = [replay.record(toy, rows(1), store=store).run_id for _ in range(20)]
    assert ids == sorted(ids)


def test_the_manifest_names_input_and_every_step_output_by_content_digest(store, toy) -> None:
    result = replay.record(toy, rows(4), store=store, record_key="id")
    m = _entry(store, result.run_id)["manifest"]
    assert m["input"] == {"digest": table_digest(rows(4)), "rows": 4}
    assert [s["name"] for s in m["steps"]] == ["scale", "label"]
    assert m["steps"][-1]["output"] == table_digest(result.output)
    assert m["steps"][1]["inputs"] == [m["steps"][0]["output"]]


def test_step_code_is_stored_as_a_pickle_and_as_source_text(store, toy) -> None:
    result = replay.record(toy, rows(1), store=store)
    step = _spec(store, result.manifest)["steps"][0]
    assert b"scale" in store.get_object(step["code"])
    assert "def scale(" in store.get_object(step["source"]).decode()
    assert json.loads(store.get_object(step["params"])) == {"k": 2.0}


def test_the_logical_clock_and_seeds_are_recorded(store, toy) -> None:
    at = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    result = replay.record(toy, rows(2), store=store, at=at)
    assert result.output["at"].to_pylist() == [at.isoformat()] * 2
    assert result.manifest.clock == at.isoformat()
    assert set(result.manifest.steps[1].seeds) == {"jitter"}


def test_external_calls_are_recorded_on_a_tape(store) -> None:
    def lookup(table: pa.Table, *, ctx: replay.RunContext) -> pa.Table:
        answers = ctx.call("bureau", lambda ids: [len(i) for i in ids], table["id"].to_pylist())
        return table.append_column("n", pa.array(answers))

    pipe = replay.Pipeline("tape", [replay.Step("lookup", lookup)])
    result = replay.record(pipe, rows(2), store=store)
    entry = _entry(store, result.run_id)
    tape = json.loads(store.block(entry["block"]).blob(result.run_id, "tape"))
    assert tape["lookup"][0]["name"] == "bureau"
    assert tape["lookup"][0]["answer"] == [2, 2]
    assert entry["manifest"]["steps"][0]["calls"] == 1


def test_the_environment_is_recorded_once_with_a_package_lock(store, toy) -> None:
    a = replay.record(toy, rows(1), store=store).manifest.env
    b = replay.record(toy, rows(1), store=store).manifest.env
    env = json.loads(store.get_object(a))
    assert a == b
    assert env["python"]["version"].count(".") == 2
    assert env["image"] == replay.capture.environment.image()  # see test_image_identity.py
    lock = json.loads(store.get_object(env["packages"]["lock_sha256"]))
    assert any(p.startswith("pyarrow==") for p in lock)


def test_a_model_used_by_a_thousand_runs_is_stored_once(store, tmp_path: Path) -> None:
    import numpy as np

    weights = np.random.default_rng(0).random(100_000)  # ~800 KB pickled

    def predict(table: pa.Table, *, models: dict) -> pa.Table:
        return table.append_column("p", pa.array([float(models["w"][0])] * table.num_rows))

    pipe = replay.Pipeline("big-model", [replay.Step("p", predict, models={"w": weights})])
    replay.record(pipe, rows(1), store=store)
    after_first = _size(store.root)
    for i in range(1000):
        replay.record(pipe, rows(1, i), store=store)
    per_run = (_size(store.root) - after_first) / 1000
    assert per_run < 5_000, per_run  # rows and a manifest, never another model copy
    assert sum(1 for d, p in store.objects if p.stat().st_size > 500_000) == 1


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_the_step_runs_on_a_copy_so_later_mutation_cannot_falsify_the_snapshot(store) -> None:
    model = {"threshold": 1}

    def cut(table: pa.Table, *, models: dict) -> pa.Table:
        return table.append_column("t", pa.array([models["m"]["threshold"]] * table.num_rows))

    pipe = replay.Pipeline("mut", [replay.Step("cut", cut, models={"m": model})])
    replay.record(pipe, rows(1), store=store)
    model["threshold"] = 99
    assert replay.record(pipe, rows(1), store=store).output["t"].to_pylist() == [1]


def test_a_model_file_changed_on_disk_is_captured_again(store, tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"v": 1}))

    def use(table: pa.Table, *, models: dict) -> pa.Table:
        return table.append_column("v", pa.array([models["m"]["v"]] * table.num_rows))

    pipe = replay.Pipeline("file-model", [replay.Step("use", use, models={"m": path})])
    first = replay.record(pipe, rows(1), store=store)
    path.write_bytes(pickle.dumps({"v": 2}))
    second = replay.record(pipe, rows(1), store=store)
    assert second.output["v"].to_pylist() == [2]
    assert first.manifest.version != second.manifest.version
    m1, m2 = (_spec(store, r.manifest)["steps"][0]["models"]["m"] for r in (first, second))
    assert m1["digest"] != m2["digest"] and m1["kind"] == "file"


def test_pandas_input_is_accepted(store, toy) -> None:
    df = pd.DataFrame({"id": ["a", "b"], "x": [1.0, 2.0]})
    assert replay.record(toy, df, store=store).output.num_rows == 2


@pytest.mark.parametrize(
    ("inputs", "key", "message"),
    [
        (rows(0), None, "no rows"),
        (rows(2), "missing", "record key column 'missing' is not in the input"),
        (pa.table({"id": ["a", None], "x": [1.0, 2.0]}), "id", "1 null values"),
        ([1, 2, 3], None, "not a table"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_recorded(
    store, toy, inputs, key, message
) -> None:
    with pytest.raises(InputError, match=message):
        replay.record(toy, inputs, store=store, record_key=key)
    assert list(store.entries()) == []


def test_a_step_that_raises_is_recorded_as_a_failed_run(store) -> None:
    def boom(table: pa.Table) -> pa.Table:
        raise ValueError("bureau unavailable")

    pipe = replay.Pipeline("fails", [replay.Step("boom", boom)])
    with pytest.raises(StepError, match="bureau unavailable") as info:
        replay.record(pipe, rows(1), store=store)
    entries = [e for _, e in store.entries()]
    assert entries[0]["manifest"]["status"] == "failed"
    assert entries[0]["manifest"]["error"]["step"] == "boom"
    assert entries[0]["run_id"] in str(info.value)


def test_a_step_returning_something_else_than_a_table_fails_clearly(store) -> None:
    pipe = replay.Pipeline("wrong", [replay.Step("s", lambda t: 42)])
    with pytest.raises(StepError, match="returned int, not a table"):
        replay.record(pipe, rows(1), store=store)


def test_a_model_that_cannot_be_pickled_is_a_capture_error(store) -> None:
    import threading

    pipe = replay.Pipeline(
        "lock", [replay.Step("s", lambda t, models: t, models={"m": threading.Lock()})]
    )
    with pytest.raises(CaptureError, match="model 'm' cannot be pickled"):
        replay.record(pipe, rows(1), store=store)


def test_async_recording_is_durable_after_flush(tmp_path: Path, toy) -> None:
    store = replay.Store.open(tmp_path / "s", durable=False)
    results = [replay.record(toy, rows(1, i), store=store) for i in range(50)]
    store.flush()
    assert store.pending == 0
    assert {e["run_id"] for _, e in store.entries()} == {r.run_id for r in results}


def _blocks(store: replay.Store) -> list[tuple[str, int]]:
    return [(e["block"]["segment"], e["block"]["offset"]) for _, e in store.entries()]


def test_asynchronous_runs_recorded_one_after_another_share_one_group(
    tmp_path: Path, toy, monkeypatch
) -> None:
    monkeypatch.setattr(commit, "LINGER", 600.0)  # only a flush ends this group's wait
    store = replay.Store.open(tmp_path / "s", durable=False)
    for i in range(3):
        replay.record(toy, rows(1, i), store=store)
    assert store.pending == 3
    store.flush()
    assert store.pending == 0
    assert len(set(_blocks(store))) == 1


def test_a_durable_run_ends_the_wait_of_the_asynchronous_runs_before_it(
    tmp_path: Path, toy, monkeypatch
) -> None:
    monkeypatch.setattr(commit, "LINGER", 600.0)
    store = replay.Store.open(tmp_path / "s", durable=False)
    for i in range(2):
        replay.record(toy, rows(1, i), store=store)
    last = replay.record(toy, rows(1, 2), store=store, durable=True)
    assert last.seq == 3
    assert len(set(_blocks(store))) == 1


def test_asynchronous_runs_still_waiting_at_a_normal_exit_are_written(tmp_path: Path) -> None:
    child = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import replay\n"
        "from replay.store import commit\n"
        "from conftest import rows\n"
        "commit.LINGER = 600.0  # the group would wait for more runs past the exit\n"
        "store = replay.Store.open(sys.argv[1], durable=False)\n"
        "pipe = replay.Pipeline('same', [replay.Step('same', lambda t: t)])\n"
        "print(' '.join(replay.record(pipe, rows(1, i), store=store).run_id for i in range(3)))\n"
    )
    run = [sys.executable, "-c", child, str(tmp_path / "s")]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120).stdout
    written = {e["run_id"] for _, e in replay.Store.open(tmp_path / "s").entries()}
    assert written == set(out.split())


def _record_big(store_path: str) -> None:
    replay.record(
        replay.Pipeline("wide", [replay.Step("same", lambda t: t)]),
        rows(5000),
        store=replay.Store.open(Path(store_path)),
        record_key="id",
    )


def test_a_big_run_is_recorded_with_its_digests_computed_alongside_the_next_step(store) -> None:
    pipe = replay.Pipeline(
        "wide", [replay.Step("same", lambda t: t), replay.Step("again", lambda t: t)]
    )
    result = replay.record(pipe, rows(5000), store=store, record_key="id")
    steps = result.manifest.steps
    assert steps[0].inputs == [table_digest(rows(5000))] == [steps[1].output]
    assert replay.replay(store, result.run_id).verdict == "exact"


def test_a_forked_process_records_big_runs_after_its_parent_did(store) -> None:
    """The threads that digest big outputs do not survive fork; the child makes its own."""
    import multiprocessing

    _record_big(str(store.root))
    child = multiprocessing.get_context("fork").Process(target=_record_big, args=(str(store.root),))
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # hung on a digest thread it did not have
        child.kill()
    assert child.exitcode == 0
    assert sum(1 for _ in replay.Store.open(store.root).entries()) == 2
