"""The chain of a run with every component's digest, as a text tree or a Mermaid graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replay.core.pipeline import INPUT
from replay.store.store import Store


@dataclass(frozen=True)
class Lineage:
    """A run's manifest and pipeline spec: what its chain is drawn from."""

    manifest: dict[str, Any]
    spec: dict[str, Any]

    def as_text(self) -> str:
        return text(self.manifest, self.spec)

    def as_mermaid(self) -> str:
        return mermaid(self.manifest, self.spec)

    def as_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "spec": self.spec}


def lineage(store: Store, run: str) -> Lineage:
    """The chain of ``run`` (an id or a unique prefix): its manifest and spec, read once the
    ledger entry is verified; nothing is unpickled."""
    from replay.catalog.queries import entry
    from replay.engine.recorded import load_run

    recorded = load_run(store, entry(store, run))
    return Lineage(recorded.manifest, recorded.spec)


def _components(step: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("code", step["code"]), ("source", step["source"]), ("params", step["params"])]
    out += [(f"module {n}", digest) for n, digest in (step.get("modules") or {}).items()]
    out += [(f"model {n}", m["digest"] + _dvc(m)) for n, m in step["models"].items()]
    out += [(f"data {n}", d["sha256"] + _dvc(d)) for n, d in step["data"].items()]
    return out


def _dvc(component: dict[str, Any]) -> str:
    dvc = component.get("dvc")
    return f" (dvc rev {dvc['rev'][:12]}, md5 {dvc['md5']})" if dvc else ""


def text(manifest: dict[str, Any], spec: dict[str, Any]) -> str:
    lines = [
        f"{manifest['pipeline']}  version {manifest['version']}",
        f"└─ input  {manifest['input']['rows']} rows  {manifest['input']['digest']}",
    ]
    outputs = {s["name"]: s for s in manifest["steps"]}
    for step in spec["steps"]:
        reads = ", ".join(step["inputs"])
        out = outputs.get(step["name"], {}).get("output")
        lines.append(f"   └─ {step['name']}  (reads {reads})  → {out or 'no output (failed)'}")
        lines += [f"      {label:<14} {digest}" for label, digest in _components(step)]
    lines.append(f"env {manifest['env']}")
    return "\n".join(lines)


def mermaid(manifest: dict[str, Any], spec: dict[str, Any]) -> str:
    def node(name: str) -> str:
        return "n_" + "".join(ch if ch.isalnum() else "_" for ch in name)

    lines = ["flowchart LR", f'  {node(INPUT)}["input<br/>{manifest["input"]["digest"][:19]}"]']
    for step in spec["steps"]:
        comps = "<br/>".join(f"{label}: {digest[:19]}" for label, digest in _components(step))
        lines.append(f'  {node(step["name"])}["{step["name"]}<br/>{comps}"]')
        lines += [f"  {node(src)} --> {node(step['name'])}" for src in step["inputs"]]
    return "\n".join(lines)
