"""Group commit: one background thread turns queued runs into one block and one ledger append.

While the thread writes group N (one segment fsync, one ledger fsync), runs N+1… queue up,
so many concurrent small runs share each fsync. ``durable`` callers wait for their group;
asynchronous callers return at once and the bounded queue is the loss window.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from replay.core.digest import canonical_json, sha256
from replay.store.ledger import Ledger
from replay.store.segments import RunData, SegmentWriter

MAX_GROUP = 1024


@dataclass(frozen=True)
class Pending:
    data: RunData
    manifest: dict[str, Any]
    body: bytes  # the manifest frozen at submission: later changes to the dict do not count
    done: Future[dict[str, Any]]


class Committer:
    def __init__(self, segments: SegmentWriter, ledger: Ledger, max_pending: int = 8192) -> None:
        self._segments = segments
        self._ledger = ledger
        self._queue: queue.Queue[Pending] = queue.Queue(maxsize=max_pending)
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread = threading.Thread(target=self._loop, name="replay-commit", daemon=True)
        self._thread.start()

    def submit(self, data: RunData, manifest: dict[str, Any]) -> Future[dict[str, Any]]:
        done: Future[dict[str, Any]] = Future()
        with self._idle:
            self._outstanding += 1
        self._queue.put(Pending(data, manifest, canonical_json(manifest), done))
        return done

    @property
    def pending(self) -> int:
        """Runs accepted but not yet durable: the loss window of asynchronous recording."""
        return self._outstanding

    def flush(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._outstanding == 0)

    def _loop(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: list[Pending]) -> None:
        try:
            # The manifest travels in the (compressed) block; the ledger line names it by
            # digest, and the block's header digest in that line covers its bytes.
            ref = self._segments.append(
                [
                    RunData(p.data.run_id, p.data.tables, {**p.data.blobs, "manifest": p.body})
                    for p in group
                ]
            )
            records = [
                {"run_id": p.data.run_id, "manifest_sha256": sha256(p.body), "block": ref.as_json()}
                for p in group
            ]
            entries = [
                {**e, "manifest": p.manifest}
                for p, e in zip(group, self._ledger.append(records), strict=True)
            ]
        except BaseException as exc:  # every waiter must learn its run was not committed
            for p in group:
                p.done.set_exception(exc)
        else:
            for p, entry in zip(group, entries, strict=True):
                p.done.set_result(entry)
        with self._idle:
            self._outstanding -= len(group)
            self._idle.notify_all()
