"""Record keys compacted into Parquet on the store, so that ``find`` on a store of millions
of rows reads a row group or two instead of holding every key in each reader's catalog.

A part ``compacted/<start>-<stop>.parquet`` holds the records rows (key, run, input row,
pipeline, clock, seq) of the runs with ledger sequence numbers in [start, stop), sorted by
key, in row groups of ROW_GROUP rows, clocks as µs UTC timestamps: the layouts pyarrow
prunes by its statistics (a point lookup in 1M rows: one ranged GET of ~0.5 MB). Parts are
created once (``put_if_absent``) and never rewritten; a later compaction may merge the small
trailing parts with the new rows into one part over the whole range, which then covers them.
Readers take the chain of parts from seq 0 that reaches furthest (``chain``), and each
compaction deletes the parts superseded for GRACE or longer (``superseded``); a reader that
listed a part deleted since lists the parts again (``asking``).

A catalog created after compaction keeps no records rows below the chain's end (its
``compacted`` meta key): ``find`` reads them from the parts instead. Parts are derived data,
like the catalog: every answer ``find`` gives is confirmed in the ledger and the run's block.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

import duckdb
import pyarrow as pa

from replay.catalog.schema import compacted_below
from replay.errors import CatalogError, CorruptionError, ReadOnlyStoreError
from replay.store.arrowfs import Reads, arrow_fs
from replay.store.parts import Part, chain, parts, superseded, written

if TYPE_CHECKING:
    import pyarrow.dataset as pads

    from replay.store.fs import LogFS, StoreFS
    from replay.store.store import Store

T = TypeVar("T")

ROW_GROUP = 65_536
MERGE_BELOW = 4_194_304  # rows: no part merges into one larger than this
# Seconds a superseded part is kept, timed on the store's clock (its files' own stamps), not
# on the machines': a reader that listed the parts before a merged one was written may be
# reading it still (a find takes a second, a verify of millions of keys minutes).
GRACE = 15 * 60
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("run_id", pa.string()),
        ("row", pa.int64()),
        ("pipeline", pa.string()),
        ("clock", pa.timestamp("us", "UTC")),
        ("seq", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Compaction:
    part: str | None  # the part written, None when there was nothing new to compact
    start: int
    stop: int
    rows: int
    deleted: tuple[str, ...] = ()  # the superseded parts deleted


def compact(store: Store) -> Compaction:
    """Compact the record keys of every run the catalog lists past the chain's end into a new
    part, merged with the trailing parts no larger than it (see _merged_with); then delete
    the parts superseded for GRACE or longer."""
    from replay.catalog.index import Catalog

    if store.readonly:
        raise ReadOnlyStoreError(
            f"store {store.url} is read-only", hint="compact it with write access to the store"
        )
    have = chain(parts(store.fs))
    end = have[-1].stop if have else 0
    with Catalog(store).connect() as con:
        stop = int(con.execute("select coalesce(max(seq) + 1, 0) from runs").fetchall()[0][0])
        below = compacted_below(con)
        if stop <= end:
            return Compaction(None, end, end, 0)
        if below > end:  # parts were deleted under a catalog that relied on them
            raise CatalogError(
                f"the compacted record keys below run {below} are missing from the store",
                hint="`replay reindex` rebuilds the catalog with every records row",
            )
        new = con.sql(
            "select k.key, k.run_id, k.row, k.pipeline, k.clock, r.seq from records k "
            "join runs r using (run_id) where r.seq >= $1 and r.seq < $2",
            params=[end, stop],
        ).to_arrow_table()
    tables = [cast(pa.Table, new).cast(SCHEMA)]
    merged = _merged_with(store.fs, have, tables[0].num_rows)
    if merged:
        dataset, _ = _dataset(store.fs, tuple(p.path for p in merged))
        tables.append(dataset.to_table().cast(SCHEMA))
    table = pa.concat_tables(tables).sort_by([("key", "ascending"), ("seq", "ascending")])
    part = Part(merged[0].start if merged else end, stop)
    store.fs.put_if_absent(part.path, _parquet(table))
    return Compaction(part.path, part.start, part.stop, table.num_rows, _prune(store.fs, part))


def _prune(fs: LogFS, new: Part) -> tuple[str, ...]:
    """Delete the parts superseded GRACE or longer before ``new`` was written: both times are
    the store's stamps, so a clock of this machine that is off does not shorten the grace."""
    stamps = written(fs)
    now = stamps.get(new, 0)  # 0, were it deleted meanwhile: then nothing is old enough
    old = tuple(p.path for p, since in superseded(stamps).items() if now - since >= GRACE * 10**9)
    for path in old:
        fs.remove(path)
    _forget(fs, old)
    return old


