"""Group commit: one background thread turns queued runs into one block and one ledger append.

In a folder (``replay.store.recovery.Journal``) a group is written in this order, with one
fdatasync in all:

1. its block, to this process's segment log, unsynced (no lock: the log is ours alone);
2. under the ledger's lock, its entries chained to the ledger's tail and appended to
   ``ledger.jsonl``, unsynced;
3. the same lines as a commit frame after the block, then one fdatasync of the segment log
   (``replay.store.recovery.Journal``); the lock is released and the group acknowledged.

A killed process leaves its writes in the page cache, and the next writer syncs what it left
unsealed before chaining to it; after a power loss, recovery rebuilds the ledger's unsynced
tail from the frames. While the thread writes group N, runs N+1… queue up, so many concurrent
small runs share each fsync. ``durable`` callers wait for their group; asynchronous callers
return at once and the bounded queue is the loss window. A group of asynchronous runs only
waits up to ``LINGER`` for more to join it (no caller waits on it), so that runs recorded
one after the other share the lock, block, sync and frame a group costs (about half the
commit thread's CPU for a 1-row run); a durable run or ``flush`` ends the wait.

On object storage (``replay.store.shards.ShardJournal``) a group is one PUT of one object
holding its block and its writer's chained lines; a sealer chains them into the ledger later.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from replay.core.digest import canonical_json, sha256
from replay.store import rows
from replay.store.segments import RunData

MAX_GROUP = 1024
LINGER = 0.02  # s a group of asynchronous runs waits for more to join it


class Journal(Protocol):
    def commit(self, runs: list[RunData], digests: list[str]) -> tuple[str, list[dict[str, Any]]]:
        """Make a group durable; the name of its block's log and the runs' entries."""
        ...

    def abort(self) -> None:
        """After a failed ``commit``: start afresh (a new log, a new writer)."""
        ...


@dataclass(frozen=True)
class Pending:
    data: RunData
    manifest: dict[str, Any]
    body: bytes  # the manifest frozen at submission: later changes to the dict do not count
    done: Future[dict[str, Any]]
    waited: bool  # a caller waits for it: its group does not linger


class Committer:
    def __init__(
        self,
        journal: Journal,
        index: rows.Writer | None,
        max_pending: int = 8192,
        linger: float | None = None,
    ) -> None:
        self._journal = journal
        self._rows = index  # where the catalog's lines go (none on object storage)
        self._queue: queue.Queue[Pending | None] = queue.Queue(maxsize=max_pending)  # None: hurry
        self._linger = LINGER if linger is None else linger
        self._idle = threading.Condition()
        self._outstanding = 0
        self._flushing = 0  # flushes waiting: no group lingers meanwhile
        self._thread = threading.Thread(target=self._loop, name="replay-commit", daemon=True)
        self._thread.start()
        self._pid = os.getpid()  # a forked child inherits the exit hook, not the thread
        # After an object store's writer registered its retirement: exit hooks run last
        # first, so the runs are written before the writer says it wrote its last.
        atexit.register(_flush_at_exit, weakref.ref(self))

    def submit(
        self,
        data: RunData,
        manifest: dict[str, Any],
        body: bytes | None = None,
        *,
        waited: bool = True,
    ) -> Future[dict[str, Any]]:
        """Queue a run; ``body``: ``canonical_json(manifest)``, when the caller has it;
        ``waited``: whether the caller waits for it (else its group may linger)."""
        done: Future[dict[str, Any]] = Future()
        with self._idle:
            self._outstanding += 1
        body = canonical_json(manifest) if body is None else body
        self._queue.put(Pending(data, manifest, body, done, waited))
        return done

    @property
    def pending(self) -> int:
        """Runs accepted but not yet durable: the loss window of asynchronous recording."""
        return self._outstanding

    def flush(self) -> None:
        with self._idle:
            if self._outstanding == 0:
                return
            self._flushing += 1
        try:
            self._queue.put(None)  # wakes a lingering group
            with self._idle:
                self._idle.wait_for(lambda: self._outstanding == 0)
        finally:
            with self._idle:
                self._flushing -= 1

    def flush_at_exit(self) -> None:
        """At a normal exit, asynchronous runs still queued or lingering are made durable (a
        crash loses them: the loss window ``pending`` counts)."""
        if self._pid == os.getpid() and self._thread.is_alive():
            self.flush()

    def _loop(self) -> None:
        while True:
            if group := self._gather():
                self._commit(group)

    def _gather(self) -> list[Pending]:
        """The next group: the runs queued, and while none of them is waited for (and no
        flush waits), those that arrive within ``linger`` of the first."""
        group: list[Pending] = []
        waited = False
        item = self._queue.get()
        deadline = time.monotonic() + self._linger
        while True:
            if item is not None:
                group.append(item)
                waited = waited or item.waited
            if len(group) >= MAX_GROUP:
                return group
            try:
                item = self._queue.get_nowait()
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if not group or waited or self._flushing or remaining <= 0:
                return group
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return group

    def _note(self, group: list[Pending], appended: list[dict[str, Any]], segment: str) -> None:
        """The catalog's lines of a committed group (replay.store.rows)."""
        if self._rows is None:
            return
        try:
            data = b"".join(
                rows.line(e, p.body, p.data.tables) for p, e in zip(group, appended, strict=True)
            )
            self._rows.append(segment, data)
        except Exception:  # derived data: without it, ingest reads these runs' blocks
            return  # the runs are committed: nothing about an index line may fail them

    def _commit(self, group: list[Pending]) -> None:
        try:
            # The manifest travels in the (compressed) block; the ledger line names it by
            # digest, and the block's header digest in that line covers its bytes.
            segment, appended = self._journal.commit(
                [
                    RunData(p.data.run_id, p.data.tables, {**p.data.blobs, "manifest": p.body})
                    for p in group
                ],
                [sha256(p.body) for p in group],
            )
            entries = [{**e, "manifest": p.manifest} for p, e in zip(group, appended, strict=True)]
        except BaseException as exc:  # every waiter must learn its run was not committed
            self._journal.abort()
            for p in group:
                p.done.set_exception(exc)
        else:
            self._note(group, appended, segment)
            for p, entry in zip(group, entries, strict=True):
                p.done.set_result(entry)
        with self._idle:
            self._outstanding -= len(group)
            self._idle.notify_all()


def _flush_at_exit(committer: weakref.ref[Committer]) -> None:
    live = committer()
    if live is not None:
        live.flush_at_exit()
