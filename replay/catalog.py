"""The DuckDB catalog: an index over the ledger, rebuilt from the store's files at will.

Only readers touch it. Before every query the catalog ingests ledger entries written since it
last looked (and the record keys of their input rows), under an flock so that concurrent CLI
processes take turns instead of failing on DuckDB's one-writer lock. A catalog that is missing,
unreadable or out of step with the ledger is rebuilt from scratch; a read-only store gets an
in-memory catalog.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from replay.catalog_ingest import Ingest
from replay.errors import CatalogError
from replay.store import Store

SCHEMA_VERSION = 1
DDL = """
create table if not exists meta (key varchar primary key, value varchar);
create table if not exists runs (
  seq bigint, run_id varchar, pipeline varchar, version varchar, status varchar,
  started timestamptz, ended timestamptz, clock timestamptz, rows bigint,
  record_key varchar, env varchar, image varchar, error varchar, tags varchar,
  manifest_sha256 varchar, entry_end bigint, segment varchar, block_offset bigint,
  block_length bigint, block_header varchar);
create table if not exists steps (
  run_id varchar, idx integer, step varchar, inputs varchar[], output varchar, rows bigint,
  duration_ms double, seeds varchar, calls integer);
create table if not exists components (
  version varchar, pipeline varchar, step varchar, kind varchar, name varchar, digest varchar,
  path varchar, dvc_repo varchar, dvc_rev varchar, dvc_md5 varchar, dvc_remote varchar);
create table if not exists environments (
  env varchar, python varchar, platform varchar, cpu varchar, numpy varchar,
  packages integer, lock varchar, image varchar);
create table if not exists records (
  key varchar, run_id varchar, pipeline varchar, clock timestamptz, "row" bigint);
"""


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
            try:
                self._refresh(con)
                yield con
            except duckdb.Error as exc:
                raise CatalogError(f"catalog query failed: {exc}".splitlines()[0],
                                   hint="check the SQL; `replay reindex` rebuilds the catalog"
                                   ) from None
            finally:
                con.close()

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
        state = dict(con.execute("select key, value from meta").fetchall())
        offset = int(state.get("ledger_offset", 0))
        last = state.get("ledger_hash")
        ingest = Ingest(self.store, con)
        for pos, entry in self.store.entries(offset):
            if offset and last is not None and ingest.empty and entry.get("prev") != last:
                # The ledger under us is not the one we indexed: index it afresh.
                for table in ("runs", "steps", "components", "environments", "records"):
                    con.execute(f"delete from {table}")
                con.execute("delete from meta where key like 'ledger_%'")
                return self._refresh(con)
            ingest.add(entry, pos)
            last = entry["hash"]
            if ingest.full:
                self._flush(con, ingest, pos, last)
                ingest = Ingest(self.store, con)
        if not ingest.empty and last is not None:
            self._flush(con, ingest, ingest.end, last)

    @staticmethod
    def _flush(con: duckdb.DuckDBPyConnection, ingest: Ingest, pos: int, last: str) -> None:
        con.execute("begin")
        ingest.write()
        con.execute("insert or replace into meta values ('ledger_offset', ?), "
                    "('ledger_hash', ?)", [str(pos), last])
        con.execute("commit")


def _create(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute(DDL)
    con.execute("insert into meta values ('schema', ?)", [str(SCHEMA_VERSION)])
    return con
