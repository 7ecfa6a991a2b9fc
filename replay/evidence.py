"""``export``: one signed file holding everything a regulator needs to check a set of runs.

    MANIFEST.json            digest list of every other file, the runs, the checkpoint
    MANIFEST.sig             Ed25519 signature over MANIFEST.json (base64)
    public_key.pem           the key that signed it (its id is in MANIFEST.json)
    ledger/checkpoint.json   a signed tree head covering every exported run
    ledger/entries.jsonl     the runs' ledger entries (leaves), in ledger order
    ledger/proofs.json       an inclusion proof per entry against the checkpoint
    objects/sha256/ab/…      every object the runs name: specs, code, sources, models, params,
                             environments, package locks, kept data
    runs/<id>/<table>.arrow  input rows and every step output (Arrow IPC stream)
    runs/<id>/tape.json      recorded external calls, if any
    reports/<id>.json        the replay report of each run
    report.html, report.pdf  the human report
    statement.intoto.json    an in-toto Statement v1 whose subjects are the runs' outputs
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from replay import bundle, checkpoint, keys, merkle
from replay.digest import canonical_json, sha256, table_bytes
from replay.engine import ReplayReport, replay
from replay.errors import CorruptionError, UsageError
from replay.objects import relative_path, spec_digests
from replay.queries import entry
from replay.rebuild import RecordedRun, load_run
from replay.store import Store

PREDICATE = "https://pipeline-replay.dev/run/v1"


@dataclass(frozen=True)
class Exported:
    path: Path
    runs: tuple[str, ...]
    size: int
    files: int
    key_id: str
    checkpoint: checkpoint.Checkpoint


def _objects_of(run: RecordedRun, store: Store) -> set[str]:
    out = {run.manifest["version"], run.manifest["env"]}
    env = json.loads(store.get_object(run.manifest["env"]))
    if store.objects.has(env["packages"]["lock_sha256"]):
        out.add(env["packages"]["lock_sha256"])
    return out | set(spec_digests(run.spec))


def _run_files(run: RecordedRun) -> dict[str, bytes]:
    files = {}
    for kind in run.block.kinds(run.run_id):
        data = table_bytes(run.table(kind))  # run.table checks the manifest digest
        files[f"runs/{run.run_id}/{kind}.arrow"] = data.to_pybytes()
    if "tape" in run.manifest:
        files[f"runs/{run.run_id}/tape.json"] = run.block.blob(run.run_id, "tape")
    return files


def _checkpoint_for(store: Store, private: Ed25519PrivateKey, newest: int
                    ) -> checkpoint.Checkpoint:
    found = checkpoint.stored(store)
    key = keys.key_id(private.public_key())
    usable = [cp for _, cp in found if cp.key_id == key and cp.tree_size >= newest]
    return usable[-1] if usable else checkpoint.sign(store, private)


def statement(runs: list[RecordedRun], reports: dict[str, ReplayReport]) -> dict[str, Any]:
    """An in-toto Statement v1: the runs' final outputs are its subjects."""
    subjects, predicate = [], []
    for run in runs:
        last = run.manifest["steps"][-1]
        if last["output"]:
            subjects.append({"name": f"run/{run.run_id}/{last['name']}",
                             "digest": {"sha256": last["output"][7:]}})
        predicate.append({"run_id": run.run_id, "pipeline": run.manifest["pipeline"],
                          "version": run.manifest["version"], "clock": run.manifest["clock"],
                          "status": run.manifest["status"], "ledger_seq": run.entry["seq"],
                          "ledger_hash": run.entry["hash"],
                          "replay_verdict": reports[run.run_id].verdict})
    return {"_type": "https://in-toto.io/Statement/v1", "subject": subjects,
            "predicateType": PREDICATE, "predicate": {"runs": predicate}}


