"""``diff``: which components two runs differ in, and how their decisions differ."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from replay.core.manifest import Environment, plain
from replay.engine.delta import Change, env_changes, spec_changes
from replay.engine.recorded import load_environment, load_run
from replay.engine.records import RecordChange, record_changes
from replay.store.store import Store


@dataclass(frozen=True)
class RunDiff:
    run_a: str
    run_b: str
    components: tuple[Change, ...]
    environment: tuple[Change, ...]
    shared_records: int
    records: tuple[RecordChange, ...]

    def __bool__(self) -> bool:
        return bool(self.components or self.environment or self.records)

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))  # type: ignore[no-any-return]


def _lock(store: Store, env: Environment) -> list[str] | None:
    digest = env.packages.lock_sha256
    return json.loads(store.get_object(digest)) if store.objects.has(digest) else None


def diff(store: Store, run_a: str, run_b: str) -> RunDiff:
    """Which components ``run_a`` and ``run_b`` (ids or unique prefixes) differ in, how their
    environments differ, and how the records both decided differ; true when any does."""
    a, b = (load_run(store, e) for e in store.find_entries([run_a, run_b]))
    env_a, env_b = (load_environment(store, r.manifest.env) for r in (a, b))
    la, lb = _lock(store, env_a), _lock(store, env_b)
    env = env_changes(
        plain(env_a), plain(env_b), (la, lb) if la is not None and lb is not None else None
    )
    last_a, last_b = a.manifest.steps[-1].name, b.manifest.steps[-1].name
    shared, records = 0, tuple[RecordChange, ...]()
    key = a.manifest.record_key or b.manifest.record_key
    if a.has_table(last_a) and b.has_table(last_b) and key:
        out_a, out_b = a.table(last_a), b.table(last_b)
        if key in out_a.column_names and key in out_b.column_names:
            common = pc.is_in(
                out_a.column(key), value_set=pa.array(out_b.column(key).combine_chunks())
            )
            shared = int(pc.sum(common).as_py() or 0)
            records = tuple(
                record_changes(out_a.filter(common), out_b, key, a.spec.decisions or ())
            )
    return RunDiff(
        a.run_id, b.run_id, tuple(spec_changes(a.spec, b.spec)), tuple(env), shared, records
    )
