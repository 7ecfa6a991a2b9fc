"""Builds the onboarding workspace, as the bank engineer's repo looks, and its incident.

    python pipelines/onboarding/build.py OUT              # build a workspace at OUT
    python pipelines/onboarding/build.py OUT --incident   # then change it in place

A workspace is a plain folder: pipe.py and the helper modules it imports by plain name,
models/ (the encoder folder, risk.ubj, pd.onnx), data/balances.parquet and
applications.parquet. Models are trained by the workspace's own code (imported from the
workspace), so training and serving cannot drift apart, and after the incident's code edit
the retrained models match the edited code, as they did at the bank.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # a plain folder: its builder modules import by plain name
    sys.path.append(str(HERE))

import synth  # noqa: E402
import train  # noqa: E402

PIPELINE_FILES = ("pipe.py", "textfeat.py", "asof.py", "bureau.py", "riskfeat.py")
APPLICATIONS = "applications.parquet"
BALANCES = "data/balances.parquet"
ENCODER = "models/encoder"
RISK = "models/risk.ubj"
PD = "models/pd.onnx"
TRAINING_ROWS = 600
TRAINED_AT = datetime(2026, 2, 15, tzinfo=UTC)  # the as-of time of the training features
_SEED_KEY = b"onboarding_seed"  # stamped into balances.parquet: which population to refresh
# The tokenizer edit of the incident: stop words dropped before pooling.
_TOKENIZER_BEFORE = "STOPWORDS: frozenset[str] = frozenset()\n"
_TOKENIZER_AFTER = (
    "STOPWORDS: frozenset[str] = frozenset(\n"
    '    {"a", "an", "the", "my", "for", "to", "of", "and", "this"})\n'
)


def build_workspace(root: Path, *, seed: int = 0, applications: int = 200) -> Path:
    """Write a workspace at `root` (new or empty); the same seed gives the same bytes."""
    root = Path(root).resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; choose another path or remove it")
    for name in PIPELINE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / name, root / name)
    train.write_encoder(root / ENCODER, synth.vocabulary(), dim=32, seed=seed)
    balances = synth.balances(seed)
    _write_table(root / BALANCES, balances.replace_schema_metadata({_SEED_KEY: str(seed)}))
    _write_models(root, balances, seed)
    _write_table(root / APPLICATIONS, synth.applications(applications, seed + 1))
    return root


def incident(root: Path, *, seed: int = 1) -> None:
    """The incident, in place: the tokenizer is edited, the balances are refreshed (March
    close, late 10 March snapshots, restated February balances) and both risk models are
    retrained on them and overwritten. The files keep their paths, inodes and mtimes (the
    deploy tool copies with times preserved), so nothing on disk says they changed."""
    root = Path(root).resolve()
    source = (root / "textfeat.py").read_text()
    if _TOKENIZER_BEFORE not in source:
        raise ValueError(
            f"{root / 'textfeat.py'} does not have the tokenizer this incident "
            "edits; was the incident already performed?"
        )
    with _kept_mtime(root / "textfeat.py"):
        (root / "textfeat.py").write_text(source.replace(_TOKENIZER_BEFORE, _TOKENIZER_AFTER))
    population = int(pq.read_schema(root / BALANCES).metadata[_SEED_KEY])
    balances = synth.balances(population, refreshed=True)
    with _kept_mtime(root / BALANCES):
        _write_table(
            root / BALANCES, balances.replace_schema_metadata({_SEED_KEY: str(population)})
        )
    with _kept_mtime(root / RISK), _kept_mtime(root / PD):
        _write_models(root, balances, population + 100 * seed)


@contextmanager
def workspace_code(root: Path) -> Iterator[dict[str, ModuleType]]:
    """The workspace's pipeline modules by name, imported as `python pipe.py` would (by
    plain name, from the workspace), then forgotten, so another workspace's (or an edited)
    copy is imported afresh. No bytecode is written into the workspace."""
    names = [Path(name).stem for name in PIPELINE_FILES]
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(root))
        sys.dont_write_bytecode = writes_bytecode
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _write_models(root: Path, balances: pa.Table, seed: int) -> None:
    """Train the risk booster and the PD model with the workspace's code; write both."""
    with workspace_code(root) as code:
        pipe = code["pipe"]
        apps = synth.applications(TRAINING_ROWS, seed + 2, start=900_000)
        labels = synth.defaults(apps, seed)
        encoder = code["textfeat"].load_encoder(root / ENCODER)
        table = pipe.asof_features(pipe.embed(apps, encoder), balances, TRAINED_AT, _direct)
        risk = train.fit_risk(
            code["riskfeat"].risk_matrix(table), labels, code["riskfeat"].RISK_FEATURES, seed
        )
        scored = pipe.gbm(table, risk)
        graph = train.pd_graph(code["riskfeat"].pd_matrix(scored), labels, seed)
    (root / RISK).parent.mkdir(parents=True, exist_ok=True)
    # Written through the same open file (same inode), as an in-place deploy does.
    with open(root / RISK, "wb") as f:
        f.write(bytes(risk.save_raw("ubj")))
    with open(root / PD, "wb") as f:
        f.write(graph.SerializeToString())


def _direct(name: str, fn: Any, *args: Any) -> Any:
    """What `call` does outside a recorded run: call the service."""
    return fn(*args)


def _write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@contextmanager
def _kept_mtime(path: Path) -> Iterator[None]:
    stat = path.stat()
    yield
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("onboarding-workspace")
    if "--incident" in sys.argv[2:]:
        incident(out)
    else:
        print(build_workspace(out))
