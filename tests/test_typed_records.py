"""Specs, manifests and environments are typed records that give back the JSON a store holds.

A spec's digest is its pipeline version, so reading one into a typed value and writing it
out again must reproduce its bytes; likewise an environment's, and a manifest's value. This
holds for the stores of every earlier format (tests/assets/store-*) and for a run recorded
now that uses every kind of component.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import rows

import replay
from replay.core.digest import canonical_json
from replay.core.manifest import Entry, Environment, Manifest, Spec, convert, decode, encode, plain
from replay.errors import CorruptionError

ASSETS = Path(__file__).parent / "assets"
GOLDEN = sorted(p.name for p in ASSETS.glob("store-*"))
NOON = datetime(2026, 3, 14, 12, tzinfo=UTC)


def _read_back(store: replay.Store) -> int:
    """Check every run's manifest and spec against the stored JSON; how many were read."""
    seen = 0
    for _, entry in store.entries():
        manifest = convert(Manifest, entry["manifest"], entry["run_id"])
        assert plain(manifest) == entry["manifest"]
        line = {k: v for k, v in entry.items() if k != "manifest"}
        assert plain(convert(Entry, line, entry["run_id"])) == line
        for kind, digest in ((Spec, manifest.version), (Environment, manifest.env)):
            raw = store.get_object(digest)
            assert encode(decode(kind, raw, digest)) == raw
        seen += 1
    return seen


@pytest.mark.parametrize("name", GOLDEN)
def test_every_earlier_format_reads_back_to_the_json_it_stored(name: str, tmp_path) -> None:
    shutil.copytree(ASSETS / name, tmp_path / "store")
    assert _read_back(replay.Store.open(tmp_path / "store")) > 0


def _weights(folder: Path) -> dict[str, float]:
    return {p.name: float(p.read_text()) for p in sorted(folder.iterdir())}


def _score(
    table: pa.Table, *, models: dict[str, object], data: dict[str, pa.Table], params: dict
) -> pa.Table:
    folder = models["folder"]
    assert isinstance(folder, dict)
    bias = data["bias"].column("b")[0].as_py()
    score = [float(x) * folder["w.txt"] + bias + params["shift"] for x in table.column("x")]
    return table.append_column("score", pa.array(score))


def _decide(table: pa.Table, *, ctx: replay.RunContext) -> pa.Table:
    draw = ctx.call("bureau", lambda n: [1] * n, table.num_rows)
    return table.append_column("decision", pa.array(["approve" if d else "refer" for d in draw]))


def test_a_run_with_every_kind_of_component_reads_back_exactly(store, tmp_path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.txt").write_text("2.5")
    bias = tmp_path / "bias.parquet"
    pq.write_table(pa.table({"b": [0.5]}), bias)
    pipe = replay.Pipeline(
        "typed",
        [
            replay.Step(
                "score",
                _score,
                models={"folder": replay.Model(folder, loader=_weights), "obj": {"k": 1}},
                data={"bias": str(bias)},
                params={"shift": 1.0},
                tolerances={"score": 1e-9},
            ),
            replay.Step("decide", _decide),
        ],
        personal=["name"],
        decisions=["decision"],
    )
    table = rows(3).append_column("name", pa.array(["a", "b", "c"]))
    result = replay.record(pipe, table, store=store, record_key="id")
    assert _read_back(store) == 1
    spec = decode(Spec, store.get_object(result.manifest.version), "spec")
    kinds = {c.kind for c in spec.components()}
    assert kinds == {"code", "source", "params", "module", "model", "data"}
    # Every object the spec names is in the store: a folder's tree and files, the loader.
    assert all(store.objects.has(d) for d in spec.objects())
    assert result.manifest.tape and result.manifest.input.parts
    assert replay.replay(store, result.run_id).verdict == "exact"


def test_a_spec_with_a_field_no_format_has_is_refused_as_corrupt() -> None:
    raw = (ASSETS / "store-538e4b6").glob("objects/sha256/*/*")
    spec = next(json.loads(p.read_bytes()) for p in raw if b'"personal"' in p.read_bytes())
    spec["steps"][0]["surprise"] = 1
    with pytest.raises(CorruptionError, match="surprise"):
        decode(Spec, canonical_json(spec), "objects/x")


def test_a_manifest_whose_field_has_the_wrong_type_is_refused_as_corrupt(store, toy) -> None:
    manifest = plain(replay.record(toy, rows(1), store=store, at=NOON).manifest)
    manifest["input"]["rows"] = "one"
    with pytest.raises(CorruptionError, match=r"\$\.input\.rows"):
        convert(Manifest, manifest, "run")


def test_records_are_immutable(store, toy) -> None:
    manifest = replay.record(toy, rows(1), store=store, at=NOON).manifest
    with pytest.raises(AttributeError):
        manifest.status = "ok"  # type: ignore[misc]
    assert isinstance(manifest, msgspec.Struct)