def _merged_with(fs: StoreFS, have: list[Part], rows: int) -> list[Part]:
    """The parts at the chain's end that merge with ``rows`` new rows: each no larger than
    what merges after it (a binary counter: a row is rewritten about log2(N / batch) times),
    and never past MERGE_BELOW rows in all."""
    if not have:
        return []
    dataset, _ = _dataset(fs, tuple(p.path for p in have))
    sizes = [f.metadata.num_rows for f in dataset.get_fragments()]
    out: list[Part] = []
    for part, size in zip(reversed(have), reversed(sizes), strict=True):
        if size > rows or size + rows > MERGE_BELOW:
            break
        rows += size
        out.insert(0, part)
    return out


def _parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=ROW_GROUP, compression="zstd")
    return out.getvalue()


# Datasets per process, by store and parts: a warm lookup then reads only row groups (the
# footers and their statistics are kept with the dataset's fragments).
_DATASETS: dict[tuple[StoreFS, tuple[str, ...]], tuple[pads.Dataset, Reads]] = {}
# The parts below a catalog's seq, and when (time.monotonic) this process listed them.
_COVERING: dict[tuple[StoreFS, int], tuple[float, tuple[str, ...]]] = {}
_LOCK = threading.Lock()


def _dataset(fs: StoreFS, paths: tuple[str, ...]) -> tuple[pads.Dataset, Reads]:
    import pyarrow.dataset as pads

    with _LOCK:
        if (fs, paths) not in _DATASETS:
            afs, reads = arrow_fs(fs)
            dataset = pads.dataset(list(paths), schema=SCHEMA, format="parquet", filesystem=afs)
            for fragment in dataset.get_fragments():
                try:
                    fragment.ensure_complete_metadata()
                except (OSError, pa.ArrowException) as exc:
                    raise CorruptionError(
                        fs.where(fragment.path),
                        f"is not a readable part of compacted record keys ({exc})",
                        hint="delete it and run `replay compact`; `replay reindex` rebuilds "
                        "the catalog with every records row meanwhile",
                    ) from None
            _DATASETS[fs, paths] = (dataset, reads)
        return _DATASETS[fs, paths]


def register(
    store: Store, con: duckdb.DuckDBPyConnection, below: int, *, fresh: bool = False
) -> Reads:
    """Register the parts holding the records rows of the runs below seq ``below`` (the
    catalog's ``compacted``) as the view ``compacted_records``; the parts' request counter.
    ``fresh`` lists the parts and reads their footers again rather than use this process's
    copies (a check of the store trusts nothing read before it began)."""
    dataset, reads = _dataset(store.fs, _covering(store.fs, below, fresh))
    con.register("compacted_records", dataset)
    return reads


def _covering(fs: StoreFS, below: int, fresh: bool) -> tuple[str, ...]:
    """The parts holding the runs below ``below``, as listed by this process within GRACE / 2:
    a part of that listing was superseded after it, so is deleted GRACE after it at the
    earliest, when a query begun with it has long ended."""
    listed = _COVERING.get((fs, below))
    if fresh or listed is None or time.monotonic() - listed[0] > GRACE / 2:
        have = [p for p in chain(parts(fs)) if p.start < below]
        if not have or have[-1].stop < below:
            raise CatalogError(
                f"the compacted record keys below run {below} are missing from the store",
                hint="`replay reindex` rebuilds the catalog with every records row",
            )
        paths = tuple(p.path for p in have)
        if fresh:
            _forget(fs, paths)  # their footers are read again too
        listed = _COVERING[fs, below] = (time.monotonic(), paths)
    return listed[1]


def asking(store: Store, con: duckdb.DuckDBPyConnection, below: int, ask: Callable[[], T]) -> T:
    """``ask`` with the parts below seq ``below`` registered as ``compacted_records``. When a
    part listed before was deleted since (by a compaction, over GRACE after a merged part
    superseded it), the parts are listed again and ``ask`` runs once more."""
    try:
        register(store, con, below)
        return ask()
    except (duckdb.Error, CorruptionError):  # reading a part, or its footer, that is gone?
        listed = _COVERING.get((store.fs, below), (0.0, ()))[1]
        if all(store.fs.exists(p) for p in listed):
            raise
        _forget(store.fs, listed)
    register(store, con, below)  # listed again
    return ask()


def _forget(fs: StoreFS, paths: tuple[str, ...]) -> None:
    """Drop what this process keeps of the parts ``paths``: deleted, or to be read again."""
    gone = set(paths)
    with _LOCK:
        for read in [k for k in _DATASETS if k[0] == fs and gone.intersection(k[1])]:
            del _DATASETS[read]
        for key in [k for k, v in _COVERING.items() if k[0] == fs and gone.intersection(v[1])]:
            del _COVERING[key]


def requests() -> tuple[int, int]:
    """Requests made and bytes read by this process on every part it opened."""
    with _LOCK:
        counted = [reads for _, reads in _DATASETS.values()]
    return sum(r.requests for r in counted), sum(r.bytes for r in counted)
