"""Containers, against a real engine: the image a run used is named by digest, and the run
replays inside that very image with no network and a read-only store; a batch replays a
window there, a container per chunk, on the engine of each Dask worker.

The session starts its own dockerd and registry (tests/docker_engine.py). Without root or
Debian's docker.io these tests skip with the reason; .ci/run sets REPLAY_REQUIRE_DOCKER so
that in CI a missing engine fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.workspace import build_workspace, refresh_workspace
from replay.catalog.queries import entry
from replay.cli.app import app
from replay.docker.sandbox import Limits, sandbox
from tests import docker_engine as de
from tests.conftest import copy_credit_package, declared_image

pytestmark = pytest.mark.docker
UID = 10001


def _unavailable(why: str) -> None:
    if os.environ.get("REPLAY_REQUIRE_DOCKER"):
        pytest.fail(f"a Docker engine is required here but: {why}")
    pytest.skip(f"no Docker engine: {why}")


@pytest.fixture(scope="session")
def engine() -> Iterator[de.Engine]:
    try:
        started = de.start_engine(de.CACHE / "docker")
    except de.Unavailable as exc:
        _unavailable(str(exc))
    yield started
    started.stop()


@dataclass(frozen=True)
class Images:
    a: Any
    a_digest: str
    b: Any
    b_digest: str
    registry: str


@pytest.fixture(scope="session")
def images(engine: de.Engine) -> Iterator[Images]:
    """Image A (the project on a Debian base) and B (A with another numpy), both pushed."""
    try:
        de.prune(engine)
        de.base_image(engine)
        wheels = de.wheelhouse()
        with de.registry() as registry, de.served(wheels) as url:
            a = de.build(engine, wheels_url=url, tag="pipeline-replay:test")
            b = de.build(
                engine,
                wheels_url=url,
                tag="pipeline-replay:other-numpy",
                dockerfile=f"FROM {a.id}\nARG PIP_NO_INDEX\nARG PIP_FIND_LINKS\n"
                f"USER root\nRUN pip install numpy=={de.OTHER_NUMPY}\n"
                f"USER {UID}\n",
            )
            repository = f"{registry}/pipeline-replay"
            built = Images(
                a,
                de.push(engine, a, repository, "a"),
                b,
                de.push(engine, b, repository, "b"),
                registry,
            )
            de.collect_sdk_sockets()
            yield built
    except de.Unavailable as exc:
        _unavailable(str(exc))


def _own(*paths: Path, uid: int = UID) -> None:
    """Hand folders to the image's non-root user, as a deployment's volumes would be."""
    for path in paths:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(path)], check=True)


@dataclass(frozen=True)
class Recorded:
    root: Path
    store: Path
    workspace: Path
    package: Path
    run_id: str
    output: list[dict[str, Any]]


@pytest.fixture(scope="module", autouse=True)
def stores_of_the_image_user() -> Iterator[None]:
    """Stores here are written by the image's user (uid 10001) and read by this host's user,
    who allows them as an investigator would (`replay trust allow-store`)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REPLAY_SAFE_STORES", "*")
        yield


def record_in_container(
    engine: de.Engine,
    image_ref: str,
    root: Path,
    workspace: Path,
    *,
    env: dict[str, str],
    docker_socket: bool = False,
) -> dict[str, Any]:
    """``replay record`` of the credit chain inside the image, as a bank's job would run."""
    volumes = {
        str(root): {"bind": str(root), "mode": "rw"},
        str(workspace.parent): {"bind": str(workspace.parent), "mode": "rw"},
    }
    group_add = []
    if docker_socket:
        sock = engine.url.removeprefix("unix://")
        volumes[sock] = {"bind": "/var/run/docker.sock", "mode": "rw"}
        group_add = [str(os.stat(sock).st_gid)]
    out = engine.client.containers.run(
        image_ref,
        [
            "--store",
            str(root / "store"),
            "record",
            "--create",
            str(root / "bankcopy/credit/pipeline.py") + ":pipeline",
            "--input",
            str(root / "apps.parquet"),
            "--record-key",
            "application_id",
            "--json",
        ],
        user=str(UID),
        group_add=group_add,
        network_mode="none",
        working_dir=str(root),
        volumes=volumes,
        remove=True,
        stdout=True,
        stderr=False,
        environment={
            "CREDIT_WORKSPACE": str(workspace),
            "HOME": "/tmp",
            "OMP_NUM_THREADS": "1",
            **env,
        },
    )
    de.collect_sdk_sockets()
    return json.loads(out)  # type: ignore[no-any-return]


