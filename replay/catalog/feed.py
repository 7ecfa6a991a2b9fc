"""What ingest reads: the ledger's new entries in chunks, each with the index lines writers
left for them (replay.store.rows), both parsed by pyarrow's JSON reader many at a time, a
chunk ahead of DuckDB (replay.catalog.pair). DuckDB's json_transform over the same bytes
costs as much CPU (10,000 index lines: ~45 ms either way).

Nothing here imports pyarrow.compute: ~35 ms of every process that ingests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from replay.catalog.keys import POOL
from replay.store import frames, rows
from replay.store.ledger import Ledger
from replay.store.store import Store

CHUNK_BYTES = 4 << 20  # of ledger lines a chunk (~8,500 entries): one DuckDB transaction
PIECE_BYTES = 2 << 20  # of index lines read at a time from one file
_S, _I = pa.string(), pa.int64()
ENTRIES = pa.schema(
    [
        ("seq", _I),
        ("run_id", _S),
        ("manifest_sha256", _S),
        (
            "block",
            pa.struct([("segment", _S), ("offset", _I), ("length", _I), ("header", _S)]),
        ),
    ]
)
TS = pa.timestamp("ns", tz="UTC")


def as_timestamps(
    table: pa.Table, names: tuple[str, ...] = ("started", "ended", "clock")
) -> pa.Table:
    """JSON has no timestamps: they travel as int64 ns (the same bits: a view, no copy)."""
    for name in names:
        if name in table.column_names:
            i = table.column_names.index(name)
            column = table.column(i)
            viewed = pa.chunked_array([c.view(TS) for c in column.chunks], TS)
            table = table.set_column(i, name, viewed)
    return table


def int64s(values: np.ndarray[Any, Any]) -> pa.Array:
    """A numpy int64 array as an Arrow one, without pa.array, which imports pandas (0.3 s
    and 40 MB for every process that ingests) to check what it is given."""
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def as_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, Any]:
    """An int32, int64 or boolean column as numpy, nulls as -1 or False (to_numpy imports
    pandas)."""
    array = (
        column.combine_chunks(memory_pool=POOL) if isinstance(column, pa.ChunkedArray) else column
    )
    validity, data = array.buffers()[:2]
    boolean = pa.types.is_boolean(array.type)
    if boolean:
        values = bits(data, array.offset, len(array))
    else:
        dtype = np.int32 if array.type == pa.int32() else np.int64
        values = np.frombuffer(data, dtype)[array.offset : array.offset + len(array)]
    if array.null_count:
        values = np.where(bits(validity, array.offset, len(array)), values, not boolean and -1)
    return values


def bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray[Any, Any]:
    """Arrow's bitmap ``buffer`` (a validity or boolean buffer) as numpy booleans."""
    unpacked = np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little")
    return unpacked[offset : offset + n].astype(np.bool_)


def _ends(data: bytes | memoryview, start: int) -> np.ndarray[Any, Any]:
    """Where each line of ``data`` (read from byte ``start``) ends."""
    return np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + (start + 1)


@dataclass
class Chunk:
    """Complete ledger lines from byte ``start``: ``data``, their ``ends`` and, when they
    parse as entries, the ``entries`` table (with each line's ``entry_end``; else the lines
    are read one by one), with the index lines of their seqs (``lines``, timestamps as
    such) and how far each index file is then ``consumed``."""

    start: int
    data: bytes
    ends: np.ndarray[Any, Any]
    entries: pa.Table | None = None
    lines: pa.Table | None = None
    consumed: dict[str, int] = field(default_factory=dict)
    then: object = None  # what ``read``'s ``then`` made of it, in the reading thread

    @property
    def end(self) -> int:
        return int(self.ends[-1])

    def line(self, i: int) -> bytes:
        begin = int(self.ends[i - 1]) if i else self.start
        return self.data[begin - self.start : int(self.ends[i]) - self.start]


