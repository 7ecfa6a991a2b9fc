"""A real Docker engine, registry and images for tests/test_docker.py.

Everything runs on this machine: dockerd (Debian's docker.io) with its own data-root and
socket, a registry (Debian's docker-registry) on 127.0.0.1 for real ``name@sha256:`` repo
digests, a Debian base built with mmdebstrap, and the project image built on it from a
wheelhouse the host's pip downloaded (no public registry or PyPI is reachable from a build).
The data-root and wheelhouse persist under /var/tmp so a second session reuses the base.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).parents[1]
CACHE = Path(os.environ.get("REPLAY_TEST_DOCKER_CACHE", "/var/tmp/pipeline-replay"))
BASE = "local/py:bookworm"
# The Dockerfile would apt-get these; a base that has them builds offline.
BASE_PACKAGES = "apt,python3,python3-venv,ca-certificates,git,passwd,tzdata"
OTHER_NUMPY = "2.3.5"  # image B: the project image with another numpy build


class Unavailable(Exception):
    """No engine can be started here; the message says why (the tests skip with it)."""


@dataclass
class Engine:
    url: str
    root: Path
    process: subprocess.Popen[bytes] | None
    run: Path  # exec-root and socket

    @functools.cached_property
    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=600)

    def stop(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.run, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_engine(data_root: Path) -> Engine:
    """dockerd on its own socket, data-root and exec-root; no bridge, host network untouched."""
    if os.geteuid() != 0:
        raise Unavailable("dockerd needs root")
    if shutil.which("dockerd") is None:
        raise Unavailable("no dockerd: apt-get install docker.io (.ci/run does)")
    data_root.mkdir(parents=True, exist_ok=True)
    _stop_stale(data_root / "dockerd.pid")
    run = Path(tempfile.mkdtemp(prefix="prd-", dir="/tmp"))  # short: unix socket paths
    url = f"unix://{run}/docker.sock"
    log = data_root / "dockerd.log"
    with open(log, "ab") as out:  # dockerd keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(data_root),
                "--exec-root",
                str(run / "exec"),
                "--pidfile",
                str(data_root / "dockerd.pid"),
                "-H",
                url,
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    engine = Engine(url, data_root, process, run)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"dockerd exited {process.returncode}; see {log}")
        if _answers(run / "docker.sock"):  # before a client: a failed one leaks its socket
            engine.client.ping()
            return engine
        time.sleep(0.2)
    engine.stop()
    raise Unavailable(f"dockerd did not answer within 60 s; see {log}")


@contextlib.contextmanager
def fresh_engine(data_root: Path) -> Iterator[Engine]:
    """A second engine with an empty data-root, removed afterwards (images are large)."""
    engine = start_engine(data_root)
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(data_root, ignore_errors=True)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(64)
        except OSError:
            return False


def _stop_stale(pidfile: Path) -> None:
    """A dockerd left on this data-root by a killed session would refuse us the root."""
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)


@contextlib.contextmanager
def registry() -> Iterator[str]:
    """A registry on 127.0.0.1 (the engine treats loopback registries as insecure-ok)."""
    if shutil.which("docker-registry") is None:
        raise Unavailable("no docker-registry: apt-get install docker-registry (.ci/run does)")
    with tempfile.TemporaryDirectory(prefix="registry-") as tmp:
        port = _free_port()
        config = Path(tmp) / "config.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {tmp}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
        )
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise Unavailable("docker-registry did not start")
                time.sleep(0.1)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(30)


def prune(engine: Engine) -> None:
    """Drop what earlier sessions left (tags of their registries, superseded builds)."""
    for image in engine.client.images.list():
        for tag in image.tags:
            if tag.startswith("127.0.0.1:"):
                engine.client.images.remove(tag)
    engine.client.images.prune(filters={"dangling": True})


def base_image(engine: Engine) -> str:
    """A Debian bookworm base with python3, imported from mmdebstrap (once per data-root)."""
    import docker

    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.client.images.get(BASE)
        return BASE
    if shutil.which("mmdebstrap") is None:
        raise Unavailable("no mmdebstrap to build a base image: apt-get install mmdebstrap")
    env = {**os.environ, "DOCKER_HOST": engine.url}
    cmd = (
        f"mmdebstrap --quiet --variant=essential --include={BASE_PACKAGES} bookworm - "
        f"| docker import - {BASE}"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise Unavailable(f"building the base image failed: {done.stderr.strip()[-500:]}")
    return BASE


def wheelhouse() -> Path:
    """Wheels of the project's dependencies (and of image B's numpy), from the host's pip."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    # Two resolutions: one set would pin image A's numpy to B's.
    for wanted in ([str(REPO), "setuptools>=68", "wheel"], ["--no-deps", f"numpy=={OTHER_NUMPY}"]):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), *wanted],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise Unavailable(f"pip download failed: {done.stderr.strip()[-500:]}")
    return wheels


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on loopback, for pip's --find-links inside a build."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def build(
    engine: Engine, *, wheels_url: str, tag: str, dockerfile: str | None = None, base: str = BASE
) -> Any:
    """The project image (or ``dockerfile`` text built on it), pip reading the wheelhouse."""
    import io

    import docker

    args = {"BASE": base, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheels_url}
    try:
        if dockerfile is None:
            image, _ = engine.client.images.build(
                path=str(REPO), tag=tag, buildargs=args, network_mode="host", rm=True
            )
        else:
            image, _ = engine.client.images.build(
                fileobj=io.BytesIO(dockerfile.encode()),
                tag=tag,
                buildargs=args,
                network_mode="host",
                rm=True,
            )
    except docker.errors.BuildError as exc:
        log = "".join(str(x.get("stream", x.get("error", ""))) for x in exc.build_log)
        raise AssertionError(f"docker build failed: {exc}\n{log[-3000:]}") from None
    return image


def collect_sdk_sockets() -> None:
    """Close, now, the sockets the SDK's streamed build/push/run responses leave to the GC.

    Left alone they are collected during some later test, whose product code would then be
    blamed for the ResourceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def push(engine: Engine, image: Any, repository: str, tag: str) -> str:
    """Push to the local registry; the repo digest (``repository@sha256:…``)."""
    image.tag(repository, tag)
    for line in engine.client.images.push(repository, tag, stream=True, decode=True):
        if "error" in line:
            raise AssertionError(f"docker push failed: {line['error']}")
    image.reload()
    return next(d for d in image.attrs["RepoDigests"] if d.startswith(repository + "@"))
