"""``verify``: check a bundle without trusting it and without unpickling anything.

Checks run in order and each names the part it covers; the first failure's reason is the
answer. Only JSON, Arrow IPC and Ed25519 are parsed: recorded code and models stay bytes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from replay import bundle, keys, merkle
from replay.bundle import BundleError
from replay.checkpoint import Checkpoint
from replay.digest import canonical_json, combine_parts, json_digest, sha256, table_digest
from replay.errors import UsageError
from replay.imagetar import ImageTarError, image_id
from replay.ledger import entry_hash, line_of
from replay.objects import relative_path, spec_digests
from replay.pipeline import INPUT

SIGNED = ("MANIFEST.json", "MANIFEST.sig")


@dataclass
class Verification:
    """Each check as (part, ok, detail); ``ok`` only when every check held."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    @property
    def failure(self) -> str | None:
        return next((f"{part}: {detail}" for part, ok, detail in self.checks if not ok), None)

    def passed(self, part: str, detail: str = "") -> None:
        self.checks.append((part, True, detail))


def verify_bundle(path: Path, expected_key: bytes | None = None) -> Verification:
    """Verify every byte of the bundle at ``path``; never raises on a bad bundle."""
    result = Verification()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read bundle {path}: {exc.strerror}") from None
    try:
        result.files = bundle.read(data)
        result.passed("container", f"{len(result.files)} regular files, canonical layout")
        _verify(result, expected_key)
    except BundleError as exc:
        result.checks.append((exc.part, False, exc.message.partition(": ")[2] or exc.message))
    return result


def _get(files: dict[str, bytes], name: str) -> bytes:
    if name not in files:
        raise BundleError(name, "missing from the bundle")
    return files[name]


def _json(files: dict[str, bytes], name: str) -> Any:
    try:
        return json.loads(_get(files, name))
    except ValueError:
        raise BundleError(name, "is not JSON") from None


def _verify(result: Verification, expected_key: bytes | None) -> None:
    files = result.files
    manifest = _json(files, "MANIFEST.json")
    public = keys.load_public(_get(files, "public_key.pem"))
    kid = keys.key_id(public)
    if expected_key is not None and keys.key_id(keys.load_public(expected_key)) != kid:
        raise BundleError("public_key.pem", f"wrong key: the bundle is signed by {kid}, "
                          f"not by the expected {keys.key_id(keys.load_public(expected_key))}")
    if manifest.get("key_id") != kid:
        raise BundleError("MANIFEST.json", "names another key than public_key.pem")
    try:
        signature = base64.b64decode(_get(files, "MANIFEST.sig"), validate=True)
    except ValueError:
        raise BundleError("MANIFEST.sig", "is not base64") from None
    if not keys.verify_signature(public, signature, files["MANIFEST.json"]):
        raise BundleError("MANIFEST.sig", "the signature over MANIFEST.json does not verify")
    result.passed("signature", f"MANIFEST.json signed by {kid}")
    _verify_digests(files, manifest["files"])
    result.passed("digests", f"{len(manifest['files'])} files match their sha256")
    cp = _verify_checkpoint(files, public, manifest)
    result.passed("checkpoint", f"tree of {cp.tree_size} entries, root {cp.root}")
    entries = _verify_ledger(files, cp)
    result.passed("ledger", f"{len(entries)} entries proven in the signed tree")
    result.runs = [e["run_id"] for e in entries]
    if result.runs != manifest["runs"]:
        raise BundleError("ledger/entries.jsonl", "holds other runs than MANIFEST.json lists")
    redacted = set(manifest.get("redacted") or ())
    for e in entries:
        _verify_run(files, e, redacted)
        result.passed(f"run {e['run_id']}", "rows, tape and components match the manifest")
    _verify_objects(files)
    result.passed("objects", "every object matches its name")
    images = manifest.get("images") or {}
    if images or any(n.startswith("images/") for n in files):
        _verify_images(files, images, manifest["files"], entries)
        result.passed("images", f"{len(images)} image(s): config and every layer match the "
                                "image ID the runs recorded")
    _verify_statement(files, entries)
    result.passed("statement.intoto.json", "subjects are the runs' outputs")


def _verify_digests(files: dict[str, bytes], listed: dict[str, str]) -> None:
    for name in files:
        if name not in listed and name not in SIGNED:
            raise BundleError(name, "is not in the signed digest list")
    for name, digest in listed.items():
        if sha256(_get(files, name)) != digest:
            raise BundleError(name, "does not match its digest in MANIFEST.json")


def _verify_checkpoint(files: dict[str, bytes], public: Any, manifest: dict[str, Any]
                       ) -> Checkpoint:
    try:
        cp = Checkpoint.from_json(_json(files, "ledger/checkpoint.json"))
    except (KeyError, TypeError, ValueError):
        raise BundleError("ledger/checkpoint.json", "is not a checkpoint") from None
    if not cp.verify(public):
        raise BundleError("ledger/checkpoint.json", "signature does not verify")
    if manifest.get("checkpoint") != {"tree_size": cp.tree_size, "root": cp.root}:
        raise BundleError("ledger/checkpoint.json", "is not the checkpoint MANIFEST.json names")
    return cp


