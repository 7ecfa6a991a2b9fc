"""The DVC-tracked workspace the credit pipeline reads, built and changed for real.

A git repository whose bureau table and models are DVC outputs pushed to a local remote,
like a team's model repo. `refresh_workspace` is the "incident": the bureau refreshes and
the PD model is retrained in place, so a run's decisions depend on which version it read.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from configobj import ConfigObj
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from pipelines.credit import generate
from pipelines.credit.features import Model, build_feature_matrix, predict_score

BUREAU = "data/bureau.parquet"
FRAUD_MODEL = "models/fraud.pkl"
PD_MODEL = "models/pd.pkl"
TRAINING_ROWS = 8_000  # per model: enough that a retrain is not mostly noise, still < 1 s
_ENV = {
    # Commits must work on machines (CI, containers) that have no git identity.
    "GIT_AUTHOR_NAME": "pipeline-replay",
    "GIT_AUTHOR_EMAIL": "pipeline-replay@example.com",
    "GIT_COMMITTER_NAME": "pipeline-replay",
    "GIT_COMMITTER_EMAIL": "pipeline-replay@example.com",
    # A fixed date makes the commits reproducible: a workspace rebuilt at the same path has
    # the very revisions a store recorded, so the store's DVC references resolve again.
    "GIT_AUTHOR_DATE": "2026-03-13T18:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-03-13T18:00:00+00:00",
    "DVC_NO_ANALYTICS": "1",
}
# Training uses one OpenMP thread: the fits are tiny, and OpenMP spin-waiting on a busy machine
# (parallel tests or benchmarks) once turned a 0.2 s training into 45 s.
_ONE_THREAD = partial(threadpool_limits, limits=1, user_api="openmp")


def build_workspace(root: Path, seed: int = 7) -> Path:
    """Create the workspace at `root` (remote beside it); an existing one is left unchanged."""
    root = Path(root).resolve()
    if _is_built(root):
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} is not empty and not a built credit workspace; "
            "remove it or choose another path"
        )
    root.mkdir(parents=True, exist_ok=True)
    _init_repos(root)
    bureau = generate.make_bureau_table(seed)
    fraud_model, pd_model = _train_models(bureau, seed)
    _save_bureau(root, bureau)
    _save_model(root, FRAUD_MODEL, fraud_model)
    _save_model(root, PD_MODEL, pd_model)
    _commit_and_push(root, [BUREAU, FRAUD_MODEL, PD_MODEL], f"credit workspace, seed {seed}")
    return root


def refresh_workspace(root: Path, seed: int = 8) -> None:
    """The incident: bureau refresh (v2) and a PD model retrained in place on it."""
    root = Path(root).resolve()
    # The refresh must shift the same applicants, so reuse the population's own seed.
    bureau_seed = int(pq.read_schema(root / BUREAU).metadata[b"bureau_seed"])
    bureau = generate.make_bureau_table(bureau_seed, version=2)
    pd_model = _retrain_pd(bureau, pickle.loads((root / FRAUD_MODEL).read_bytes()), seed)
    _save_bureau(root, bureau)
    _save_model(root, PD_MODEL, pd_model)
    _commit_and_push(root, [BUREAU, PD_MODEL], f"bureau refresh v2, PD retrained, seed {seed}")


def rebuild_workspace(root: Path, seed: int = 7) -> Path:
    """Build the workspace at `root` afresh: a built one and its remote are removed first."""
    root = Path(root).resolve()
    if _is_built(root):
        shutil.rmtree(root)
        shutil.rmtree(remote_path(root), ignore_errors=True)
    return build_workspace(root, seed)


def after_incident(root: Path) -> bool:
    """Whether `refresh_workspace` has run on the built workspace at `root`."""
    metadata = pq.read_schema(Path(root) / BUREAU).metadata or {}
    return metadata.get(b"bureau_version") == b"2"


def remote_path(root: Path) -> Path:
    """The workspace's local DVC remote: a folder beside it."""
    return root.parent / f"{root.name}-remote"


