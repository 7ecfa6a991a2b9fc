"""Record keys compacted into Parquet on the store, so that ``find`` on a store of millions
of rows reads a row group or two instead of holding every key in each reader's catalog.

A part ``compacted/<start>-<stop>.parquet`` holds the records rows (key, run, input row,
pipeline, clock, seq) of the runs with ledger sequence numbers in [start, stop), sorted by
key, in row groups of ROW_GROUP rows, clocks as µs UTC timestamps: the layouts pyarrow
prunes by its statistics (a point lookup in 1M rows: one ranged GET of ~0.5 MB). Parts are
created once (``put_if_absent``) and never rewritten; a later compaction may merge the small
trailing parts with the new rows into one part over the whole range, which then covers them.
Readers take the chain of parts from seq 0 that reaches furthest (``chain``).

A catalog created after compaction keeps no records rows below the chain's end (its
``compacted`` meta key): ``find`` reads them from the parts instead. Parts are derived data,
like the catalog: every answer ``find`` gives is confirmed in the ledger and the run's block.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import duckdb
import pyarrow as pa

from replay.catalog.schema import compacted_below
from replay.errors import CatalogError, CorruptionError, ReadOnlyStoreError
from replay.store.arrowfs import Reads, arrow_fs
from replay.store.parts import Part, chain, parts

if TYPE_CHECKING:
    import pyarrow.dataset as pads

    from replay.store.fs import StoreFS
    from replay.store.store import Store

ROW_GROUP = 65_536
MERGE_BELOW = 4_194_304  # rows: no part merges into one larger than this
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


def compact(store: Store) -> Compaction:
    """Compact the record keys of every run the catalog lists past the chain's end into a new
    part, merged with the trailing parts no larger than it (see _merged_with)."""
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
    return Compaction(part.path, part.start, part.stop, table.num_rows)


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
_COVERING: dict[tuple[StoreFS, int], tuple[str, ...]] = {}  # the parts below a catalog's seq
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
    ``fresh`` reads the parts' footers again rather than this process's copy (a check of
    the store trusts nothing read before it began)."""
    if (store.fs, below) not in _COVERING:  # parts are never rewritten nor deleted: kept
        have = [p for p in chain(parts(store.fs)) if p.start < below]
        if not have or have[-1].stop < below:
            raise CatalogError(
                f"the compacted record keys below run {below} are missing from the store",
                hint="`replay reindex` rebuilds the catalog with every records row",
            )
        _COVERING[store.fs, below] = tuple(p.path for p in have)
    if fresh:
        _DATASETS.pop((store.fs, _COVERING[store.fs, below]), None)
    dataset, reads = _dataset(store.fs, _COVERING[store.fs, below])
    con.register("compacted_records", dataset)
    return reads


def requests() -> tuple[int, int]:
    """Requests made and bytes read by this process on every part it opened."""
    with _LOCK:
        counted = [reads for _, reads in _DATASETS.values()]
    return sum(r.requests for r in counted), sum(r.bytes for r in counted)