def _verify_ledger(files: dict[str, bytes], cp: Checkpoint) -> list[dict[str, Any]]:
    name = "ledger/entries.jsonl"
    proofs = _json(files, "ledger/proofs.json")
    entries = [json.loads(line) for line in _get(files, name).splitlines()]
    seqs = [e["seq"] for e in entries]
    if seqs != sorted(set(seqs)):
        raise BundleError(name, f"entries are not in ledger order ({seqs})")
    if seqs and seqs[-1] > cp.tree_size:
        raise BundleError("ledger/checkpoint.json", f"stale checkpoint: it covers "
                          f"{cp.tree_size} entries, the bundle holds entry {seqs[-1]}")
    top = bytes.fromhex(cp.root[7:])
    for e in entries:
        where = f"entry {e['seq']} (run {e['run_id']})"
        if entry_hash(e) != e["hash"] or sha256(canonical_json(e["manifest"])) \
                != e["manifest_sha256"] or e["manifest"]["run_id"] != e["run_id"]:
            raise BundleError(name, f"{where} does not match its own hashes")
        proof = proofs.get(e["run_id"], {})
        path = [bytes.fromhex(h) for h in proof.get("proof", [])]
        if proof.get("index") != e["seq"] - 1 or not merkle.verify_inclusion(
                e["seq"] - 1, cp.tree_size, merkle.leaf_hash(line_of(e)), path, top):
            raise BundleError("ledger/proofs.json", f"{where} is not proven in the "
                              "checkpoint's tree")
    return entries


def _verify_run(files: dict[str, bytes], e: dict[str, Any], redacted: set[str]) -> None:
    m, run = e["manifest"], e["run_id"]
    expected = {INPUT: (m["input"]["digest"], m["input"].get("parts"))} | {
        s["name"]: (s["output"], s.get("output_parts")) for s in m["steps"] if s["output"]}
    for kind, (digest, parts) in expected.items():
        name = f"runs/{run}/{kind}.arrow"
        try:
            table = pa.ipc.open_stream(_get(files, name)).read_all()
        except pa.ArrowException:
            raise BundleError(name, "is not an Arrow IPC stream") from None
        if _content_digest(name, table, parts, redacted) != digest:
            raise BundleError(name, f"rows do not match the manifest of run {run}")
    tape = f"runs/{run}/tape.json"
    if "tape" in m and (tape in files or not redacted) \
            and sha256(_get(files, tape)) != m["tape"]:
        raise BundleError(tape, "does not match the manifest's tape digest")
    spec = _json(files, _object_name(m["version"]))
    kept_data = {d["object"] for s in spec["steps"] for d in s["data"].values()
                 if d.get("object")} if redacted else set()
    for digest in [*spec_digests(spec), m["env"]]:
        if digest not in kept_data:  # kept reference data is left out of redacted bundles
            _get(files, _object_name(digest))
    _get(files, f"reports/{run}.json")


def _content_digest(name: str, table: pa.Table, parts: dict[str, Any] | None,
                    redacted: set[str]) -> str:
    """The table's digest; a redacted column enters by its recorded digest, every other
    column is recomputed from the bytes in the bundle."""
    if parts is None or not redacted & set(parts["personal"]):
        return table_digest(table, tuple(parts["personal"]) if parts else ())
    columns = json_digest(table.column_names)
    if parts.get("columns", columns) != columns:  # runs recorded before 2026-11-26 name them
        raise BundleError(name, "columns differ from the recorded ones")
    rest = table.drop_columns(list(parts["personal"]))
    personal = {c: (d if c in redacted else table_digest(table.select([c])))
                for c, d in parts["personal"].items()}
    return combine_parts({"columns": columns, "rest": table_digest(rest), "personal": personal})


def _object_name(digest: str) -> str:
    return "objects/" + relative_path(digest)


def _verify_objects(files: dict[str, bytes]) -> None:
    for name, data in files.items():
        if name.startswith("objects/"):
            parts = name.split("/")
            if len(parts) != 4 or sha256(data) != f"sha256:{parts[2]}{parts[3]}":
                raise BundleError(name, "does not hash to its name")


def _verify_images(files: dict[str, bytes], listed: dict[str, Any], digests: dict[str, str],
                   entries: list[dict[str, Any]]) -> None:
    recorded = set()
    for e in entries:
        env = json.loads(_get(files, _object_name(e["manifest"]["env"])))
        recorded.add(env.get("image", {}).get("id"))
    for name in files:
        if name.startswith("images/") and name not in listed:
            raise BundleError(name, "is not listed among MANIFEST.json's images")
    for name, info in listed.items():
        data = _get(files, name)
        # Its sha256 was checked against the signed digest list already: not hashed again.
        if name != f"images/{digests.get(name, '')[7:]}.tar":
            raise BundleError(name, "does not hash to its name")
        try:
            found = image_id(data)
        except ImageTarError as exc:
            raise BundleError(name, str(exc)) from None
        if found != info.get("id"):
            raise BundleError(name, f"is image {found}, not the listed {info.get('id')}")
        if found not in recorded:
            raise BundleError(name, f"image {found} is not the image any exported run "
                              "was recorded in")


def _verify_statement(files: dict[str, bytes], entries: list[dict[str, Any]]) -> None:
    name = "statement.intoto.json"
    st = _json(files, name)
    want = sorted(e["manifest"]["steps"][-1]["output"][7:] for e in entries
                  if e["manifest"]["steps"][-1]["output"])
    got = sorted(s["digest"]["sha256"] for s in st.get("subject", []))
    if st.get("_type") != "https://in-toto.io/Statement/v1" or got != want:
        raise BundleError(name, "subjects are not the runs' recorded outputs")