def _prepared(root: Path) -> Path:
    """A credit workspace, the pipeline package and input rows under ``root``."""
    workspace = build_workspace(root / "ws" / "workspace")
    copy_credit_package(root)
    pq.write_table(make_applications(12, seed=3), root / "apps.parquet")
    (root / "store").mkdir()
    _own(root, workspace.parent)
    return workspace


def recorded_in_a(
    engine: de.Engine, images: Images, root: Path, runs: int
) -> tuple[Path, list[dict[str, Any]]]:
    """Credit runs recorded inside image A under ``root``, its digest declared by the
    deployment: the workspace, and what each ``replay record`` printed."""
    workspace = _prepared(root)
    env = {"REPLAY_IMAGE_DIGEST": images.a_digest, "REPLAY_IMAGE_ID": images.a.id}
    printed = [
        record_in_container(engine, images.a_digest, root, workspace, env=env) for _ in range(runs)
    ]
    _own(root, workspace.parent, uid=0)  # back to the host's engineers (not the replayer)
    return workspace, printed


@pytest.fixture(scope="module")
def recorded(
    engine: de.Engine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Recorded:
    """A credit run recorded inside image A."""
    root = tmp_path_factory.mktemp("in-a")
    workspace, (result,) = recorded_in_a(engine, images, root, 1)
    return Recorded(
        root,
        root / "store",
        workspace,
        root / "bankcopy" / "credit",
        result["run_id"],
        result["output"],
    )


def cli(store: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--store", str(store), *args])


def _recorded_image(store: Path, run_id: str) -> dict[str, str]:
    s = replay.Store.open(store)
    env_digest = entry(s, run_id)["manifest"]["env"]
    return json.loads(s.get_object(env_digest))["image"]  # type: ignore[no-any-return]


def test_capture_in_the_image_records_its_repo_digest_and_id(recorded, images) -> None:
    assert _recorded_image(recorded.store, recorded.run_id) == {
        "digest": images.a_digest,
        "id": images.a.id,
        "source": "REPLAY_IMAGE_DIGEST",
    }


def test_with_the_docker_socket_mounted_capture_asks_the_engine(engine, images, tmp_path) -> None:
    workspace = _prepared(tmp_path)
    result = record_in_container(
        engine, images.a_digest, tmp_path, workspace, env={}, docker_socket=True
    )
    assert _recorded_image(tmp_path / "store", result["run_id"]) == {
        "digest": images.a_digest,
        "id": images.a.id,
        "source": "docker engine",
    }


def test_replay_in_the_recorded_image_is_exact_after_the_host_changed_everything(
    recorded, images, engine, monkeypatch
) -> None:
    (recorded.package / "features.py").write_text("raise RuntimeError('rewritten')\n")
    refresh_workspace(recorded.workspace)  # new bureau table, PD model retrained in place
    (recorded.workspace / "models" / "fraud.pkl").write_bytes(b"not a model any more")
    shutil.rmtree(recorded.workspace / ".dvc" / "cache")
    monkeypatch.setenv("DOCKER_HOST", engine.url)

    done = cli(recorded.store, "run", recorded.run_id, "--in-container", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["verdict"] == "exact"
    assert [s["verdict"] for s in report["steps"]] == ["exact"] * 4
    assert report["recorded_image"] == report["current_image"] == images.a_digest
    assert report["drift"] == []


def test_replay_in_another_image_reports_the_digest_and_numpy_drift(
    recorded, images, engine, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    done = cli(
        recorded.store,
        "run",
        recorded.run_id,
        "--in-container",
        "--image",
        images.b_digest,
        "--json",
    )
    report = json.loads(done.stdout)
    assert report["verdict"] in ("exact", "equivalent", "diverged")  # beside the drift
    assert (report["recorded_image"], report["current_image"]) == (images.a_digest, images.b_digest)
    drift = {(c["where"], c["what"]): (c["before"], c["after"]) for c in report["drift"]}
    assert drift[("environment", "image")] == (images.a_digest, images.b_digest)
    assert drift[("environment", "numpy")][1] == de.OTHER_NUMPY
    assert drift[("package", "numpy")][1] == de.OTHER_NUMPY


def test_replay_outside_the_image_reports_the_environment_drift(recorded, images) -> None:
    done = cli(recorded.store, "run", recorded.run_id, "--json")
    report = json.loads(done.stdout)
    assert report["recorded_image"] == images.a_digest
    assert report["current_image"] != images.a_digest
    assert {c["what"] for c in report["drift"]} >= {"image", "packages"}


def test_the_sandbox_has_no_network_a_read_only_store_and_no_root(recorded, images, engine) -> None:
    probe = """if True:
        import json, os, socket
        def attempt(fn):
            try:
                fn()
                return "allowed"
            except OSError as exc:
                return os.strerror(exc.errno) if exc.errno else str(exc)
        print(json.dumps({
            "network": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=3)),
            "store": attempt(lambda: open("/store/probe", "w")),
            "root_fs": attempt(lambda: open("/usr/probe", "w")),
            "uid": os.getuid()}))
    """
    out = sandbox(
        engine.client, images.a, ["-c", probe], store=recorded.store, entrypoint=["python3"]
    )
    assert out.exit_code == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["network"] == "Network is unreachable"
    assert seen["store"] == seen["root_fs"] == "Read-only file system"
    assert seen["uid"] == UID
    assert not (recorded.store / "probe").exists()


def _outward_address() -> str:
    """This host's address on its default route (not loopback, which a container has too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent for a UDP connect
        return str(s.getsockname()[0])


def reach(table: pa.Table, *, params: dict[str, Any]) -> pa.Table:
    with socket.create_connection((params["host"], params["port"]), timeout=3):
        pass
    return table.append_column("reached", pa.array([True] * table.num_rows))


def test_a_step_that_opens_a_socket_fails_inside_the_container(images, engine, tmp_path) -> None:
    with socket.create_server(("0.0.0.0", 0)) as server:
        host = _outward_address()
        pipe = replay.Pipeline(
            "probe",
            [replay.Step("reach", reach, params={"host": host, "port": server.getsockname()[1]})],
        )
        store = replay.Store.open(tmp_path / "store")
        run = replay.record(pipe, pa.table({"id": ["a"]}), store=store)
        assert run.status == "ok"
        rep = replay.replay_in_container(
            store, run.run_id, image=images.a_digest, client=engine.client
        )
    assert rep.verdict == "diverged" and rep.first_divergence == "reach"
    assert "unreachable" in (rep.steps[0].error or "").lower()


@pytest.mark.slow
def test_a_bundle_with_its_image_verifies_loads_into_a_fresh_engine_and_replays_exact(
    recorded, images, engine, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("REPLAY_SIGNING_KEY", str(tmp_path / "signing.pem"))
    monkeypatch.setenv("REPLAY_TRUSTED_KEYS", str(tmp_path / "signing.pub"))  # the regulator's pin
    assert cli(recorded.store, "keys", "init").exit_code == 0
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    bundle = tmp_path / "evidence.bundle"
    done = cli(recorded.store, "export", recorded.run_id, "--with-image", "-o", str(bundle))
    assert done.exit_code == 0, done.output
    checked = cli(recorded.store, "verify", str(bundle), "--json")
    assert checked.exit_code == 0, checked.output
    assert "images" in {c["part"] for c in json.loads(checked.stdout)["checks"]}

    with de.fresh_engine(tmp_path / "fresh-engine") as fresh:
        monkeypatch.setenv("DOCKER_HOST", fresh.url)
        assert fresh.client.images.list() == []
        # No --in-container: a bundle goes into the sandbox whenever an engine answers.
        done = cli(tmp_path / "unused", "run", recorded.run_id, "--bundle", str(bundle), "--json")
        assert done.exit_code == 0, done.output
        report = json.loads(done.stdout)
        assert report["verdict"] == "exact" and report["current_image"] == images.a.id
        assert fresh.client.images.get(images.a.id).id == images.a.id

        on_host = cli(
            tmp_path / "unused",
            "run",
            recorded.run_id,
            "--bundle",
            str(bundle),
            "--no-sandbox",
            "--json",
        )
        assert on_host.exit_code == 0, on_host.output
        assert json.loads(on_host.stdout)["current_image"] != images.a.id
        assert "--no-sandbox: the bundle's code runs on this machine" in on_host.stderr


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[de.Engine]:
    """A second engine, without any image, that DOCKER_HOST names."""
    with de.fresh_engine(tmp_path / "fresh-engine") as started:
        monkeypatch.setenv("DOCKER_HOST", started.url)
        yield started


@pytest.mark.slow
def test_an_engine_without_the_image_pulls_it_by_digest_from_the_recorded_registry(
    recorded, images, fresh
) -> None:
    done = cli(recorded.store, "run", recorded.run_id, "--in-container", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["verdict"] == "exact"
    assert fresh.client.images.get(images.a_digest).id == images.a.id


def _one_line_error(done: Any, code: int) -> str:
    assert done.exit_code == code, done.output
    assert "Traceback" not in done.output
    assert done.output.startswith("error: ")
    return str(done.output)


def test_no_engine_is_a_one_line_error(recorded, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    out = _one_line_error(cli(recorded.store, "run", recorded.run_id, "--in-container"), 11)
    assert "no Docker engine answers" in out


def test_an_image_neither_local_nor_pullable_says_how_to_load_it(
    images, engine, toy, tmp_path, monkeypatch
) -> None:
    missing = f"{images.registry}/pipeline-replay@sha256:{'0' * 64}"
    with declared_image(monkeypatch, missing):
        run = replay.record(
            toy, pa.table({"id": ["a"], "x": [1.0]}), store=replay.Store.open(tmp_path / "store")
        )
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    out = _one_line_error(cli(tmp_path / "store", "run", run.run_id, "--in-container"), 12)
    assert missing in out and "docker load" in out


def test_a_replay_killed_by_the_memory_limit_is_a_one_line_error(
    recorded, engine, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    out = _one_line_error(
        cli(recorded.store, "run", recorded.run_id, "--in-container", "--memory", "48m"), 13
    )
    assert "memory limit (48m)" in out
    assert Limits().memory == "2g"  # the default leaves room for the credit chain


# Bulk replay in the recorded image: `replay batch --in-container` on a LocalCluster.

WINDOW_RUNS = 3
AT = datetime(2026, 3, 14, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def window_in_a(
    engine: de.Engine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A store folder holding a few credit runs recorded inside image A."""
    root = tmp_path_factory.mktemp("window-in-a")
    recorded_in_a(engine, images, root, WINDOW_RUNS)
    return root / "store"


def stored_results(store: Path, job: str) -> list[dict[str, Any]]:
    files = sorted((store / "replays" / job).glob("chunk-*.json"))
    return [r for f in files for r in json.loads(f.read_bytes())["results"]]


def test_a_batch_in_the_container_replays_every_run_exact_in_the_recorded_image(
    window_in_a, images, engine, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)  # before the cluster: its workers inherit it
    done = cli(window_in_a, "batch", "--in-container", "--workers", "1", "--job", "in-a", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["by_verdict"] == {"exact": WINDOW_RUNS}
    results = stored_results(window_in_a, "in-a")
    assert len(results) == WINDOW_RUNS
    for result in results:
        assert result["recorded_image"] == result["current_image"] == images.a_digest
        assert result["drift"] == []


def test_a_chunk_killed_by_its_memory_limit_fails_its_runs_and_a_resume_with_more_replays_them(
    window_in_a, engine, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    asked = "--in-container --workers 1 --job oom --memory 48m --json"
    small = cli(window_in_a, "batch", *asked.split())
    assert small.exit_code == 1, small.output
    failed = json.loads(small.stdout)["diverged"]
    assert len(failed) == WINDOW_RUNS
    assert all("killed by the memory limit (48m)" in r["error"] for r in failed)
    again = cli(window_in_a, "batch", "--resume", "oom", "--workers", "1", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["by_verdict"] == {"exact": WINDOW_RUNS}
    assert all(r["drift"] == [] for r in stored_results(window_in_a, "oom"))  # in image A


def test_a_chunk_whose_image_cannot_be_had_fails_its_runs_in_one_line_each(
    images, engine, toy, tmp_path, monkeypatch
) -> None:
    missing = f"{images.registry}/pipeline-replay@sha256:{'0' * 64}"
    store = replay.Store.open(tmp_path / "store")
    with declared_image(monkeypatch, missing):
        runs = [
            replay.record(toy, pa.table({"id": ["a"], "x": [float(i)]}), store=store, at=AT)
            for i in range(2)
        ]
    store.flush()
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    done = cli(tmp_path / "store", "batch", "--in-container", "--workers", "1", "--json")
    assert done.exit_code == 1, done.output
    summary = json.loads(done.stdout)
    assert summary["by_verdict"] == {"failed": 2}
    assert {r["run_id"] for r in summary["diverged"]} == {r.run_id for r in runs}
    for row in summary["diverged"]:
        assert missing in row["error"] and "docker load" in row["error"]
        assert "\n" not in row["error"] and "Traceback" not in row["error"]


@pytest.mark.slow
def test_an_engine_without_the_image_pulls_it_once_for_every_chunk_of_a_worker(
    window_in_a, images, fresh
) -> None:
    since = int(time.time())
    summary = replay.batch(
        replay.Store.open(window_in_a), job="pulled", in_container=True, workers=1, chunk=1
    )
    assert summary.by_verdict == {"exact": WINDOW_RUNS}
    assert len(list((window_in_a / "replays" / "pulled").glob("chunk-*"))) == WINDOW_RUNS
    pulls = fresh.client.api.events(
        since=since,
        until=int(time.time()) + 1,
        filters={"type": "image", "event": "pull"},
        decode=True,
    )
    assert [p["id"] for p in pulls] == [images.a_digest]
