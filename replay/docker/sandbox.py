"""Replay inside the exact image a run was recorded in, through the Docker Engine API.

The container is a sandbox for code that came from a snapshot: the store is mounted
read-only at /store, the run's local DVC repos and remotes read-only at their recorded
paths, there is no network, a non-root user, a read-only root filesystem with a small
/tmp, no capabilities, and memory/CPU/pids limits. It runs ``replay run --json``; its
report comes back as JSON and becomes a ReplayReport like any other. Where a run replays
(``placement``) and running there (``run_in``) serve ``replay.docker.batch`` too, which
replays a chunk of runs in one such container.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from replay.capture.environment import REPO_DIGEST
from replay.core.manifest import ImageRef, Spec
from replay.docker.client import _reason, _repo_digest, engine
from replay.engine.recorded import RecordedRun, load_environment, load_run
from replay.engine.replay import ReplayReport
from replay.errors import (
    ContainerFailedError,
    ImageMissingError,
    ReplayError,
    UsageError,
)
from replay.store.store import Store

USER = "10001"  # the Dockerfile's user; a numeric id works in any image
STORE_MOUNT = "/store"


@dataclass(frozen=True)
class Limits:
    """Resource limits of a replay container (docker's units: memory "2g", cpus 1.5)."""

    memory: str = "2g"
    cpus: float = 1.0
    pids: int = 256


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    oom_killed: bool


def resolve(client: Any, recorded: ImageRef, override: str | None = None) -> Any:
    """The engine's image for a recorded image (or ``override``), pulled if need be."""
    import docker

    if override is not None:
        try:
            return client.images.get(override)
        except docker.errors.ImageNotFound:
            return _pull(client, override, override)
    digest, image_id = recorded.digest, recorded.id or ""
    if not REPO_DIGEST.fullmatch(digest) and not image_id:
        raise UsageError(
            f"the run was recorded {digest or 'without an image'}, so there is "
            "no image to replay it in",
            hint="pass --image REF to replay it in an image of your choice",
        )
    for ref in (digest, image_id):
        if ref and (ref.startswith("sha256:") or REPO_DIGEST.fullmatch(ref)):
            try:
                img = client.images.get(ref)
                break
            except docker.errors.ImageNotFound:
                continue
    else:
        if not REPO_DIGEST.fullmatch(digest):
            raise ImageMissingError(
                f"image {image_id} is not on this Docker engine and was never pushed to a registry",
                hint=_load_hint(image_id),
            )
        img = _pull(client, digest, image_id or digest)
    if image_id and img.id != image_id:
        raise ImageMissingError(
            f"the engine's image for {digest} has ID {img.id}, but the run recorded {image_id}",
            hint=_load_hint(image_id),
        )
    return img


def _pull(client: Any, ref: str, label: str) -> Any:
    import docker

    registry = ref.partition("/")[0] if "/" in ref else "Docker Hub"
    repository, _, digest = ref.partition("@")
    try:
        # Not streamed: a failed stream would hold its connection open.
        log = client.api.pull(repository, tag=digest or None, stream=False)
        failed = [json.loads(line)["error"] for line in log.splitlines() if '"error"' in line]
        if failed:
            raise docker.errors.APIError(failed[0])
        return client.images.get(ref)
    except docker.errors.DockerException as exc:
        raise ImageMissingError(
            f"image {label} is not on this Docker engine and pulling "
            f"{ref} from {registry} failed: {_reason(exc)}",
            hint=_load_hint(label),
        ) from None


def _load_hint(label: str) -> str:
    return (
        f"load it with `docker load -i IMAGE.tar` (a bundle exported --with-image carries "
        f"it: `replay run --bundle B --in-container` loads it), then retry; wanted {label}"
    )


def data_mounts(spec: Spec, *, bundle: bool = False) -> list[str]:
    """Local DVC repos and remotes the run read, to mount read-only at the same paths.

    Only folders that are what the spec says: a DVC repo (``.dvc/`` inside) holding the
    recorded path or its ``.dvc`` file, or a DVC remote (a ``files/md5/`` cache). Any other
    folder a spec names (``/root``, a home) is never mounted. A bundle carries its data and
    its spec is someone else's word: nothing is mounted for a bundle-backed store.
    """
    if bundle:
        return []
    paths: set[str] = set()
    for component in spec.components():
        version = component.dvc if component.kind == "data" else None
        if version is None:
            continue
        if _plain_folder(version.repo) and _dvc_repo_holding(version.repo, version.path):
            paths.add(version.repo)
        remote = version.remote
        if _plain_folder(remote) and os.path.isdir(os.path.join(remote, "files", "md5")):
            paths.add(remote)
    return sorted(paths)


def _plain_folder(path: object) -> TypeGuard[str]:
    """An absolute, normalised path of an existing folder (no ``..``, no link to elsewhere)."""
    return (
        isinstance(path, str)
        and os.path.isabs(path)
        and os.path.normpath(path) == path
        and os.path.isdir(path)
        and os.path.realpath(path) == path
    )


def _dvc_repo_holding(repo: str, rel: Any) -> bool:
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        return False
    target = os.path.normpath(os.path.join(repo, rel))
    if not target.startswith(repo.rstrip("/") + "/"):
        return False  # the recorded path must be inside the repo
    return os.path.isdir(os.path.join(repo, ".dvc")) and (
        os.path.exists(target) or os.path.exists(target + ".dvc")
    )


def sandbox(
    client: Any,
    image: Any,
    command: list[str],
    *,
    store: Path,
    mounts: Sequence[str] = (),
    limits: Limits = Limits(),
    environment: dict[str, str] | None = None,
    entrypoint: Sequence[str] = ("replay",),
) -> Outcome:
    """Run ``replay COMMAND`` in ``image`` with every restriction; the one place they live."""
    import docker

    volumes = {
        str(store): {"bind": STORE_MOUNT, "mode": "ro"},
        **{p: {"bind": p, "mode": "ro"} for p in mounts},
    }
    env = {
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "REPLAY_STORE": STORE_MOUNT,
        # mounted from the host, it belongs to another uid: this sandbox is where it is read
        "REPLAY_SAFE_STORES": STORE_MOUNT,
        # the mounted repos belong to another uid: let git (and DVC through it) read them
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
        **(environment or {}),
    }
    try:
        container = client.containers.create(
            image.id,
            command,
            entrypoint=list(entrypoint),
            user=USER,
            working_dir="/tmp",
            network_mode="none",
            read_only=True,
            volumes=volumes,
            environment=env,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=512m", "/var/tmp": "rw,nosuid,nodev,size=64m"},
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
    except docker.errors.DockerException as exc:
        raise ContainerFailedError(
            f"the engine refused to create the replay container: {_reason(exc)}",
            hint="check the limits and mounts",
        ) from None
    try:
        container.start()
        status = container.wait()
        container.reload()
        return Outcome(
            int(status.get("StatusCode", -1)),
            container.logs(stdout=True, stderr=False),
            container.logs(stdout=False, stderr=True),
            bool(container.attrs["State"].get("OOMKilled")),
        )
    except docker.errors.DockerException as exc:
        raise ContainerFailedError(f"the replay container failed: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(docker.errors.DockerException):  # already gone
            container.remove(force=True)


def _swap_args(swap: dict[str, str] | None) -> Iterator[str]:
    for target, value in (swap or {}).items():
        yield from ("--swap", f"{target}={value}")


@dataclass(frozen=True)
class Placement:
    """Where a recorded run replays: the engine's image, how reports name it (the repo
    digest, else the image ID), and what the container is told and given."""

    image: Any
    label: str
    environment: dict[str, str]
    mounts: list[str]


def placement(
    store: Store, run: RecordedRun, find: Callable[[ImageRef], Any], *, from_bundle: bool = False
) -> Placement:
    """Where ``run`` replays: the image ``find`` gives for its recorded one, the thread and
    kernel settings the run had (they decide BLAS's kernels and summation order), and the
    image's identity as the engine knows it."""
    recorded_env = load_environment(store, run.manifest.env)
    img = find(recorded_env.image)
    settings = recorded_env.threads | (recorded_env.kernels.env if recorded_env.kernels else {})
    declared = {k: v for k, v in settings.items() if v is not None}
    declared["REPLAY_IMAGE_ID"] = img.id
    by_digest = _repo_digest(img.attrs, recorded_env.image.digest)
    if by_digest:
        declared["REPLAY_IMAGE_DIGEST"] = by_digest
    return Placement(img, by_digest or img.id, declared, data_mounts(run.spec, bundle=from_bundle))


def run_in(
    client: Any,
    place: Placement,
    command: list[str],
    store: Store,
    limits: Limits,
    *,
    ok: tuple[int, ...] = (0,),
    entrypoint: Sequence[str] = ("replay",),
) -> bytes:
    """``entrypoint COMMAND`` sandboxed at ``place``: what it printed on stdout, once it
    exited with a code in ``ok``; otherwise ContainerFailedError with the line its stderr
    begins with."""
    out = sandbox(
        client,
        place.image,
        command,
        store=store.root,
        mounts=place.mounts,
        limits=limits,
        environment=place.environment,
        entrypoint=entrypoint,
    )
    if out.oom_killed:
        raise ContainerFailedError(
            f"the replay in {place.label} was killed by the memory limit ({limits.memory})",
            hint="raise it with --memory",
        )
    if out.exit_code not in ok:
        lines = [ln for ln in out.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = lines[0].removeprefix("error: ") if lines else "no message"
        raise ContainerFailedError(
            f"the replay in {place.label} exited {out.exit_code}: {why}",
            hint=lines[1].strip()
            if len(lines) > 1
            else "rerun with --debug outside the container to see more",
        )
    return out.stdout


def replay_in_container(
    store: Store,
    run_id: str,
    mode: str = "chained",
    swap: dict[str, str] | None = None,
    *,
    image: str | None = None,
    limits: Limits = Limits(),
    client: Any = None,
    tolerances: dict[str, float] | None = None,
    from_bundle: bool = False,
) -> ReplayReport:
    """Replay a run inside its recorded image (or ``image``) and return the report.

    ``from_bundle``: the store was made from a bundle, whose spec is someone else's word, so
    no host folder it names is mounted.
    """
    if client is None:
        with contextlib.closing(engine()) as own:
            return replay_in_container(
                store,
                run_id,
                mode,
                swap,
                image=image,
                limits=limits,
                client=own,
                tolerances=tolerances,
                from_bundle=from_bundle,
            )
    run = load_run(store, store.entry(run_id))
    place = placement(
        store, run, lambda recorded: resolve(client, recorded, image), from_bundle=from_bundle
    )
    command = [
        "--store",
        STORE_MOUNT,
        "run",
        run.run_id,
        "--json",
        "--mode",
        mode,
        *_swap_args(swap),
        *(
            a
            for column, value in (tolerances or {}).items()
            for a in ("--tolerance", f"{column}={value!r}")
        ),
    ]
    stdout = run_in(client, place, command, store, limits, ok=(0, 1))  # 1: diverged
    try:
        return ReplayReport.from_json(json.loads(stdout))
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplayError(
            f"the replay in {place.label} printed no report ({exc})",
            hint="is the image a pipeline-replay image?",
        ) from None


def save_images(client: Any, recorded: list[ImageRef]) -> dict[str, tuple[str, bytes]]:
    """``docker save`` of each recorded image, by image ID: {ID: (repo digest, tarball)}."""
    import docker

    out: dict[str, tuple[str, bytes]] = {}
    for rec in recorded:
        img = resolve(client, rec)
        if img.id not in out:
            try:
                data = b"".join(img.save(named=False))
            except docker.errors.DockerException as exc:
                raise ContainerFailedError(f"docker save {img.id} failed: {_reason(exc)}") from None
            digest = rec.digest if REPO_DIGEST.fullmatch(rec.digest) else ""
            out[img.id] = (digest, data)
    return out


def load_images(client: Any, images: dict[str, bytes]) -> None:
    """Load verified image tarballs the engine lacks (from a bundle exported --with-image)."""
    import docker

    for image_id, data in images.items():
        try:
            client.images.get(image_id)
        except docker.errors.ImageNotFound:
            try:
                client.images.load(data)
            except docker.errors.DockerException as exc:
                raise ContainerFailedError(
                    f"docker load of {image_id} failed: {_reason(exc)}"
                ) from None
