"""A connection to the Docker engine, and which image this process runs in.

Low in the layers: capture asks ``own_image`` when it records the environment; the sandbox
(``replay.docker.sandbox``) connects through ``engine``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from typing import Any

from replay.errors import EngineUnavailableError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")


def engine(base_url: str | None = None) -> Any:
    """A connected docker client (``DOCKER_HOST`` or the default socket)."""
    where = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    hint = "start dockerd, or point DOCKER_HOST at its socket"
    if where.startswith("unix://"):
        # Probe first: the SDK leaks the socket of a connection that fails (and importing it
        # costs ~0.2 s, which a process in a container without the socket never pays).
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(where.removeprefix("unix://"))
            except OSError as exc:
                raise EngineUnavailableError(
                    f"no Docker engine answers at {where} ({exc.strerror})", hint=hint
                ) from None
    import docker

    client = None
    try:
        client = docker.DockerClient(base_url=where, timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        if client is not None:
            client.close()
        raise EngineUnavailableError(
            f"no Docker engine answers at {where} ({_reason(exc)})", hint=hint
        ) from None
    return client


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__


def own_image() -> dict[str, str] | None:
    """Ask the engine (socket mounted into this container) which image we run in."""
    try:
        client = engine()
    except EngineUnavailableError:
        return None
    import docker

    try:
        with contextlib.closing(client):
            container = client.containers.get(_own_container_id())
            img = client.images.get(container.attrs["Image"])
    except docker.errors.DockerException:
        return None
    return {
        "digest": _repo_digest(img.attrs, container.attrs["Config"]["Image"]) or img.id,
        "id": img.id,
        "source": "docker engine",
    }


def _own_container_id() -> str:
    # Docker bind-mounts /etc/hostname and friends from <data-root>/containers/<id>/.
    try:
        with open("/proc/self/mountinfo") as f:
            found = CONTAINER_ID.search(f.read())
    except OSError:
        found = None
    return found.group(1) if found else os.uname().nodename


def _repo_digest(image_attrs: dict[str, Any], started_as: str) -> str | None:
    """The repo digest matching ``started_as`` (a reference to the image), if any."""
    digests = image_attrs.get("RepoDigests") or []
    if started_as in digests:
        return started_as
    repo = _repository(started_as)
    return next(
        (d for d in digests if d.partition("@")[0] == repo), digests[0] if digests else None
    )


def _repository(ref: str) -> str:
    name = ref.partition("@")[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name
