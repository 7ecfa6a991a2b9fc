"""``run``: replay one run as the ``replay run`` command does, from the store or from an
evidence bundle, on this machine or inside the recorded image.

``replay.replay`` is the in-process core; ``run`` adds where the run comes from and where its
code executes. A bundle is someone else's code: it is opened only once verified against a
pinned signer, and it replays in the sandbox container whenever a Docker engine answers,
unless that is refused by name (``no_sandbox``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from replay.docker.sandbox import Limits
from replay.engine.replay import ReplayReport, replay
from replay.errors import EngineUnavailableError, ImageMissingError, UsageError
from replay.store.store import Store


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run(
    source: Store | Path,
    run_id: str,
    *,
    mode: str = "chained",
    swap: dict[str, str] | None = None,
    tolerances: dict[str, float] | None = None,
    key: bytes | None = None,
    insecure_replay_unverified: bool = False,
    in_container: bool = False,
    no_sandbox: bool = False,
    image: str | None = None,
    limits: Limits | None = None,
    progress: Callable[[str], None] | None = None,
    note: Callable[[str], None] = _to_stderr,
) -> ReplayReport:
    """Replay ``run_id`` (an id or a unique prefix) from ``source``: a ``Store``, or the path
    of an evidence bundle, verified first against ``key`` or the trust store (see
    ``replay.verify``; ``insecure_replay_unverified`` replays one that fails, running its
    code). ``in_container`` replays inside the recorded image (or ``image``) with ``limits``;
    a bundle goes there by default whenever an engine answers, and ``no_sandbox`` keeps it
    on this machine (a store's runs replay here unless ``in_container``). ``progress`` is
    called with what is being replayed; ``note`` with each warning about where the code
    runs (default: stderr).
    """
    images: dict[str, bytes] = {}
    sandboxed_by_default = False
    if isinstance(source, Store):
        store = source
    else:
        from replay.evidence.export import bundle_images, open_bundle

        store, check = open_bundle(
            Path(source), key=key, insecure_replay_unverified=insecure_replay_unverified
        )
        if not check.ok:  # only reached with insecure_replay_unverified
            note(f"warning: replaying an unverified bundle ({check.failure})")
        images = bundle_images(check.files)
        sandboxed_by_default = _bundle_sandbox(no_sandbox, in_container, note) and not in_container
        in_container = in_container or sandboxed_by_default
    if not in_container:
        if image is not None:
            raise UsageError("--image needs --in-container")
        return replay(store, run_id, mode=mode, swap=swap, progress=progress, tolerances=tolerances)
    from replay.docker.client import engine
    from replay.docker.sandbox import load_images, replay_in_container

    if progress is not None:
        progress("in a container")
    with contextlib.closing(engine()) as client, _no_sandbox_hint(sandboxed_by_default):
        load_images(client, images)
        return replay_in_container(
            store,
            run_id,
            mode,
            swap,
            image=image,
            client=client,
            limits=limits or Limits(),
            tolerances=tolerances,
            from_bundle=not isinstance(source, Store),
        )


def _bundle_sandbox(no_sandbox: bool, in_container: bool, note: Callable[[str], None]) -> bool:
    """Whether a bundle's replay goes into the sandbox container: yes whenever an engine
    answers, unless refused by name; each way to the host is noted."""
    from replay.docker.client import engine

    if no_sandbox and in_container:
        raise UsageError("--no-sandbox and --in-container contradict each other")
    if no_sandbox:
        note(
            "warning: --no-sandbox: the bundle's code runs on this machine, with its network "
            "and files"
        )
        return False
    try:
        engine().close()
    except EngineUnavailableError as exc:
        note(f"note: {exc.message}: replaying the bundle on this machine, not in a container")
        return False
    return True


@contextlib.contextmanager
def _no_sandbox_hint(applies: bool) -> Iterator[None]:
    """A bundle sandboxed by default whose image this engine cannot get: name the way out."""
    try:
        yield
    except ImageMissingError as exc:
        if not applies:
            raise
        raise ImageMissingError(
            exc.message, hint=f"{exc.hint}; or replay on this machine with --no-sandbox"
        ) from None
