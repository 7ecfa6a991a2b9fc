"""What differs between two pipeline specs and two environments: one ``Change`` per
component or setting (tables are compared in ``replay.engine.tablediff``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    """One component or environment field that differs: where, what, before, after."""

    where: str
    what: str
    before: Any
    after: Any


def spec_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Components that differ between two pipeline specs, step by step."""
    out: list[Change] = []
    steps_a = {s["name"]: s for s in a["steps"]}
    steps_b = {s["name"]: s for s in b["steps"]}
    for name in [*steps_a, *(n for n in steps_b if n not in steps_a)]:
        sa, sb = steps_a.get(name), steps_b.get(name)
        if sa is None or sb is None:
            out.append(Change(name, "step", "present" if sa else None, "present" if sb else None))
            continue
        for kind in ("code", "params", "inputs"):
            if sa.get(kind) != sb.get(kind):
                out.append(Change(name, kind, sa.get(kind), sb.get(kind)))
        for kind, key in (("models", "digest"), ("data", "sha256")):
            for comp in sorted(set(sa[kind]) | set(sb[kind])):
                va, vb = sa[kind].get(comp, {}), sb[kind].get(comp, {})
                if va.get(key) != vb.get(key):
                    label = "model" if kind == "models" else "data"
                    out.append(
                        Change(name, f"{label} {comp}", _describe(va, key), _describe(vb, key))
                    )
    return out


def _describe(component: dict[str, Any], key: str) -> Any:
    dvc = component.get("dvc")
    if dvc:
        return {"sha256": component[key], "dvc_rev": dvc["rev"], "dvc_md5": dvc["md5"]}
    return component.get(key)


ENV_FIELDS = (
    ("python", ("python", "version")),
    ("platform", ("platform", "release")),
    ("machine", ("platform", "machine")),
    ("cpu", ("cpu", "model")),
    ("numpy", ("blas", "numpy")),
    ("blas", ("blas", "build")),
    ("packages", ("packages", "lock_sha256")),
    ("image", ("image", "digest")),
)
NOT_RECORDED = "not recorded"  # a field an older record predates


def _get(env: dict[str, Any], path: tuple[str, ...]) -> Any:
    for p in path:
        env = env.get(p, {}) if isinstance(env, dict) else {}
    return env if env != {} else None


def _fields(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[Change]:
    """One change per differing field, named by it; a field one side never recorded differs
    only when the other side has a value."""
    out = []
    for key in [*a, *(k for k in b if k not in a)]:
        va, vb = a.get(key, NOT_RECORDED), b.get(key, NOT_RECORDED)
        if va != vb and not (va in (None, NOT_RECORDED) and vb in (None, NOT_RECORDED)):
            out.append(Change("environment", f"{prefix}{key}", va, vb))
    return out


def _settings(recorded: dict[str, Any], current: dict[str, Any]) -> list[Change]:
    """Thread and kernel variables, each by its name (OMP_NUM_THREADS, MKL_CBWR, ...)."""
    a, b = (
        {**(_get(env, ("threads",)) or {}), **(_get(env, ("kernels", "env")) or {})}
        for env in (recorded, current)
    )
    return _fields(a, b)


def _pools(recorded: dict[str, Any], current: dict[str, Any]) -> list[Change]:
    """Thread pools of the libraries both processes loaded. Which libraries a process has
    loaded depends on what it ran, not on the machine: a pool on one side only is not drift
    (a library that changed shows as a package or BLAS change)."""
    old, new = (_get(env, ("blas", "threadpools")) or [] for env in (recorded, current))
    if not any("library" in p for p in [*old, *new]):  # both predate named pools: as before
        return [] if old == new else [Change("environment", "thread pools", old, new)]
    a, b = (
        {
            p["library"]: {k: v for k, v in p.items() if k != "library"}
            for p in pools
            if "library" in p
        }
        for pools in (old, new)
    )
    return [c for lib in sorted(a.keys() & b.keys()) for c in _fields(a[lib], b[lib], f"{lib} ")]


def _libraries(recorded: dict[str, Any], current: dict[str, Any]) -> list[Change]:
    """Settings reported by each library both processes had imported (same reason as pools)."""
    a, b = (_get(env, ("kernels", "libraries")) or {} for env in (recorded, current))
    return [c for lib in a if lib in b for c in _fields(a[lib], b[lib], f"{lib} ")]


def env_changes(
    recorded: dict[str, Any],
    current: dict[str, Any],
    locks: tuple[list[str], list[str]] | None = None,
) -> list[Change]:
    """Environment drift, field by field; with both package locks, the packages that moved."""
    out = [
        Change("environment", name, _get(recorded, path), _get(current, path))
        for name, path in ENV_FIELDS
        if _get(recorded, path) != _get(current, path)
    ]
    out += [
        *_settings(recorded, current),
        *_pools(recorded, current),
        *_libraries(recorded, current),
    ]
    fa, fb = (
        set(recorded.get("cpu", {}).get("flags", [])),
        set(current.get("cpu", {}).get("flags", [])),
    )
    if fa != fb:
        out.append(Change("environment", "cpu flags", sorted(fa - fb), sorted(fb - fa)))
    if locks is not None:
        old, new = (dict(p.split("==", 1) for p in lock) for lock in locks)
        for pkg in sorted(set(old) | set(new)):
            if old.get(pkg) != new.get(pkg):
                out.append(Change("package", pkg, old.get(pkg), new.get(pkg)))
    return out
