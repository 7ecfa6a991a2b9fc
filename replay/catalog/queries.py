"""The read side: runs, show, find, sql and reindex, all answered from the catalog."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from replay.catalog.index import Catalog
from replay.catalog.schema import compacted_below
from replay.catalog.truth import answer, entry_for
from replay.core.kinds import PRODUCTION
from replay.core.manifest import Spec, decode
from replay.core.pipeline import INPUT
from replay.errors import CatalogError, NotFoundError, UsageError
from replay.store.lookup import normalize, the_one
from replay.store.store import Store

RUN_COLUMNS = (
    "seq",
    "run_id",
    "pipeline",
    "kind",
    "status",
    "clock",
    "started",
    "rows",
    "version",
    "image",
    "error",
)


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(query, params)
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def resolve_run(con: duckdb.DuckDBPyConnection, run: str) -> str:
    """A full run id from an id or a unique prefix of one (at least 8 characters)."""
    run = normalize(run)
    found = [
        r[0]
        for r in con.execute(
            "select run_id from runs where starts_with(run_id, ?) order by seq limit 6", [run]
        ).fetchall()
    ]
    return the_one(run, [(f, 0) for f in found])[0]


def runs(
    store: Store,
    *,
    pipeline: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = PRODUCTION,
    limit: int | None = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Committed runs of ``kind`` (None: every kind), newest first, by logical clock range
    and pipeline; ``limit`` None lists them all."""
    where, params = _run_filter(pipeline, since, until, kind)
    page = f" limit {int(limit)}" if limit is not None else ""
    with Catalog(store).connect() as con:
        return _rows(
            con,
            f"select {', '.join(RUN_COLUMNS)} from runs where {where} "
            f"order by clock desc, seq desc{page} offset {int(offset)}",
            params,
        )


def count_runs(
    store: Store,
    *,
    pipeline: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = PRODUCTION,
) -> int:
    """How many runs ``runs`` would list without a limit."""
    where, params = _run_filter(pipeline, since, until, kind)
    with Catalog(store).connect() as con:
        return int(con.execute(f"select count(*) from runs where {where}", params).fetchall()[0][0])


