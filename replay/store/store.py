"""A snapshot store: a folder of immutable objects, segment logs and the ledger.

    snapshots/
      FORMAT                   {"format": 1}; a newer format is refused, never rewritten
      objects/sha256/ab/cdef…  code, sources, models, params, environments, pipeline specs
      segments/<writer>.seg    manifests, row data and tapes: per commit group, one block
                               and a frame with its ledger lines (one fdatasync)
      ledger/ledger.jsonl      one hash-chained entry per committed run (manifest by digest)
      ledger/sealed, boot.json what recovery after a power loss starts from (replay.store.recovery)
      index/<writer>.jsonl     each run's catalog row, as its group committed (derived, unsynced:
                               ingest checks it against the ledger; see replay.store.rows)
      catalog.duckdb           an index rebuilt from the above (see replay.catalog.index)

The files are the truth. Writers never touch the catalog; they leave it the index lines.

A store on object storage (``s3://bucket/prefix``) holds the same objects, keys and
checkpoints; each writer PUTs its groups as log objects (``replay.store.shards``), sealers
chain them into the ledger by epochs (``replay.store.seals``), and readers work on a local
mirror of the sealed ledger with the catalog beside it (``replay.store.mirror``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replay.core import ownership
from replay.core.digest import sha256
from replay.errors import (
    CorruptionError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreError,
    StoreFormatError,
    UsageError,
)
from replay.store import lookup, rows, s3
from replay.store.cache import Cache
from replay.store.commit import Committer
from replay.store.fs import LocalFS, LogFS
from replay.store.ledger import FOLDER as LEDGER_FOLDER
from replay.store.ledger import Ledger
from replay.store.objects import ObjectStore
from replay.store.recovery import Journal
from replay.store.segments import Block, BlockRef, RunData, SegmentWriter

# Object storage's modules (the mirror, sealing, signing keys) are imported where an S3 store
# needs them: a folder store's processes, `replay find` first, skip ~25 ms of imports.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from replay.store.seals import Epoch, Sealer

FORMAT = 1
SYNC_EVERY = 2.0  # seconds: how often reads take what other writers recorded (see sync)
DEFAULT_PATH = "snapshots"


def default_path() -> Path:
    return Path(os.environ.get("REPLAY_STORE") or DEFAULT_PATH)


class Store:
    def __init__(
        self, root: Path, *, readonly: bool, durable: bool, remote: s3.S3FS | None = None
    ) -> None:
        self.root = root  # on object storage: the local mirror
        self.location = root.resolve()  # one name for the folder, however it was reached
        self.remote = remote
        # Every file of the store is read and written here.
        self.fs: LogFS = LocalFS(root)
        if remote is not None:
            from replay.store import mirror

            self.fs = mirror.Routed(LocalFS(root), remote)
        self.readonly = readonly
        self.durable = durable
        self.objects = ObjectStore(self.fs)
        self.ledger = Ledger(self.fs)
        self._writer_lock = threading.Lock()
        self._writer_pid = -1
        self._committer: Committer | None = None
        self._segments: SegmentWriter | None = None
        self.cache = Cache()  # what readers loaded from this store (replay.store.cache)
        self._sealer: Sealer | None = None
        self._synced_at = -SYNC_EVERY  # monotonic time of this store's last sync
        self._wrote = False  # a run was submitted since then

    @property
    def url(self) -> str:
        """Where the store is, as ``--store`` takes it (a folder, or ``s3://…``)."""
        return str(self.root) if self.remote is None else self.remote.url

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        durable: bool = True,
    ) -> Store:
        """Open (and with ``create``, initialise) the store at ``path``.

        ``path`` defaults to ``$REPLAY_STORE`` or ``./snapshots``. ``durable=False`` makes
        ``record`` return before its run is fsynced (see ``Store.flush``).
        """
        where = path if path is not None else os.environ.get("REPLAY_STORE") or DEFAULT_PATH
        if s3.is_url(where):
            return cls._open_remote(str(where), create=create, readonly=readonly, durable=durable)
        if isinstance(where, str):
            s3.check_not_url(where)
        root = Path(where)
        fs = LocalFS(root)
        if not fs.exists("FORMAT"):
            if not create or readonly:
                raise NotFoundError(
                    f"no store at {root}", hint="run `replay init` there, or set REPLAY_STORE"
                )
            _initialise(fs)
        ownership.check(root)
        try:
            raw = fs.read("FORMAT")
        except OSError:
            raw = b""
        _check_format(str(root), fs.where("FORMAT"), raw)
        if not readonly and not fs.writable():
            readonly = True
        return cls(root, readonly=readonly, durable=durable)

    @classmethod
    def _open_remote(cls, url: str, *, create: bool, readonly: bool, durable: bool) -> Store:
        remote = s3.S3FS.of(url)
        if not remote.exists("FORMAT"):
            remote.check_bucket()
            if not create or readonly:
                raise NotFoundError(f"no store at {url}", hint=f"run `replay --store {url} init`")
            remote.put_if_absent("FORMAT", (json.dumps({"format": FORMAT}) + "\n").encode())
        _check_format(url, remote.where("FORMAT"), remote.read("FORMAT"))
        from replay.store import mirror

        local = mirror.location(remote)
        LocalFS(local).makedirs(LEDGER_FOLDER)
        # Not synced here: each read syncs first (and `replay seal` must find what is pending).
        return cls(local, readonly=readonly, durable=durable, remote=remote)

    def sync(self, *, seal: bool = False) -> None:
        """On object storage: seal what writers left pending (unless read-only; unsigned:
        ``replay seal`` signs) and take the sealed epochs into the local mirror. Reads call
        it: the catalog before a query, a lookup that finds no run (``seal``: always).

        Sealing costs a LIST per writer, taking epochs a GET: a read syncs when this store
        submitted runs since it last did (a writer finds its own runs), when asked, or at
        most every SYNC_EVERY seconds; so what other writers recorded shows within that
        (plus the sealer's period, when a read-only reader waits for a sealer)."""
        if self.remote is None:
            return
        now = time.monotonic()
        if not (seal or self._wrote or now - self._synced_at >= SYNC_EVERY):
            return
        full = seal or self._wrote  # a writer's own runs, or a run looked for: list everyone
        self._wrote, self._synced_at = False, now
        from replay.store import mirror

        local, remote = LocalFS(self.root), self.remote
        if self.readonly:
            mirror.update(local, remote)
            return
        sealer = self._sealing(None)
        # The mirror takes each epoch the sealer reads while it looks for the next one and
        # lists what writers left: its requests wait on the network, the mirror's check of
        # an epoch on the CPU (~15 ms for 10,000 runs).
        with ThreadPoolExecutor(1, thread_name_prefix="replay-sync") as pool:
            taking: list[Future[int]] = []

            def take(epoch: Epoch) -> None:
                taking.append(pool.submit(mirror.update, local, remote, epoch))

            known = sealer.catch_up(take)
            if not taking:  # none newer than the sealer knew: the mirror may still lag it
                take(known)
            sealed = sealer.seal(full=full, caught_up=True)
            if sealed is not None:
                take(sealed)
        for taken in taking:
            taken.result()

    def seal(self, private: Ed25519PrivateKey | None = None, *, full: bool = False) -> Epoch | None:
        """On object storage: chain what every writer left pending into the next sealing
        epoch (its root signed with ``private``, when given); None when nothing was.
        Writers long quiet are listed now and then (see seals.Sealer), or every time if
        ``full``."""
        return self._sealing(private).seal(full=full)

    def _sealing(self, private: Ed25519PrivateKey | None) -> Sealer:
        """This store's sealer, signing with ``private`` (None: not signing)."""
        if self.remote is None:
            raise UsageError(
                f"{self.root} is a folder store: its writers chain the ledger in order",
                hint="seal stores on object storage (s3://…); `replay checkpoint` signs this one",
            )
        self._check_writable()
        if self._sealer is None:
            from replay.store.seals import Sealer

            self._sealer = Sealer(self.remote, memory=LocalFS(self.root))
        self._sealer.private = private
        return self._sealer

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyStoreError(
                f"store {self.root} is read-only",
                hint="query and replay it, or record into a writable store",
            )

    def _writer(self) -> Committer:
        # One committer per process: a fork gets its own segment log and thread.
        with self._writer_lock:
            if self._committer is None or self._writer_pid != os.getpid():
                if self.remote is not None:
                    from replay.store.shards import ShardJournal

                    self._committer = Committer(ShardJournal(self.remote), None)
                else:
                    self._segments = SegmentWriter(self.fs)
                    journal = Journal(self.ledger, self._segments)
                    self._committer = Committer(journal, rows.Writer(self.fs))
                self._writer_pid = os.getpid()
            return self._committer

    def put_object(self, data: bytes | memoryview) -> str:
        self._check_writable()
        return self.objects.put(data)

    def get_object(self, digest: str) -> bytes:
        return self.objects.get(digest)

    def commit(
        self,
        data: RunData,
        manifest: dict[str, Any],
        body: bytes | None = None,
        *,
        waited: bool = True,
    ) -> Future[dict[str, Any]]:
        """Queue a run for group commit; the future resolves to its ledger entry.
        ``body``: the manifest's canonical JSON, when the caller has it; ``waited=False``:
        the caller does not wait for it (its group may wait a little for others)."""
        self._check_writable()
        self._wrote = True
        return self._writer().submit(data, manifest, body, waited=waited)

    def flush(self) -> None:
        """Wait until every run recorded so far is durable."""
        if self._committer is not None and self._writer_pid == os.getpid():
            self._committer.flush()

    @property
    def pending(self) -> int:
        if self._committer is None or self._writer_pid != os.getpid():
            return 0
        return self._committer.pending

    def entries(self, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Committed entries from byte ``offset`` of the ledger, each with its manifest
        (read from its block and checked against the digest the entry names)."""
        for pos, entry, _, body in self.manifests(offset):
            yield pos, {**entry, "manifest": json.loads(body)}

    def manifests(
        self, offset: int = 0, entries: Iterable[tuple[int, dict[str, Any]]] | None = None
    ) -> Iterator[tuple[int, dict[str, Any], Block, bytes]]:
        """Committed entries from byte ``offset`` (or ``entries``, the caller's own read of
        them, such as ``Ledger.chain``), each with its block (opened once for the entries of
        one block in a row) and its manifest's bytes, checked against the entry."""
        block: Block | None = None
        key: tuple[str, int] | None = None
        for pos, entry in self.ledger.read(offset) if entries is None else entries:
            ref = entry["block"]
            if block is None or key != (ref["segment"], ref["offset"]):
                block, key = self.block(ref), (ref["segment"], ref["offset"])
            body = block.blob(entry["run_id"], "manifest")
            if sha256(body) != entry["manifest_sha256"]:
                raise CorruptionError(
                    block.where,
                    f"the manifest of run {entry['run_id']} does not match its ledger entry",
                )
            yield pos, entry, block, body

    def entry(self, run: str) -> dict[str, Any]:
        """The committed entry of a run named by its id or a unique prefix, from the ledger."""
        return self.find_entries([run])[0]

    def find_entries(
        self, runs: Sequence[str], ends: Mapping[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """The entries of many runs in one pass over the ledger (``ends``: where the lines of
        some full ids end, as an index knows it: then one seek each); see replay.store.lookup.
        On object storage, runs not found are looked for again after a ``sync``."""
        try:
            return lookup.entries(self, runs, ends or {})
        except NotFoundError:
            if self.remote is None:
                raise
            self.sync(seal=True)
            return lookup.entries(self, runs, ends or {})

    def block(self, ref: dict[str, Any]) -> Block:
        try:
            block_ref = BlockRef(**ref)
        except TypeError:  # a changed byte in a field name
            raise CorruptionError(
                str(self.ledger.path), f"a ledger entry names no block ({ref!r})"
            ) from None
        if "/" in block_ref.segment or block_ref.segment.startswith("."):
            raise StoreError(f"segment name {block_ref.segment!r} is not a plain file name")
        return Block(self.fs, block_ref)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def _check_format(store: str, where: str, raw: bytes) -> None:
    try:
        version = json.loads(raw)["format"]
    except (ValueError, KeyError, TypeError):
        raise StoreFormatError(
            f"{where} is unreadable", hint='it must hold {"format": 1}; restore it'
        ) from None
    if version > FORMAT:
        raise StoreFormatError(
            f"store {store} has format {version}, this pipeline-replay reads up to {FORMAT}",
            hint="upgrade pipeline-replay (pip install -U pipeline-replay)",
        )


def _initialise(fs: LocalFS) -> None:
    try:
        for sub in ("objects", "segments", "ledger"):
            fs.makedirs(sub)
        fs.write_atomic("FORMAT", (json.dumps({"format": FORMAT}) + "\n").encode())
    except OSError as exc:
        raise StoreError(
            f"cannot create a store at {fs.root}: {exc.strerror}",
            hint="choose a writable folder (REPLAY_STORE or --store)",
        ) from exc
