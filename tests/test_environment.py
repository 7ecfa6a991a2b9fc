"""The environment is read after the imports that load kernels, and its drift names the
setting that moved. Imports that would pollute this process run in a fresh interpreter."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import replay.capture.environment as environment
from replay.engine.delta import NOT_RECORDED, Change, env_changes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_fingerprint():
    environment.reset()
    yield
    environment.reset()


@pytest.fixture
def no_kernel_settings(monkeypatch):
    for var in (*environment.THREAD_VARS, *environment.KERNEL_VARS):
        monkeypatch.delenv(var, raising=False)


def in_fresh_process(code: str) -> Any:
    """Run ``code`` in a new interpreter; it prints one JSON value as its last line."""
    prelude = "import json, sys\nfrom replay.capture import environment\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def as_old_record(env: dict[str, Any]) -> dict[str, Any]:
    """The same environment as recorded before kernel settings and named thread pools."""
    old = copy.deepcopy(env)
    del old["kernels"]
    old["blas"]["threadpools"] = [
        {k: p[k] for k in ("user_api", "internal_api", "version", "num_threads", "architecture")}
        for p in old["blas"]["threadpools"]
    ]
    return old


def pool_libraries(env: dict[str, Any]) -> set[str]:
    return {p["library"] for p in env["blas"]["threadpools"]}


def test_importing_a_watched_library_changes_the_generation() -> None:
    before, after = in_fresh_process("""
        before = environment.generation()
        import xgboost
        print(json.dumps([before, environment.generation()]))
    """)
    assert "xgboost" not in before
    assert "xgboost" in after


def test_the_fingerprint_is_read_again_after_a_watched_library_is_imported() -> None:
    before, after = in_fresh_process("""
        before = environment.fingerprint()
        import xgboost
        print(json.dumps([before, environment.fingerprint()]))
    """)
    assert "xgboost" not in before["kernels"]["libraries"]
    assert after["kernels"]["libraries"]["xgboost"]["nthread"] is not None
    assert pool_libraries(after) > pool_libraries(before)  # xgboost brings an OpenMP pool


def test_only_libraries_already_imported_are_read_and_none_is_imported() -> None:
    read, loaded = in_fresh_process("""
        import sklearn
        env = environment.fingerprint()
        print(json.dumps([sorted(env["kernels"]["libraries"]),
                          [m for m in environment.WATCHED if m in sys.modules]]))
    """)
    assert read == ["scipy", "sklearn"]  # numpy is recorded under "blas"
    assert loaded == ["numpy", "scipy", "sklearn"]


def test_the_check_made_on_every_run_costs_about_a_microsecond() -> None:
    environment.fingerprint()
    for check in (environment.generation, environment.fingerprint):
        start = time.perf_counter()
        for _ in range(10_000):
            check()
        assert (time.perf_counter() - start) / 10_000 < 5e-6, check.__name__


def test_libraries_loaded_only_by_the_replaying_process_are_not_drift() -> None:
    recorded = in_fresh_process("print(json.dumps(environment.fingerprint()))")
    replaying = in_fresh_process("""
        import lightgbm, onnxruntime, sklearn, xgboost
        print(json.dumps(environment.fingerprint()))
    """)
    assert pool_libraries(replaying) > pool_libraries(recorded)
    assert env_changes(recorded, replaying) == []


@pytest.mark.parametrize(
    ("var", "value"),
    [("OPENBLAS_CORETYPE", "Haswell"), ("OMP_NUM_THREADS", "3"), ("MKL_CBWR", "COMPATIBLE")],
)
def test_a_changed_kernel_variable_is_named_in_the_drift(monkeypatch, var, value) -> None:
    monkeypatch.delenv(var, raising=False)
    before = environment.fingerprint()
    monkeypatch.setenv(var, value)
    environment.reset()
    assert env_changes(before, environment.fingerprint()) == [
        Change("environment", var, None, value)
    ]


def test_a_changed_library_setting_is_named_in_the_drift() -> None:
    before, after = in_fresh_process("""
        import xgboost
        before = environment.fingerprint()
        xgboost.set_config(nthread=1)
        environment.reset()
        print(json.dumps([before, environment.fingerprint()]))
    """)
    # (xgboost applies it to its OpenMP pool too, which is drift of its own)
    assert Change("environment", "xgboost nthread", 0, 1) in env_changes(before, after)


def test_torch_threads_and_backend_flags_are_recorded_and_named_in_the_drift() -> None:
    before, after = in_fresh_process("""
        import torch
        torch.set_num_threads(2)
        before = environment.fingerprint()
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        environment.reset()
        print(json.dumps([before, environment.fingerprint()]))
    """)
    assert before["kernels"]["libraries"]["torch"]["cpu capability"]
    changes = env_changes(before, after)
    assert Change("environment", "torch threads", 2, 1) in changes
    assert Change("environment", "torch deterministic algorithms", False, True) in changes


def test_a_thread_pool_whose_thread_count_changed_is_named_in_the_drift() -> None:
    blas = next(p for p in threadpool_info() if p["user_api"] == "blas")
    if blas["num_threads"] == 1:
        pytest.skip("one BLAS thread already: nothing to lower")
    before = environment.fingerprint()
    library = next(
        p["library"]
        for p in before["blas"]["threadpools"]
        if p["user_api"] == "blas" and p["num_threads"] == blas["num_threads"]
    )
    with threadpool_limits(limits=1, user_api="blas"):
        environment.reset()
        after = environment.fingerprint()
    assert Change("environment", f"{library} num_threads", blas["num_threads"], 1) in env_changes(
        before, after
    )


def test_a_record_older_than_kernel_settings_compares_without_drift(no_kernel_settings) -> None:
    current = environment.fingerprint()
    assert env_changes(as_old_record(current), current) == []


def test_a_variable_an_old_record_lacks_is_drift_only_when_set_now(
    no_kernel_settings, monkeypatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    current = environment.fingerprint()
    assert env_changes(as_old_record(current), current) == [
        Change("environment", "PYTHONHASHSEED", NOT_RECORDED, "0")
    ]


def test_the_package_lock_reads_what_the_metadata_parser_reads_for_every_installed_one() -> None:
    from importlib import metadata

    parsed = {
        f"{(d.metadata['Name'] or '').lower()}=={d.version}"
        for d in metadata.distributions()
        if d.metadata["Name"]
    }
    assert environment.packages() == sorted(parsed)


@pytest.mark.parametrize(
    "headers",
    [
        "Metadata-Version: 2.1\nName: bank-scoring\nVersion: 1.2.0\nSummary: x\n",
        "Metadata-Version: 2.1\r\nName:bank-scoring\r\nVersion:  1.2.0 \r\n\r\nName: no\n",
        "Metadata-Version: 2.1\nName: bank-scoring\nDescription: a\n  folded\nVersion: 1.2.0\n",
        "Metadata-Version: 2.1\nName: bank-\n scoring\nVersion: 1.2.0\n",
        "Metadata-Version: 2.1\nName bank-scoring\nVersion: 1.2.0\n",
    ],
)
def test_a_distributions_name_and_version_are_those_the_parser_reads(tmp_path, headers) -> None:
    from importlib import metadata

    info = tmp_path / "bank_scoring-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_bytes(headers.encode())
    dist = metadata.PathDistribution(info)
    assert environment._name_and_version(dist) == (dist.metadata["Name"], dist.version)


def test_without_an_engine_socket_the_docker_sdk_is_not_imported_to_ask_it(tmp_path) -> None:
    # A container without the engine's socket (the usual deployment) cannot be answered:
    # importing the SDK to find that out cost ~0.2 s of the process.
    probe = (
        "import sys\n"
        "from replay.docker.client import own_image\n"
        "print(own_image(), 'docker' in sys.modules)\n"
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.split() == ["None", "False"]