def read(
    store: Store,
    offset: int,
    consumed: dict[str, int],
    then: Callable[[Chunk], object] = lambda _: None,
) -> Iterator[Chunk]:
    """The ledger's chunks from byte ``offset``, each with its index lines (each file read
    from its ``consumed`` offset) and ``then``'s answer for it. The next chunk is read,
    parsed and given to ``then`` in a thread while the caller indexes this one, its entries
    and each writer's lines in threads of their own (the first chunk has nothing to overlap
    with): pyarrow's JSON reader and DuckDB both let go of the GIL."""
    source = _chunks(store.ledger, offset)
    with (
        ThreadPoolExecutor(1, thread_name_prefix="replay-ingest") as pool,
        ThreadPoolExecutor(2, thread_name_prefix="replay-lines") as side,
    ):
        lines = Lines(store, consumed, side)

        def prepare() -> Chunk | None:
            chunk = next(source, None)
            if chunk is None:
                return None
            last = _seq(chunk.line(len(chunk.ends) - 1))
            # The entries are parsed while the lines are read (an epoch's are unpacked here).
            parsing = side.submit(
                rows.read_lines, chunk.data, ENTRIES, strict=False, memory_pool=POOL
            )
            if last is not None:
                lines.fill(last)
            with contextlib.suppress(pa.ArrowInvalid):  # an odd line: read line by line
                chunk.entries = parsing.result().append_column("entry_end", int64s(chunk.ends))
            got = None if last is None else lines.upto(last)
            entries = chunk.entries
            if got is not None and entries is not None and not entries["seq"].null_count:
                chunk.lines = as_timestamps(got)
            chunk.consumed = lines.consumed()
            chunk.then = then(chunk)
            return chunk

        ahead = pool.submit(prepare)
        while (chunk := ahead.result()) is not None:
            ahead = pool.submit(prepare)
            yield chunk


def _seq(line: bytes | memoryview) -> int | None:
    """The seq a JSON line names (a ledger entry or an index line), or None."""
    try:
        seq = orjson.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) else None


def _chunks(ledger: Ledger, offset: int) -> Iterator[Chunk]:
    """The ledger's complete lines from byte ``offset``, about CHUNK_BYTES at a time (not
    parsed yet): each found in the mapped file and copied once."""
    size = ledger.size()
    while offset < size:
        view = ledger.read_range(offset, min(CHUNK_BYTES, size - offset))
        ends = _ends(view, offset)
        if not len(ends) and offset + len(view) < size:  # a line longer than a chunk
            view = ledger.read_range(offset, size - offset)
            ends = _ends(view, offset)
        if not len(ends):
            return  # a torn tail: not committed
        cut = int(ends[-1]) - offset
        yield Chunk(offset, bytes(view[:cut]), ends)
        offset += cut


@dataclass
class _File:
    name: str
    offset: int  # what ingest has consumed
    read: int  # what has been read (and parsed, or being parsed, into ``pending``)
    pending: list[pa.Table] = field(default_factory=list)
    parsing: list[tuple[int, Future[pa.Table | None]]] = field(default_factory=list)  # at
    last: int = -1  # the seq of the last line read (-1: none since ``pending`` emptied)
    done: bool = False  # no whole line left to read now (or the file is not index lines)