def _run_filter(
    pipeline: str | None, since: datetime | None, until: datetime | None, kind: str | None
) -> tuple[str, list[Any]]:
    where, params = ["true"], []
    for cond, value in (
        ("pipeline = ?", pipeline),
        ("clock >= ?", since),
        ("clock <= ?", until),
        ("kind = ?", kind),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    return " and ".join(where), params


def show(store: Store, run: str) -> dict[str, Any]:
    """One run: its ledger entry, manifest and components, as recorded."""
    with Catalog(store).connect() as con:
        run_id = resolve_run(con, run)
        (row,) = _rows(con, "select * from runs where run_id = ?", [run_id])
        components = _rows(
            con,
            "select step, kind, name, digest, path, dvc_rev, dvc_md5, "
            "dvc_remote from components where version = ? order by step, kind, "
            "name",
            [row["version"]],
        )
    entry = entry_for(store, row)
    return {
        "run": row,
        "manifest": entry["manifest"],
        "seq": entry["seq"],
        "entry_hash": entry["hash"],
        "components": components,
    }


def sources(store: Store, run: str, step: str | None = None) -> list[dict[str, str]]:
    """The recorded source text of every module each step's code reached (``show --source``),
    or of the step's own module for runs recorded before modules were kept apart."""
    found = entry(store, run)
    version = found["manifest"]["version"]
    spec = decode(Spec, store.get_object(version), version)
    steps = [s for s in spec.steps if step is None or s.name == step]
    if not steps:
        raise NotFoundError(
            f"run {found['run_id']} has no step {step!r}",
            hint="steps: " + ", ".join(s.name for s in spec.steps),
        )
    return [
        {
            "step": s.name,
            "module": module,
            "digest": digest,
            "text": store.get_object(digest).decode(errors="replace"),
        }
        for s in steps
        for module, digest in (s.modules or {s.qualname: s.source}).items()
    ]


def entry(store: Store, run: str) -> dict[str, Any]:
    """The ledger entry of a run given by id or unique prefix."""
    return entries(store, [run])[0]


def entries(store: Store, runs: list[str]) -> list[dict[str, Any]]:
    """The ledger entries of runs given by id or unique prefix, in that order: resolved on
    one catalog connection (opening one costs milliseconds; an export names many runs),
    then read from the ledger where the catalog says each line ends."""
    with Catalog(store).connect() as con:
        rows = {
            r: _rows(
                con, "select run_id, entry_end from runs where run_id = ?", [resolve_run(con, r)]
            )[0]
            for r in dict.fromkeys(runs)
        }
    ends = {row["run_id"]: int(row["entry_end"] or 0) for row in rows.values()}
    return store.find_entries([rows[r]["run_id"] for r in runs], ends)


def find(
    store: Store,
    key: str,
    *,
    pipeline: str | None = None,
    until: datetime | None = None,
    kind: str | None = PRODUCTION,
) -> list[dict[str, Any]]:
    """The runs of ``kind`` (None: every kind) that decided the business record ``key``,
    newest first."""
    query = (
        "select r.run_id, r.pipeline, r.clock, r.status, r.kind, k.row, r.record_key, "
        "r.entry_end from ({records}) k join runs r using (run_id) where true"
    )
    params: list[Any] = []
    for cond, value in (
        (" and r.pipeline = ?", pipeline),
        (" and r.clock <= ?", until),
        (" and r.kind = ?", kind),
    ):
        if value is not None:
            query += cond
            params.append(value)
    query += " order by r.clock desc, r.seq desc"

    def ask(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        records = "select run_id, row from records where key = ?"
        below = compacted_below(con)
        if below:  # the keys of older runs are compacted on the store
            from replay.catalog.compact import asking

            records += (
                " union all select run_id, row from compacted_records "
                f"where key = ? and seq < {below}"
            )
            statement = query.format(records=records)
            return asking(store, con, below, lambda: _rows(con, statement, [key, key, *params]))
        return _rows(con, query.format(records=records), [key, *params])

    # The catalog is only an index: its answer is confirmed in the ledger and blocks.
    found = answer(store, ask, lambda rows: rows, key)
    for row in found:
        row.pop("entry_end", None)
    return found


def sql(store: Store, query: str) -> pa.Table:
    """Run read-only DuckDB SQL over the catalog tables and the row-data views.

    Row data appears as schema-qualified views, one schema per pipeline (its name with
    non-alphanumerics as ``_``): ``credit_decision.input``, ``credit_decision.decision``,
    each with ``run_id`` and ``row`` columns in front. On a store whose record keys were
    compacted (``replay compact``) before the catalog was made, ``records`` holds the keys
    of the runs after them and ``compacted_records`` (read from the store) the others.

    Only reads run (SELECT, WITH, FROM, VALUES, TABLE, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN),
    as DuckDB's own parser classifies them; anything else is a CatalogError. They run on
    ``Catalog.reader``: the catalog attached read-only, no files, extensions or settings.
    """
    if not query.strip():
        raise UsageError("the SQL query is empty")
    with Catalog(store).reader(prepare=_prepare(store, query)) as con:
        try:
            return con.sql(query).to_arrow_table()
        except duckdb.Error as exc:
            raise CatalogError(str(exc).splitlines()[0], hint=_error_hint(exc)) from None


SQL_HINT = '`replay sql "show all tables"` lists what can be queried'
READ_HINT = "ask with SELECT, WITH, FROM, VALUES, SHOW, DESCRIBE, SUMMARIZE or EXPLAIN"
REFUSAL_HINTS: dict[duckdb.StatementType | None, str] = {
    duckdb.StatementType.COPY: "to keep a result, print it with --json and redirect it",
    duckdb.StatementType.EXPORT: "to keep a result, print it with --json and redirect it",
    duckdb.StatementType.PRAGMA: "read metadata with table functions instead, e.g. "
    "select * from pragma_table_info('runs')",
    # A PIVOT without IN first creates a type (one statement of several).
    duckdb.StatementType.MULTI: "list the values a PIVOT spreads: PIVOT t ON col IN ('a', 'b')",
}


def _prepare(store: Store, query: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    def prepare(con: duckdb.DuckDBPyConnection) -> None:
        _refuse_unless_reads(con, query)  # first: a refused query loads no row data
        _register_rows(store, con, query)
        below = compacted_below(con)
        if below and "compacted_records" in query.lower():
            from replay.catalog.compact import register

            register(store, con, below)

    return prepare


def _refuse_unless_reads(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse the query unless DuckDB's parser finds only reads in it."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise CatalogError(str(exc).splitlines()[0], hint=SQL_HINT) from None
    if not statements:
        raise UsageError("the SQL query is empty")
    for i, statement in enumerate(statements, 1):
        refused = _refused(con, statement)
        if refused is not None:
            where = f" (statement {i} of {len(statements)})" if len(statements) > 1 else ""
            raise CatalogError(
                f"replay sql only reads: refused {_keyword(refused)}{where}",
                hint=REFUSAL_HINTS.get(_kind(refused), READ_HINT),
            )


def _refused(
    con: duckdb.DuckDBPyConnection, statement: duckdb.Statement
) -> duckdb.Statement | None:
    """The statement that is not a read (the one inside an EXPLAIN), or None."""
    kind = _kind(statement)
    # SHOW, DESCRIBE, SUMMARIZE, FROM-first, VALUES and TABLE all parse as SELECT.
    if kind == duckdb.StatementType.SELECT:
        return None
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs what it explains: judge the statement inside.
        inner = _explained(con, statement.query)
        return statement if inner is None else _refused(con, inner)
    return statement


def _kind(statement: duckdb.Statement) -> duckdb.StatementType | None:
    try:
        return statement.type
    except ValueError:  # a type the Python binding cannot name (UPDATE EXTENSIONS)
        return None


def _explained(con: duckdb.DuckDBPyConnection, text: str) -> duckdb.Statement | None:
    """The statement an EXPLAIN [ANALYZE | (options)] wraps: the first tail of its text,
    token by token, that DuckDB parses as exactly one statement."""
    for pos, _ in duckdb.tokenize(text)[1:]:
        try:
            found = con.extract_statements(text[pos:])
        except (duckdb.Error, ValueError):
            continue
        if len(found) == 1:
            return found[0]
    return None


def _keyword(statement: duckdb.Statement) -> str:
    """The statement's first word as written: INSTALL and LOAD share a statement type,
    CHECKPOINT parses as a CALL."""
    text = statement.query
    starts = [pos for pos, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    if not starts:
        return "a statement"
    end = starts[1] if len(starts) > 1 else len(text)
    return text[starts[0] : end].strip().rstrip(";").upper()


def _error_hint(exc: duckdb.Error) -> str:
    if isinstance(exc, duckdb.PermissionException):
        return (
            "replay sql reads only the catalog and the row-data views: no files, "
            "extensions or settings"
        )
    return SQL_HINT


def schema_name(pipeline: str) -> str:
    name = re.sub(r"[^0-9A-Za-z]+", "_", pipeline).strip("_").lower() or "pipeline"
    return f"{name}_rows" if name in ("main", "temp", "system", "memory") else name


def _register_rows(store: Store, con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Make ``<pipeline>.<step>`` views for the pipelines a query names (lazily: row data
    is read from the segments only when asked for)."""
    lowered = query.lower()
    for (pipeline,) in con.execute("select distinct pipeline from runs").fetchall():
        schema = schema_name(pipeline)
        if schema not in lowered:
            continue
        # An in-memory database per pipeline: views on Arrow data must not outlive the query.
        con.execute(f"attach ':memory:' as \"{schema}\"")
        for kind, table in rows_of(store, con, pipeline).items():
            name = f"_rows_{schema}_{kind}"
            con.register(name, table)
            con.execute(f'create view "{schema}"."{kind}" as select * from "{name}"')


def rows_of(store: Store, con: duckdb.DuckDBPyConnection, pipeline: str) -> dict[str, pa.Table]:
    """Every recorded table of a pipeline, by kind (``input`` or a step name)."""
    refs = con.execute(
        "select segment, block_offset, block_length, block_header, "
        "list(run_id order by seq) from runs where pipeline = ? "
        "group by all order by min(seq)",
        [pipeline],
    ).fetchall()
    pieces: dict[str, list[pa.Table]] = {}
    for segment, offset, length, header, run_ids in refs:
        block = store.block(
            {"segment": segment, "offset": offset, "length": length, "header": header}
        )
        for run_id in run_ids:
            for kind in block.kinds(run_id):
                t = block.table(run_id, kind)
                t = t.add_column(0, "row", pa.array(range(t.num_rows), pa.int64()))
                t = t.add_column(0, "run_id", pa.array([run_id] * t.num_rows, pa.string()))
                pieces.setdefault(kind, []).append(t)
    return {k: pa.concat_tables(v, promote_options="permissive") for k, v in pieces.items()}


def reindex(store: Store) -> int:
    """Rebuild the catalog from the store's files; returns the number of runs indexed."""
    with Catalog(store).connect(rebuild=True) as con:
        row = con.execute("select count(*) from runs").fetchall()[0]
    return int(row[0]) if row else 0


def init(path: str | None = None) -> Store:
    """Create (or open) a store."""
    return Store.open(path, create=True)


__all__ = ["INPUT", "find", "init", "reindex", "rows_of", "runs", "show", "sql"]
