"""What runs name only by digest, indexed once each: environments and the components of
pipeline versions."""

from __future__ import annotations

import duckdb

from replay.core.manifest import Environment, Spec, decode
from replay.store.store import Store


def environment(store: Store, con: duckdb.DuckDBPyConnection, env: str) -> str:
    """Index environment ``env`` unless it is; returns its image digest."""
    known = con.execute("select image from environments where env = ?", [env]).fetchall()
    if known:
        return str(known[0][0])
    fp = decode(Environment, store.get_object(env), env)
    con.execute(
        "insert into environments values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            env,
            fp.python.version,
            fp.platform.summary,
            fp.cpu.model,
            fp.blas.get("numpy"),
            fp.packages.count,
            fp.packages.lock_sha256,
            fp.image.digest,
        ],
    )
    return fp.image.digest


def components(store: Store, con: duckdb.DuckDBPyConnection, versions: dict[str, str]) -> None:
    """Index the components of each pipeline version (``versions``: version -> pipeline)
    not indexed yet."""
    found: list[tuple[str | None, ...]] = []
    for version, pipeline in versions.items():
        if con.execute("select 1 from components where version = ? limit 1", [version]).fetchall():
            continue
        spec = decode(Spec, store.get_object(version), version)
        found += [
            (version, pipeline, c.step, c.kind, c.name, c.digest, c.path)
            + ((c.dvc.repo, c.dvc.rev, c.dvc.md5, c.dvc.remote) if c.dvc else (None,) * 4)
            for c in spec.components()
            if c.kind != "module"  # a module's source is part of its step's code
        ]
    if found:
        con.executemany(f"insert into components values ({', '.join('?' * 11)})", found)
