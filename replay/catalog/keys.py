"""The record keys of a batch of runs: the key column of each run's input rows, as text.

Online runs store each input table as an Arrow IPC stream of its own, and reading tens of
thousands of them one by one costs more than the rest of an ingest (~10 us each). Small
streams of one schema are joined instead (the schema once, every record batch, one end
marker) and read in one go; a stream that does not read back as one batch of its run's rows
is read alone, as is a big one.
"""

from __future__ import annotations

import pyarrow as pa

from replay.core.pipeline import INPUT
from replay.store import rows
from replay.store.segments import Block

CONTINUATION = b"\xff\xff\xff\xff"
EOS = CONTINUATION + b"\x00\x00\x00\x00"
JOIN_BELOW = 64 * 1024  # a stream's bytes
HELD_BYTES = 32 << 20  # the bytes of streams held for joining, at most

# The catalog's Arrow data is short-lived batch after batch: malloc gives it back where
# Arrow's default pool (mimalloc) keeps it (a reindex of 100k runs: 247 MB peak against 281).
POOL = pa.system_memory_pool()

Member = tuple[int, int, int]  # a run (its index in the batch), its input's first row, rows


def _split(data: pa.Buffer) -> tuple[bytes, bytes] | None:
    """An IPC stream's schema message and its other messages, if it has that shape."""
    view = memoryview(data).cast("B")  # pyarrow gives signed bytes
    if len(view) < 16 or view[:4] != CONTINUATION or view[-8:] != EOS:
        return None
    end = 8 + int.from_bytes(view[4:8], "little")  # a schema message has no body
    return bytes(view[:end]), bytes(view[end:-8])


class Keys:
    """The keys gathered so far: ``arrays`` hold them in the order of ``runs``, ``counts``
    of each; ``failed`` names the runs whose keys have no text, and why."""

    def __init__(self) -> None:
        self.arrays: list[pa.Array] = []
        self.runs: list[int] = []
        self.counts: list[int] = []
        self.rows = 0
        self.failed: list[tuple[int, str]] = []
        self._held: dict[tuple[bytes, str], list[tuple[bytes, Member]]] = {}
        self._held_bytes = 0

    def add(self, block: Block, run: int, run_id: str, key: str) -> None:
        """The keys of one run of ``block`` (the batch's run number ``run``)."""
        part, row, n = block.kinds(run_id)[INPUT]
        if n == 0:
            return
        self.rows += n
        data = block.part(part)
        split = _split(data) if len(data) < JOIN_BELOW else None
        if split is None:
            self._keep_rows(block.part_table(part).column(key), (run, row, n))
            return
        head, body = split
        self._held.setdefault((head, key), []).append((body, (run, row, n)))
        self._held_bytes += len(body)
        if self._held_bytes > HELD_BYTES:
            self.finish()

    def finish(self) -> None:
        """Read the streams held for joining."""
        for (head, key), streams in self._held.items():
            self._read(head, key, streams)
        self._held, self._held_bytes = {}, 0

    def _read(self, head: bytes, key: str, streams: list[tuple[bytes, Member]]) -> None:
        members = [m for _, m in streams]
        try:
            joined = pa.ipc.open_stream(
                b"".join([head, *(b for b, _ in streams), EOS]), memory_pool=POOL
            )
            chunks = joined.read_all().column(key).chunks
        except pa.ArrowException:
            chunks = []  # e.g. a dictionary each stream gives anew: read them alone
        if len(chunks) == len(members) and all(
            row == 0 and len(c) == n for c, (_, row, n) in zip(chunks, members, strict=True)
        ):
            self._keep(chunks, members)
            return
        for body, member in streams:
            alone = pa.ipc.open_stream(head + body + EOS, memory_pool=POOL).read_all()
            self._keep_rows(alone.column(key), member)

    def _keep_rows(self, column: pa.ChunkedArray, member: Member) -> None:
        _, row, n = member
        self._keep([column.slice(row, n).combine_chunks()], [member])

    def _keep(self, values: list[pa.Array], members: list[Member]) -> None:
        try:  # one cast for many runs
            self._append(rows.as_keys(pa.concat_arrays(values, memory_pool=POOL), POOL), members)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if len(members) > 1:
                for value, member in zip(values, members, strict=True):
                    self._keep([value], [member])
                return
            why = (
                "its bytes are not UTF-8"
                if isinstance(exc, pa.ArrowInvalid)
                else f"its type {values[0].type} has no text form"
            )
            self.failed.append((members[0][0], why))

    def _append(self, keys: pa.Array, members: list[Member]) -> None:
        self.arrays.append(keys)
        self.runs += [run for run, _, _ in members]
        self.counts += [n for _, _, n in members]
