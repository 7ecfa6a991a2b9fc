"""The DuckDB catalog: an index over the ledger, rebuilt from the store's files at will.

Only readers touch it. Before every query the catalog ingests ledger entries written since it
last looked (and the record keys of their input rows), under an flock so that concurrent CLI
processes take turns instead of failing on DuckDB's one-writer lock. A catalog that is missing,
unreadable or out of step with the ledger is rebuilt from scratch; a read-only store gets an
in-memory catalog.

Each checkpoint writes the rows a small ingest added as row groups of their own, and DuckDB
merges small row groups ("vacuum") as it sees fit, rewriting the same rows again and again:
closing the catalog after 10,000 new runs at a million runs took 50 ms of CPU without
merging, with it 120 ms in the median of 14 ingests in a row and up to 2.1 s. So a checkpoint
after a small ingest does not merge; one in VACUUM_EVERY, or the first after a row group's
worth of runs, does (each row then rewritten about once: 2.4 s for 130,000 runs), so that
what small ingests leave stays bounded. Such a checkpoint also compresses with the cheap
methods only (DuckDB's dictionary+FSST analysis of the digests was half of it: 50 → ~30 ms
of closing after 10,000 runs); the merge that rewrites its rows compresses them fully.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

import duckdb

from replay.catalog.schema import COMPACTED, DDL, SCHEMA_VERSION, set_meta
from replay.errors import CatalogError
from replay.store.parts import frontier
from replay.store.store import Store

# DuckDB's settings while it ingests into a catalog file, so that a reindex of any size runs
# in bounded memory (committed pages go to the file instead of staying cached: with DuckDB's
# defaults a reindex of 1M runs passed 400 MB, still growing) and checkpoints rarely enough
# not to compress the same row groups over and over (see ingest.COMMIT_RUNS), on one thread:
# ingest's own threads parse the next chunk meanwhile, and a second DuckDB thread only fought
# them for the 2 cores (10,000 new runs with one: 0.19 s of wall and 0.23 of CPU, against
# 0.22 and 0.26 with two; `benchmarks/bench_ingest.py`).
INGESTING = {"memory_limit": "48MB", "checkpoint_threshold": "64MB", "threads": "1"}
# The checkpoint threshold for an ingest's last commit: a commit that would pass it
# checkpoints, skipping the WAL when it is big (DuckDB's auto_checkpoint_skip_wal_threshold).
AT_ONCE = "1MB"
# Checkpoints without merging row groups (see above), at most, between two that merge: the
# merge then rewrites at most about ROW_GROUP rows of each table.
VACUUM_EVERY = 16
ROW_GROUP = 122_880  # DuckDB's rows per row group
# What a checkpoint that does not merge leaves uncompressed-ish: the analyses that cost.
COSTLY_COMPRESSION = "fsst,dict_fsst,alp,alprd,chimp,patas"
# meta keys: checkpoints since the last that merged, and the runs ingested since
SKIPPED, UNMERGED = "vacuum:skipped", "vacuum:unmerged"
# What a reader connection may no longer do once prepared: reach files, the network or
# extensions (DuckDB's own switch, which also hides Python objects in scope), change a
# setting, or undo any of this — `lock_configuration` last, since it freezes the rest.
READER_LOCKDOWN = (
    "set enable_external_access = false",
    "set python_enable_replacements = false",
    "set autoload_known_extensions = false",
    "set autoinstall_known_extensions = false",
    "set allow_community_extensions = false",
    "set lock_configuration = true",
)


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.root / "catalog.duckdb"

    @contextmanager
    def connect(self, *, rebuild: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the catalog, refreshed from the ledger first."""
        if self.store.readonly:
            con = _create(duckdb.connect(":memory:"))
            try:
                self._refresh(con)
                yield con
            finally:
                con.close()
            return
        with self._locked():
            if rebuild:
                self._delete()
            con = self._open()
            if rebuild:  # from the ledger and blocks alone: not even the compacted parts
                set_meta(con, {COMPACTED: "0"})
            try:
                self._refresh(con)
                yield con
            except duckdb.Error as exc:
                raise _failed(exc) from None
            finally:
                con.close()

    @contextmanager
    def reader(
        self, prepare: Callable[[duckdb.DuckDBPyConnection], None] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection that cannot write the catalog or anything else, refreshed first.

        One in-memory DuckDB with the catalog file attached as ``catalog`` (the default
        database, as with ``connect``): read-write for the refresh, then attached again
        read-only (a reattach costs ~1 ms, a second connection ~15 ms). ``prepare`` runs
        before the lockdown (READER_LOCKDOWN), e.g. to register Arrow data. The flock is
        held until the connection closes: DuckDB lets a file be read only while no other
        process writes it.
        """
        if self.store.readonly:
            # Its catalog lives in this very in-memory database; nothing of the store to guard.
            with closing(_create(duckdb.connect(":memory:"))) as con:
                yield from self._ready(con, self._refresh, prepare)
            return
        # Spill where a file-backed catalog spills (an in-memory one would use ./.tmp).
        spill = f"{self.path}.tmp"
        with (
            self._locked(),
            closing(duckdb.connect(":memory:", config={"temp_directory": spill})) as con,
        ):
            yield from self._ready(con, self._attach_refreshed, prepare)

    @staticmethod
    def _ready(
        con: duckdb.DuckDBPyConnection,
        load: Callable[[duckdb.DuckDBPyConnection], None],
        prepare: Callable[[duckdb.DuckDBPyConnection], None] | None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            load(con)
            if prepare is not None:
                prepare(con)
            for statement in READER_LOCKDOWN:
                con.execute(statement)
            yield con
        except duckdb.Error as exc:
            raise _failed(exc) from None

    def _attach_refreshed(self, con: duckdb.DuckDBPyConnection) -> None:
        """Refresh the catalog through a read-write attach, then attach it read-only."""
        if not self._attach_current(con):
            # The catalog is only an index: any doubt about it means rebuild it.
            self._detach(con)
            self._delete()
            _create(self._attach(con, readonly=False))
        self._refresh(con)
        self._detach(con)
        self._attach(con, readonly=True)

    def _attach_current(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Attach the catalog read-write; False if it is unreadable or of another schema."""
        try:
            self._attach(con, readonly=False)
            rows = con.execute("select value from meta where key = 'schema'").fetchall()
            return bool(rows) and int(rows[0][0]) == SCHEMA_VERSION
        except (duckdb.Error, ValueError):
            return False

    def _attach(
        self, con: duckdb.DuckDBPyConnection, *, readonly: bool
    ) -> duckdb.DuckDBPyConnection:
        mode = " (read_only)" if readonly else ""
        con.execute(f"attach ? as catalog{mode}", [str(self.path)])
        con.execute("use catalog")
        return con

    @staticmethod
    def _detach(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("use memory")
        con.execute("detach database if exists catalog")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.store.root / "catalog.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _delete(self) -> None:
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            p.unlink(missing_ok=True)

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = None
        try:
            con = duckdb.connect(str(self.path))
            rows = con.execute("select value from meta where key = 'schema'").fetchall()
            if rows and int(rows[0][0]) == SCHEMA_VERSION:
                return con
        except (duckdb.Error, ValueError):
            pass
        # The catalog is only an index: any doubt about it means rebuild it.
        if con is not None:
            con.close()
        self._delete()
        return _create(duckdb.connect(str(self.path)))

    def _refresh(self, con: duckdb.DuckDBPyConnection) -> None:
        self.store.sync()  # on object storage: seal and mirror what writers added
        state = dict(con.execute("select key, value from meta").fetchall())
        offset = int(state.get("ledger_offset", 0))
        if not offset and COMPACTED not in state:
            # A new catalog leaves the record keys the store holds compacted where they are.
            con.execute("insert into meta values (?, ?)", [COMPACTED, str(frontier(self.store.fs))])
        if offset and not self.store.ledger.ends_line(offset):
            # A recovery after a crash of the machine cut lines we had indexed.
            return self._reindex(con)
        if self.store.ledger.size() == offset:
            return  # nothing new
        if self.store.readonly:  # an in-memory catalog has nowhere to put its pages
            self._ingest(con, offset, state.get("ledger_hash"))
            return
        for setting, value in INGESTING.items():
            con.execute(f"set {setting} = '{value}'")
        try:
            self._ingest(con, offset, state.get("ledger_hash"))
        finally:
            for setting in INGESTING:
                con.execute(f"reset {setting}")

    def _ingest(self, con: duckdb.DuckDBPyConnection, offset: int, last: str | None) -> None:
        # Imported here: a query with nothing new to index (most `find`s) never pays for
        # pyarrow.compute and the rest of ingesting (~60 ms of a 0.4 s process).
        from replay.catalog.ingest import ingest

        if not ingest(self.store, con, offset, last, lambda added: _settle(con, added)):
            # The ledger under us is not the one we indexed: index it afresh.
            self._reindex(con)

    def _reindex(self, con: duckdb.DuckDBPyConnection) -> None:
        for table in ("runs", "steps", "components", "environments", "records"):
            con.execute(f"delete from {table}")
        con.execute(
            "delete from meta where key like 'ledger_%' or key like 'lines:%' "
            "or key like 'vacuum:%' or key = ?",
            [COMPACTED],
        )
        self._refresh(con)


def _settle(con: duckdb.DuckDBPyConnection, added: int) -> None:
    """Before an ingest's last commit: the checkpoint that follows runs in the commit itself,
    which then writes its rows once, not to the WAL first (~15 ms of 10,000 runs)."""
    _pace_vacuum(con, added)
    con.execute(f"set checkpoint_threshold = '{AT_ONCE}'")


def _pace_vacuum(con: duckdb.DuckDBPyConnection, added: int) -> None:
    """Whether the checkpoint after an ingest of ``added`` runs (when the catalog closes, or
    DuckDB's own) merges small row groups: every VACUUM_EVERY-th, the first after ROW_GROUP
    runs more, and the first of a new or reindexed catalog."""
    meta = dict(con.execute("select key, value from meta where key like 'vacuum:%'").fetchall())
    skipped = int(meta.get(SKIPPED, VACUUM_EVERY)) + 1
    unmerged = int(meta.get(UNMERGED, ROW_GROUP)) + added
    if skipped < VACUUM_EVERY and unmerged < ROW_GROUP:
        set_meta(con, {SKIPPED: str(skipped), UNMERGED: str(unmerged)})
        con.execute("set max_vacuum_tasks = 0")
        con.execute(f"set disabled_compression_methods = '{COSTLY_COMPRESSION}'")
        return
    set_meta(con, {SKIPPED: "0", UNMERGED: "0"})
    con.execute("reset max_vacuum_tasks")
    con.execute("reset disabled_compression_methods")


def _create(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute(DDL)
    con.execute("insert into meta values ('schema', ?)", [str(SCHEMA_VERSION)])
    return con


def _failed(exc: duckdb.Error) -> CatalogError:
    """A DuckDB error of a catalog connection, as the one-line error the CLI shows."""
    return CatalogError(
        f"catalog query failed: {exc}".splitlines()[0],
        hint="check the SQL; `replay reindex` rebuilds the catalog",
    )
