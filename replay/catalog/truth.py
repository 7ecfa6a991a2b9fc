"""The catalog checked against the files: it is only an index, the ledger and blocks are truth.

``confirmed`` is the cheap check ``find`` and ``at`` make before answering: the catalog's own
counts agree (every records row's run is listed, a keyed run has one records row per input
row) and every run an answer names is, in its hash-checked ledger entry, of that pipeline and
clock, and its block holds the record key at that input row. ``answer`` asks again on a
rebuilt catalog when that fails. ``check_catalog`` is the full comparison ``verify --store``
makes: it reports the first disagreeing row and repairs nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import orjson

from replay.catalog.index import Catalog
from replay.catalog.schema import COMPACTED, UNINDEXED, compacted_below
from replay.core.kinds import kind_of
from replay.core.pipeline import INPUT
from replay.errors import CorruptionError, NotFoundError
from replay.store.ledger import NAME, hash_holds
from replay.store.lookup import start_of
from replay.store.segments import Block
from replay.store.store import Store

if TYPE_CHECKING:
    from replay.catalog.keys import Keys

T = TypeVar("T")
KEYS_BATCH = 4096  # keyed runs whose keys are read and compared at once
WARNING = "warning: catalog disagreed with the ledger; rebuilt"

# One records row per input row of every keyed run whose keys were indexed, from totals (a
# million runs: 2 ms; 119 ms as anti-joins over every row). A records row naming a run the
# catalog does not list cannot pass: an answer naming it is confirmed in the ledger, and
# `verify --store` reports it.
# Runs below the compacted seq keep their records rows on the store (replay.catalog.compact).
_BELOW = f"(select coalesce(max(value::bigint), 0) from meta where key = '{COMPACTED}')"
_COUNTS = (
    "select (select count(*) from records) = "
    f"(select coalesce(sum(rows), 0) from runs where record_key is not null and seq >= {_BELOW})"
    " - (select coalesce(sum(r.rows), 0) from meta m join runs r "
    f"on r.run_id = substr(m.key, {len(UNINDEXED) + 1}) "
    f"where m.key like '{UNINDEXED}%' and r.record_key is not null and r.seq >= {_BELOW})"
)


def answer(
    store: Store,
    ask: Callable[[duckdb.DuckDBPyConnection], T],
    named: Callable[[T], Iterable[dict[str, Any]]],
    key: str | None = None,
) -> T:
    """``ask`` the catalog; when the answer is not confirmed by the files, rebuild the
    catalog (with a warning on stderr) and ask once more."""
    with Catalog(store).connect() as con:
        result = ask(con)
        rows = list(named(result))
        # One records row per (run, input row): a duplicate is a row moved onto a run that
        # holds the key at that row too.
        ok = (
            len({(r["run_id"], r.get("row")) for r in rows}) == len(rows)
            and _counts_hold(con)
            and all(confirm(store, row, key) for row in rows)
        )
    if ok:
        return result
    with Catalog(store).connect(rebuild=True) as con:
        result = ask(con)
    print(WARNING, file=sys.stderr)
    return result


def _counts_hold(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(_COUNTS).fetchall()
    return bool(rows and rows[0][0])


def confirm(store: Store, row: dict[str, Any], key: str | None) -> bool:
    """The run ``row`` names is, in the ledger, of its pipeline and clock; with ``key``, its
    block holds that record key at input row ``row['row']``."""
    try:
        found = entry_for(store, {"run_id": row["run_id"], "entry_end": row.get("entry_end") or 0})
    except NotFoundError:
        return False
    m = found["manifest"]
    if (
        found["run_id"] != row["run_id"]
        or m.get("run_id") != row["run_id"]
        or not hash_holds(found)
        or m["pipeline"] != row["pipeline"]
        or not _same_clock(m["clock"], row["clock"])
        or row.get("kind", kind_of(m.get("kind"), m.get("tags")))
        != kind_of(m.get("kind"), m.get("tags"))
    ):
        return False
    if key is None:
        return True
    if m.get("record_key") is None or row.get("row") is None:
        return False
    try:
        block = store.block(found["block"])
        part, first, n = block.kinds(row["run_id"])[INPUT]
        if not 0 <= int(row["row"]) < n:
            return False
        value = block.part_table(part).column(m["record_key"])[first + int(row["row"])]
    except (KeyError, IndexError, CorruptionError):
        return False
    return value.is_valid and str(value.as_py()) == key


def _same_clock(iso: str, clock: Any) -> bool:
    if not isinstance(clock, datetime):
        return False
    recorded = datetime.fromisoformat(iso)
    if clock.tzinfo is None or recorded.tzinfo is None:
        return recorded.replace(tzinfo=None) == clock.replace(tzinfo=None)
    return recorded == clock


def _indexes_this_ledger(store: Store, meta: dict[str, str]) -> bool:
    """The entry the catalog says it indexed last is the ledger's entry at that offset (one
    seek to the line that ends there)."""
    last, offset = meta.get("ledger_hash"), int(meta.get("ledger_offset") or 0)
    if last is None:
        return True
    if offset <= 0 or not store.ledger.ends_line(offset):
        return False
    start = start_of(store.fs, offset)
    try:
        entry = orjson.loads(bytes(store.fs.read_range(NAME, start, offset - start)))
    except ValueError:
        return False
    return isinstance(entry, dict) and entry.get("hash") == last


def check_catalog(store: Store) -> int:
    """Compare the catalog with the ledger and blocks; raise CorruptionError naming the
    catalog file and the first row that disagrees. Returns the number of runs compared."""
    with compared(store) as comparison:
        for _, entry, block, body in store.manifests():
            comparison.entry(entry, orjson.loads(body), block)
        return comparison.finish()


@contextmanager
def compared(store: Store, after: int = 0) -> Iterator[Comparison]:
    """A comparison of the catalog's rows past ledger entry ``after`` with the entries a
    caller walks (a catalog that indexed another ledger is rebuilt first, with a warning)."""
    catalog = Catalog(store)
    with catalog.connect() as con:
        meta = dict(con.execute("select key, value from meta").fetchall())
    if not _indexes_this_ledger(store, meta):
        # Not an edited index of this ledger but an index of another one (the ledger was
        # replaced under it, which the checks above judge): rebuilt, as any use would.
        with catalog.connect(rebuild=True):
            pass
        print("warning: the catalog indexed another ledger; rebuilt", file=sys.stderr)
    with catalog.connect() as con:
        yield Comparison(store, con, str(catalog.path), after)


class Comparison:
    """The catalog's rows checked, entry by entry in ledger order, against the ledger and
    blocks: the first disagreeing row raises CorruptionError naming it."""

    def __init__(
        self, store: Store, con: duckdb.DuckDBPyConnection, where: str, after: int
    ) -> None:
        self.con, self.where, self.after = con, where, after
        self.records = "select run_id, key, row from records"
        if below := compacted_below(con):  # older runs' keys: compared in the store's parts
            from replay.catalog.compact import register

            register(store, con, below, fresh=True)
            self.records += (
                f" union all select run_id, key, row from compacted_records where seq < {below}"
            )
        self.listed = con.execute(
            "select seq, run_id, pipeline, clock, version, record_key, kind from runs "
            "where seq > ? order by seq",
            [after],
        ).fetchall()
        self.indexed_keys = _records_in_ledger_order(con, self.records, after)
        self.count = 0  # entries compared
        self.keys, self.keyed = _keys(), list[str]()  # a batch of keyed runs, in ledger order

    def entry(self, e: dict[str, Any], m: dict[str, Any], block: Block) -> None:
        """Compare the runs row (and records rows) of entry ``e`` with manifest ``m``."""
        row = self.listed[self.count] if self.count < len(self.listed) else None
        self.count += 1
        if row is None:
            raise self._error(f"has no runs row for ledger entry {e['seq']} (run {e['run_id']})")
        seq, run_id, pipeline, clock, version, record_key, kind = row
        if (seq, run_id, pipeline, version, record_key, kind) != (
            e["seq"],
            e["run_id"],
            m["pipeline"],
            m["version"],
            m.get("record_key"),
            kind_of(m.get("kind"), m.get("tags")),
        ) or not _same_clock(m["clock"], clock):
            raise self._error(
                f"runs row seq {seq} (run {run_id}, pipeline {pipeline}) disagrees with "
                f"ledger entry {e['seq']} (run {e['run_id']}, pipeline {m['pipeline']})"
            )
        if record_key:
            self._add_keys(run_id, record_key, block)

    def _add_keys(self, run_id: str, record_key: str, block: Block) -> None:
        """Gather the run's keys from its block; they are compared a batch at a time (the
        small input streams of a batch are read as one, as an ingest reads them)."""
        try:
            self.keys.add(block, len(self.keyed), run_id, record_key)
        except Exception:  # keys the catalog cannot index (see CatalogWarning)
            self.keys.failed.append((len(self.keyed), "unreadable"))
        self.keyed.append(run_id)
        if len(self.keyed) >= KEYS_BATCH:
            self._compare_keys()

    def _compare_keys(self) -> None:
        self.keys.finish()
        flat = [k for array in self.keys.arrays for k in array.to_pylist()]
        held: dict[int, list[str]] = {}
        at = 0
        for run, count in zip(self.keys.runs, self.keys.counts, strict=True):
            held[run], at = flat[at : at + count], at + count
        failed = {run for run, _ in self.keys.failed}
        for run, run_id in enumerate(self.keyed):
            if run not in failed:
                self._compare_run(run_id, held.get(run, []))
        self.keys, self.keyed = _keys(), []

    def _compare_run(self, run_id: str, held: list[str]) -> None:
        indexed = self.indexed_keys.take(run_id)
        if indexed != held:
            first_bad = next(
                (i for i, (a, b) in enumerate(zip(indexed, held, strict=False)) if a != b),
                min(len(indexed), len(held)),
            )
            raise self._error(
                f"records of run {run_id} disagree with its block at input row {first_bad}"
            )

    def finish(self) -> int:
        """After the last entry: no row is left over; the number of runs past ``after``."""
        self._compare_keys()
        if len(self.listed) > self.count:
            seq, run_id = self.listed[self.count][:2]
            raise self._error(f"runs row seq {seq} (run {run_id}) has no ledger entry")
        stray = self.con.execute(
            f"select run_id from ({self.records}) "
            "where run_id not in (select run_id from runs) limit 1"
        ).fetchall()
        if stray:
            raise self._error(
                f"records rows name run {stray[0][0]}, which the ledger does not hold"
            )
        return self.count

    def _error(self, what: str) -> CorruptionError:
        return CorruptionError(self.where, what, hint="`replay reindex` rebuilds it")


def _keys() -> Keys:
    # Imported on first use: find's confirmation imports this module, not pyarrow.compute.
    from replay.catalog.keys import Keys

    return Keys()


class _RecordKeys:
    """The records table's keys, run by run in ledger order, streamed from one query (a
    query per run cost ~3 ms: 15,000 runs took 99 s)."""

    def __init__(self, rows: Iterator[tuple[str, str]]) -> None:
        self._rows = rows
        self._next = next(self._rows, None)

    def take(self, run_id: str) -> list[str]:
        """The keys of ``run_id`` (its rows in order), skipping runs the ledger walk passed."""
        keys = []
        while self._next is not None and self._next[0] != run_id:
            self._next = next(self._rows, None)  # a run whose keys the walk did not compare
        while self._next is not None and self._next[0] == run_id:
            keys.append(self._next[1])
            self._next = next(self._rows, None)
        return keys


def _records_in_ledger_order(
    con: duckdb.DuckDBPyConnection, records: str, after: int
) -> _RecordKeys:
    cursor = con.execute(
        f"select r.run_id, r.key from ({records}) r join runs u using (run_id) "
        "where u.seq > ? order by u.seq, r.row",
        [after],
    )

    def rows() -> Iterator[tuple[str, str]]:
        while batch := cursor.fetchmany(10_000):
            yield from batch

    return _RecordKeys(rows())


def entry_for(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    """The run's ledger entry, read from the ledger itself (the catalog only points at it:
    one seek to where it says the line ends, a pass over the ledger if it is wrong)."""
    run_id = row["run_id"]
    try:
        return store.find_entries([run_id], {run_id: int(row["entry_end"])})[0]
    except NotFoundError:
        raise NotFoundError(
            f"run {run_id} is in the catalog but not in the ledger", hint="run `replay reindex`"
        ) from None