def _init_repos(root: Path) -> None:
    _git(root, "init", "-q", "-b", "main")
    _dvc(root, "init", "-q")
    # Written as DVC writes it, not with `dvc config` and `dvc remote add`: each DVC call
    # costs ~0.7 s.
    config = ConfigObj(str(root / ".dvc" / "config"))
    config["core"] = {"analytics": "false", "remote": "local"}
    config['remote "local"'] = {"url": str(remote_path(root))}
    config.write()


def _train_models(
    bureau: pa.Table,
    seed: int,
) -> tuple[HistGradientBoostingClassifier, HistGradientBoostingClassifier]:
    """(fraud model, PD model) trained on applications scored against `bureau`."""
    train, fraud_labels, default_labels = generate.make_training_set(
        2 * TRAINING_ROWS, seed, bureau
    )
    # Fraud and PD models learn from disjoint halves, so the PD model sees fraud scores as
    # they look on unseen applications rather than over-confident in-sample ones.
    half = TRAINING_ROWS
    with _ONE_THREAD():
        fraud_model = _fit(
            train.slice(0, half), fraud_labels[:half], "fraud", seed, learning_rate=0.08
        )
        pd_model = _fit(
            _with_fraud_score(train.slice(half), fraud_model),
            default_labels[half:],
            "pd",
            seed,
            learning_rate=0.05,
        )
    return fraud_model, pd_model


def _retrain_pd(bureau: pa.Table, fraud_model: Any, seed: int) -> HistGradientBoostingClassifier:
    """The incident's PD model: other training rows, the refreshed bureau, a new rate."""
    train, _, default_labels = generate.make_training_set(TRAINING_ROWS, seed, bureau)
    with _ONE_THREAD():
        return _fit(
            _with_fraud_score(train, fraud_model), default_labels, "pd", seed, learning_rate=0.06
        )


def _fit(
    table: pa.Table, labels: np.ndarray, model: Model, seed: int, learning_rate: float
) -> HistGradientBoostingClassifier:
    estimator = HistGradientBoostingClassifier(
        # Small trees: labels are noisy draws, and deep trees would chase that noise.
        learning_rate=learning_rate,
        max_iter=100,
        max_leaf_nodes=8,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    return estimator.fit(build_feature_matrix(table, model), labels)


def _with_fraud_score(table: pa.Table, fraud_model: Any) -> pa.Table:
    return table.append_column("fraud_score", predict_score(fraud_model, table, "fraud"))


def _save_bureau(root: Path, bureau: pa.Table) -> None:
    (root / BUREAU).parent.mkdir(exist_ok=True)
    pq.write_table(bureau, root / BUREAU)


def _save_model(root: Path, path: str, model: Any) -> None:
    (root / path).parent.mkdir(exist_ok=True)
    (root / path).write_bytes(pickle.dumps(model, protocol=5))


def _commit_and_push(root: Path, paths: list[str], message: str) -> None:
    _dvc(root, "add", "-q", *paths)  # one DVC call for all files: each costs ~0.7 s
    _git(root, "add", "-A")  # .dvc files, .gitignores and DVC config; data is ignored
    # Nothing staged means the outputs are already at this version (e.g. a repeated refresh).
    if _run(["git", "diff", "--cached", "--quiet"], root, check=False) != 0:
        _git(root, "-c", "commit.gpgsign=false", "commit", "-q", "-m", message)
    _dvc(root, "push", "-q")


def _is_built(root: Path) -> bool:
    if not (root / ".git").is_dir() or not (root / ".dvc").is_dir():
        return False
    # The commit exists only once every output was added, so it marks a finished build.
    return _run(["git", "cat-file", "-e", f"HEAD:{PD_MODEL}.dvc"], root, check=False) == 0


def _git(root: Path, *args: str) -> None:
    _run(["git", *args], root)


def _dvc(root: Path, *args: str) -> None:
    # Through this interpreter, so DVC runs from the venv without being on PATH.
    _run([sys.executable, "-m", "dvc", *args], root)


def _run(command: list[str], cwd: Path, check: bool = True) -> int:
    result = subprocess.run(
        command, cwd=cwd, env={**os.environ, **_ENV}, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` failed in {cwd}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.returncode