def export(store: Store, run_ids: list[str], out: Path, *, key: Path | None = None,
           question: dict[str, Any] | None = None) -> Exported:
    """Write a signed evidence bundle for ``run_ids`` to ``out``."""
    if not run_ids:
        raise UsageError("no runs to export", hint="name runs, or a --since/--until window")
    private = keys.load_private(key)
    runs = sorted((load_run(store, entry(store, r)) for r in dict.fromkeys(run_ids)),
                  key=lambda r: r.entry["seq"])
    cp = _checkpoint_for(store, private, runs[-1].entry["seq"])
    leaves = checkpoint.ledger_leaves(store, cp.tree_size)
    files: dict[str, bytes] = {}
    proofs: dict[str, Any] = {}
    for run in runs:
        leaf = merkle.leaf_hash(canonical_json(run.entry))
        index = run.entry["seq"] - 1
        if leaves[index] != leaf:
            raise CorruptionError(str(store.ledger.path), f"entry {run.entry['seq']} is not "
                                  "the one the checkpoint covers")
        proofs[run.run_id] = {"index": index, "proof": [h.hex() for h in
                                                        merkle.inclusion_proof(index, leaves)]}
        files.update(_run_files(run))
        for digest in _objects_of(run, store):
            files["objects/" + relative_path(digest)] = store.get_object(digest)
    reports = {run.run_id: replay(store, run.run_id) for run in runs}
    files["ledger/entries.jsonl"] = b"".join(canonical_json(r.entry) + b"\n" for r in runs)
    files["ledger/proofs.json"] = canonical_json(proofs)
    files["ledger/checkpoint.json"] = canonical_json(cp.as_json())
    files["public_key.pem"] = keys.public_pem(private.public_key())
    for run_id, rep in reports.items():
        files[f"reports/{run_id}.json"] = canonical_json(rep.as_json())
    files["statement.intoto.json"] = canonical_json(statement(runs, reports))
    files.update(_human_report(store, runs, reports, cp, question or {}))
    return _seal(files, runs, cp, private, out)


def _human_report(store: Store, runs: list[RecordedRun], reports: dict[str, ReplayReport],
                  cp: checkpoint.Checkpoint, question: dict[str, Any]) -> dict[str, bytes]:
    from replay import report
    from replay.report_context import context

    ctx = context(store, runs, reports, cp, question)
    return {"report.html": report.render_html(ctx).encode(), "report.pdf": report.render_pdf(ctx)}


def _seal(files: dict[str, bytes], runs: list[RecordedRun], cp: checkpoint.Checkpoint,
          private: Ed25519PrivateKey, out: Path) -> Exported:
    manifest = canonical_json({
        "format": 1, "created": datetime.now(UTC).isoformat(),
        "runs": [r.run_id for r in runs], "key_id": keys.key_id(private.public_key()),
        "checkpoint": {"tree_size": cp.tree_size, "root": cp.root},
        "files": {name: sha256(data) for name, data in sorted(files.items())}})
    files = {**files, "MANIFEST.json": manifest,
             "MANIFEST.sig": base64.b64encode(private.sign(manifest))}
    data = bundle.write(files)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    return Exported(out, tuple(r.run_id for r in runs), len(data), len(files),
                    keys.key_id(private.public_key()), cp)


def open_bundle(path: Path, *, key: bytes | None = None, trust: bool = False
                ) -> tuple[Store, Any]:
    """A temporary store holding a bundle's runs, made only after the bundle verified.

    ``trust`` loads a bundle that failed verification anyway: its code will be unpickled
    when replayed, so only do that for bundles you made yourself.
    """
    from replay.bundle import BundleError
    from replay.segments import RunData, StoredTable
    from replay.verify import verify_bundle

    check = verify_bundle(path, key)
    if not check.ok and not trust:
        part, _, reason = (check.failure or "bundle: failed").partition(": ")
        raise BundleError(part, f"{reason} — refusing to replay an unverified bundle",
                          hint="check it with `replay verify`; --trust replays it anyway")
    store = Store.open(Path(tempfile.mkdtemp(prefix="replay-bundle-")) / "store")
    for name, data in check.files.items():
        if name.startswith("objects/"):
            store.put_object(data)
    for line in check.files.get("ledger/entries.jsonl", b"").splitlines():
        e = json.loads(line)
        prefix = f"runs/{e['run_id']}/"
        tables = {n[len(prefix):-6]: StoredTable.of(pa_ipc(d)) for n, d in check.files.items()
                  if n.startswith(prefix) and n.endswith(".arrow")}
        blobs = {"tape": check.files[prefix + "tape.json"]} if "tape" in e["manifest"] else {}
        store.commit(RunData(e["run_id"], tables, blobs), e["manifest"]).result()
    return store, check


def pa_ipc(data: bytes) -> Any:
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all()