class Lines:
    """The index lines of every writer, read forward from where ingest stopped in each file.

    A writer appends its groups in ledger order, so each file's lines rise in ``seq``: a
    chunk of the ledger takes every line up to its last entry, and leaves the rest."""

    def __init__(self, store: Store, consumed: dict[str, int], pool: Executor) -> None:
        self.store = store
        self.files = [
            _File(name, consumed.get(name, 0), consumed.get(name, 0))
            for name in store.fs.list(rows.FOLDER)
        ]
        self.pool = pool

    def fill(self, last_seq: int) -> None:
        """Read each file up to ``last_seq``, its pieces parsed in the pool, several at once
        (an S3 store's lines are all in one file); ``upto`` takes them."""
        for f in self.files:
            while not f.done and self._need_more(f, last_seq):
                self._read(f)

    def upto(self, last_seq: int) -> pa.Table | None:
        """Every unconsumed line whose seq is at most ``last_seq`` (after ``fill``)."""
        taken: list[pa.Table] = []
        for f in self.files:
            for at, job in f.parsing:
                table = job.result()
                if table is None:  # not index lines: this piece's runs are indexed from blocks
                    f.read, f.done = at, True
                    break
                f.pending.append(table)
            f.parsing = []
            if f.pending:
                table = pa.concat_tables(f.pending)
                n = int(np.searchsorted(as_numpy(table["seq"]), last_seq, side="right"))
                if n:
                    taken.append(table.slice(0, n))
                    f.offset = int(table["_end"][n - 1].as_py())
                f.pending = [table.slice(n)] if n < len(table) else []
            if not f.pending:
                f.last = -1  # the next chunk asks the file's next line first (``_need_more``)
        return pa.concat_tables(taken).drop_columns(["_end"]) if taken else None

    def consumed(self) -> dict[str, int]:
        return {f.name: f.offset for f in self.files}

    def _need_more(self, f: _File, last_seq: int) -> bool:
        if f.last > last_seq:
            return False
        if f.read >= self.store.fs.size(f"{rows.FOLDER}/{f.name}"):
            return False
        # A file whose next line is past this chunk (another writer's, or a later one) is
        # not parsed a piece at a time for nothing: its first line says so (a mirror's one
        # file of packed lines is read on).
        return f.last >= 0 or f.name.endswith(rows.FRAMES) or self._next_seq(f) <= last_seq

    def _next_seq(self, f: _File) -> int:
        head = bytes(self.store.fs.read_range(f"{rows.FOLDER}/{f.name}", f.read, 4096))
        cut = head.find(b"\n")
        seq = _seq(head[:cut]) if cut >= 0 else None
        return -1 if seq is None else seq  # a long or odd line: read it as a piece

    def _read(self, f: _File) -> None:
        if f.name.endswith(rows.FRAMES):
            self._read_frame(f)
            return
        view = self.store.fs.read_range(f"{rows.FOLDER}/{f.name}", f.read, PIECE_BYTES)
        ends = _ends(view, f.read)
        if not len(ends):  # a torn last line (its writer died, or is writing it now)
            f.done = True
            return
        data = bytes(view[: int(ends[-1]) - f.read])
        last = _seq(data[int(ends[-2]) - f.read if len(ends) > 1 else 0 :])
        f.parsing.append((f.read, self.pool.submit(_parse, data, ends)))
        f.read += len(data)
        f.last = last if last is not None else 1 << 62  # an odd line: its parse decides

    def _read_frame(self, f: _File) -> None:
        """The next frame of a mirror's packed lines (an epoch's): an Arrow table, or JSON
        lines unpacked a piece at a time, each parsed in the pool. Its lines are marked as
        ending where the frame starts, its last where the frame ends: an ingest that stops
        inside an epoch reads the frame again, and the lines it had indexed pair with no
        entry. A frame that does not unpack is passed over: its runs are indexed from their
        blocks."""
        path = f"{rows.FOLDER}/{f.name}"
        head = bytes(self.store.fs.read_range(path, f.read, len(frames.ARROW)))
        arrow = head == frames.ARROW
        n = frames.length_at(self.store.fs, path, f.read, frames.ARROW if arrow else frames.PACKED)
        if not n:  # none yet, or one its mirror is writing
            f.done = True
            return
        payload = self.store.fs.read_range(path, f.read + frames.START, n - frames.OVERHEAD)
        if arrow:
            self._read_table(f, payload, n)
            return
        pieces = frames.unpacked_lines(payload, rows.MAX_UNPACKED, PIECE_BYTES)
        held: bytes | None = None  # a piece is parsed once the next is unpacked: the last
        while True:  # line of the last one is marked as ending with the frame
            try:
                piece = next(pieces, None)
            except ValueError:
                piece = None  # the rest of it: its runs are indexed from their blocks
            if held is not None:
                marks = np.full(held.count(b"\n"), f.read, np.int64)
                if piece is None:
                    marks[-1] = f.read + n
                    last = held[held.rfind(b"\n", 0, len(held) - 1) + 1 :]
                    f.last = _seq(last) or 1 << 62
                f.parsing.append((f.read, self.pool.submit(_parse, held, marks)))
            if piece is None:
                break
            held = piece
        f.read += n

    def _read_table(self, f: _File, payload: memoryview, n: int) -> None:
        """An ARROW frame's lines, read here: the next frame's reading waits on their last
        seq (``_need_more``), and they take a tenth of the time JSON lines took to parse."""
        table = rows.unpacked(payload)
        if table is not None and table.num_rows:
            marks = np.full(table.num_rows, f.read, np.int64)
            marks[-1] = f.read + n
            table = table.append_column("_end", int64s(marks))
            f.last = table["seq"][-1].as_py() or 1 << 62
        read: Future[pa.Table | None] = Future()
        read.set_result(table)
        f.parsing.append((f.read, read))
        f.read += n


def _parse(data: bytes | memoryview, ends: np.ndarray[Any, Any]) -> pa.Table | None:
    """Index lines, with where each ends in its file; None when they are not index lines
    (their runs are indexed from their blocks)."""
    try:
        # Lines a later version writes say more.
        table = rows.read_lines(data, rows.LINES, strict=False, memory_pool=POOL)
    except pa.ArrowInvalid:
        return None
    return table.append_column("_end", int64s(ends))
