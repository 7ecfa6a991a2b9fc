"""The chain of a run with every component's digest, as a text tree or a Mermaid graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replay.core.manifest import DvcVersion, Manifest, Spec, StepSpec, plain, step_components
from replay.core.pipeline import INPUT
from replay.store.store import Store


@dataclass(frozen=True)
class Lineage:
    """A run's manifest and pipeline spec: what its chain is drawn from."""

    manifest: Manifest
    spec: Spec

    def as_text(self) -> str:
        return text(self.manifest, self.spec)

    def as_mermaid(self) -> str:
        return mermaid(self.manifest, self.spec)

    def as_json(self) -> dict[str, Any]:
        return {"manifest": plain(self.manifest), "spec": plain(self.spec)}


def lineage(store: Store, run: str) -> Lineage:
    """The chain of ``run`` (an id or a unique prefix): its manifest and spec, read once the
    ledger entry is verified; nothing is unpickled."""
    from replay.engine.recorded import load_run

    recorded = load_run(store, store.entry(run))
    return Lineage(recorded.manifest, recorded.spec)


def _components(step: StepSpec) -> list[tuple[str, str]]:
    return [(c.label, c.digest + _dvc(c.dvc)) for c in step_components(step)]


def _dvc(dvc: DvcVersion | None) -> str:
    return f" (dvc rev {dvc.rev[:12]}, md5 {dvc.md5})" if dvc else ""


def text(manifest: Manifest, spec: Spec) -> str:
    lines = [
        f"{manifest.pipeline}  version {manifest.version}",
        f"└─ input  {manifest.input.rows} rows  {manifest.input.digest}",
    ]
    for step in spec.steps:
        reads = ", ".join(step.inputs)
        ran = manifest.step(step.name)
        out = ran.output if ran else None
        lines.append(f"   └─ {step.name}  (reads {reads})  → {out or 'no output (failed)'}")
        lines += [f"      {label:<14} {digest}" for label, digest in _components(step)]
    lines.append(f"env {manifest.env}")
    return "\n".join(lines)


def mermaid(manifest: Manifest, spec: Spec) -> str:
    def node(name: str) -> str:
        return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)

    lines = ["flowchart LR", f'  {node(INPUT)}["input<br/>{manifest.input.digest[:19]}"]']
    for step in spec.steps:
        comps = "<br/>".join(f"{label}: {digest[:19]}" for label, digest in _components(step))
        lines.append(f'  {node(step.name)}["{step.name}<br/>{comps}"]')
        lines += [f"  {node(src)} --> {node(step.name)}" for src in step.inputs]
    return "\n".join(lines)
