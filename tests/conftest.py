"""Shared fixtures: real stores in tmp_path, a toy pipeline, one real credit workspace, and the
onboarding workspace's builder."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest
from hypothesis import settings

import replay

ONBOARDING = Path(__file__).parents[1] / "pipelines" / "onboarding"

# Tests never fail on timing: on a loaded 2-core machine any example may take 300 ms.
settings.register_profile("replay", deadline=None)
settings.load_profile("replay")


def scale(table: pa.Table, *, params: dict[str, float]) -> pa.Table:
    import pyarrow.compute as pc

    return table.append_column("score", pc.multiply(table["x"], params["k"]))


def label(table: pa.Table, *, ctx: replay.RunContext) -> pa.Table:
    import pyarrow.compute as pc

    noise = ctx.rng("jitter").random(table.num_rows)
    stamp = pa.array([ctx.now().isoformat()] * table.num_rows)
    return (
        table.append_column("label", pc.if_else(pc.greater(table["score"], 5), "hi", "lo"))
        .append_column("noise", pa.array(noise))
        .append_column("at", stamp)
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--crash-trials",
        type=int,
        default=6,
        help="stores killed twice at random in tests/test_crash.py (CI: 500)",
    )
    parser.addoption(
        "--s3-crash-trials",
        type=int,
        default=1,
        help="S3 stores killed twice at random in tests/test_crash_s3.py (CI: 40)",
    )


@pytest.fixture(autouse=True)
def own_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own settings are not the tests': a test starts with no signing key, nobody
    pinned, no store allowed and nothing verified before, unless it says otherwise."""
    folder = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
    for name in (
        "REPLAY_TRUSTED_KEYS",
        "REPLAY_SIGNING_KEY",
        "REPLAY_REQUIRE_CHECKPOINT",
        "REPLAY_STORE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_ambient_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine this machine happens to run is not the tests' to use (a bundle would replay
    in it by default): tests that need one start their own (tests/docker_engine.py)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/pipeline-replay-tests.sock")


@pytest.fixture
def no_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody is trusted but what a test pins: the user's own configuration is not read."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("REPLAY_TRUSTED_KEYS", "REPLAY_SIGNING_KEY", "REPLAY_REQUIRE_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def toy() -> replay.Pipeline:
    return replay.Pipeline(
        "toy", [replay.Step("scale", scale, params={"k": 2.0}), replay.Step("label", label)]
    )


@pytest.fixture
def store(tmp_path: Path) -> replay.Store:
    return replay.Store.open(tmp_path / "store")


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": [f"R{i}" for i in range(start, start + n)],
            "x": [float(i) for i in range(start, start + n)],
        }
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server for the session (tests/s3_endpoint.py)."""
    from s3_endpoint import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store URL in a bucket of its own, the endpoint and credentials in the environment
    (subprocesses inherit them), as a bank's writers would be configured."""
    from s3_endpoint import new_bucket

    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return f"s3://{new_bucket(s3_endpoint)}/bank/decisions"


@pytest.fixture(params=["folder", "s3"])
def either_store(request: pytest.FixtureRequest, tmp_path: Path) -> replay.Store:
    """A store in a folder, then the same test on S3: replay behaves alike on both (issue 17).
    A module takes it as its ``store`` (``store = either_store``, see tests/test_replay.py)."""
    if request.param == "s3":
        return replay.Store.open(request.getfixturevalue("s3_url"))
    return replay.Store.open(tmp_path / "store")


@pytest.fixture(scope="session")
def credit_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real git + DVC workspace with a local remote (built once per test session)."""
    from pipelines.credit.workspace import build_workspace

    return build_workspace(tmp_path_factory.mktemp("credit") / "workspace")


@functools.cache
def builder() -> ModuleType:
    """pipelines/onboarding/build.py, loaded by path: the folder is not a package. It puts
    the folder on sys.path, where its own modules (synth, train) import from."""
    spec = importlib.util.spec_from_file_location("onboarding_build", ONBOARDING / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def forge_history(
    store: replay.Store, pipeline: replay.Pipeline, tmp_path: Path, runs: int = 3
) -> None:
    """Replace the store's whole history by another, self-consistent one: what an admin with
    write access could do; only a checkpoint kept outside the store or pinned catches it."""
    import shutil

    forged = replay.Store.open(tmp_path / "forged")
    for i in range(runs):
        replay.record(pipeline, rows(2, 10 + i), store=forged)
    forged.flush()
    for part in ("ledger/ledger.jsonl", "segments", "objects"):
        src, dst = forged.root / part, store.root / part
        if src.is_dir():
            shutil.rmtree(dst)
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)


def copy_credit_package(root: Path) -> Path:
    """The credit pipeline as a package of the test's own, whose files the test may change."""
    repo = Path(__file__).parents[1]
    pkg = root / "bankcopy" / "credit"
    pkg.mkdir(parents=True)
    (root / "bankcopy" / "__init__.py").write_text("")
    for src in (repo / "pipelines" / "credit").glob("*.py"):
        (pkg / src.name).write_text(src.read_text().replace("pipelines.credit", "bankcopy.credit"))
    return pkg


@contextmanager
def declared_image(monkeypatch: pytest.MonkeyPatch, digest: str) -> Iterator[None]:
    """Runs recorded within declare they ran in image ``digest``, as a deployment declares
    it (REPLAY_IMAGE_DIGEST); no image need exist."""
    import replay.capture.environment as environment

    monkeypatch.setenv("REPLAY_IMAGE_DIGEST", digest)
    environment.fingerprint.cache_clear()
    try:
        yield
    finally:
        monkeypatch.delenv("REPLAY_IMAGE_DIGEST")
        environment.fingerprint.cache_clear()
