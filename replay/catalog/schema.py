"""The catalog's tables: what ingest writes, every query reads and the truth check compares."""

from __future__ import annotations

import duckdb

SCHEMA_VERSION = 2  # 2: runs.kind
DDL = """
create table if not exists meta (key varchar primary key, value varchar);
create table if not exists runs (
  seq bigint, run_id varchar, pipeline varchar, version varchar, status varchar,
  started timestamptz, ended timestamptz, clock timestamptz, rows bigint,
  record_key varchar, env varchar, image varchar, error varchar, tags varchar,
  manifest_sha256 varchar, entry_end bigint, segment varchar, block_offset bigint,
  block_length bigint, block_header varchar, kind varchar);
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
COMPACTED = "compacted"  # meta key: the records rows of runs below this seq live on the store
UNINDEXED = "unindexed:"  # meta key prefix of a run whose record keys have no text


def set_meta(con: duckdb.DuckDBPyConnection, values: dict[str, str]) -> None:
    """Set meta keys, in one statement: DuckDB's executemany took ~15 ms for three rows of
    this keyed table, which ingest wrote after every chunk (2 s of a million runs)."""
    if values:
        rows = ", ".join(["(?, ?)"] * len(values))
        con.execute(
            f"insert or replace into meta values {rows}", [x for kv in values.items() for x in kv]
        )


def compacted_below(con: duckdb.DuckDBPyConnection) -> int:
    """The seq below which the catalog keeps no records rows: they are in the store's
    compacted parts (replay.catalog.compact); 0 when it keeps them all."""
    rows = con.execute("select value from meta where key = ?", [COMPACTED]).fetchall()
    return int(rows[0][0]) if rows else 0
