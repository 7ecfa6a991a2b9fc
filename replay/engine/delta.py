"""What differs between two pipeline specs and two environments: one ``Change`` per
component or setting (tables are compared in ``replay.engine.tablediff``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replay.core.manifest import Component, Spec, step_components


@dataclass(frozen=True)
class Change:
    """One component or environment field that differs: where, what, before, after."""

    where: str
    what: str
    before: Any
    after: Any


def spec_changes(a: Spec, b: Spec) -> list[Change]:
    """Components that differ between two pipeline specs, step by step."""
    out: list[Change] = []
    steps_a = {s.name: s for s in a.steps}
    steps_b = {s.name: s for s in b.steps}
    for name in [*steps_a, *(n for n in steps_b if n not in steps_a)]:
        sa, sb = steps_a.get(name), steps_b.get(name)
        if sa is None or sb is None:
            out.append(Change(name, "step", "present" if sa else None, "present" if sb else None))
            continue
        for kind, va, vb in (
            ("code", sa.code, sb.code),
            ("params", sa.params, sb.params),
            ("inputs", sa.inputs, sb.inputs),
        ):
            if va != vb:
                out.append(Change(name, kind, va, vb))
        # Models and data by content (a new git rev alone is no change); a module's source
        # is part of its step's code.
        ca, cb = (
            {c.label: c for c in step_components(s) if c.kind in ("model", "data")}
            for s in (sa, sb)
        )
        for label in sorted(set(ca) | set(cb), key=lambda label: (label[0] != "m", label)):
            was, now = ca.get(label), cb.get(label)
            if (was and was.digest) != (now and now.digest):
                out.append(Change(name, label, _describe(was), _describe(now)))
    return out


def _describe(component: Component | None) -> Any:
    if component is None:
        return None
    if component.dvc:
        return {
            "sha256": component.digest,
            "dvc_rev": component.dvc.rev,
            "dvc_md5": component.dvc.md5,
        }
    return component.digest


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
    """Environment drift, field by field over the stored JSON of two environments (what
    one side never recorded is absent); with both package locks, the packages that moved."""
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
