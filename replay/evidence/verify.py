"""``verify``: check a bundle without trusting it and without unpickling anything.

Checks run in order and each names the part it covers; the first failure's reason is the
answer. Only JSON, Arrow IPC and Ed25519 are parsed: recorded code and models stay bytes.
The key a bundle carries proves it is whole, not who made it: the last check asks whether a
key the user pinned (replay.core.trust, or --key) signed it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from replay.core import keys, merkle
from replay.core.digest import canonical_json, combine_parts, json_digest, sha256, table_digest
from replay.core.manifest import Spec
from replay.core.pipeline import INPUT
from replay.core.trust import PINNED, TrustedKey, pinned
from replay.docker.imagetar import ImageTarError, image_id
from replay.errors import ReplayError, UntrustedSignerError, UsageError
from replay.evidence import bundle, shapes
from replay.evidence.bundle import BundleError, MalformedBundleError, Members
from replay.store.checkpoint import Checkpoint
from replay.store.ledger import entry_hash, line_of
from replay.store.objects import relative_path

SIGNED = ("MANIFEST.json", "MANIFEST.sig")
# JSON members are parsed whole, and a parsed document takes 5-20x its bytes: 64 MiB holds
# the digest list of bundle.MAX_MEMBERS files (~16 MB) and the entries of ~20,000 runs
# (~3 KB each), and keeps a hostile one to about a gigabyte.
MAX_JSON = 64 << 20
SHAPES = {
    "MANIFEST.json": shapes.MANIFEST,
    "ledger/checkpoint.json": shapes.CHECKPOINT,
    "ledger/proofs.json": shapes.PROOFS,
    "statement.intoto.json": shapes.STATEMENT,
}


@dataclass
class Verification:
    """Each check as (part, ok, detail); ``ok`` only when every check held."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    # Read from disk on demand; never compared, which would read every member.
    files: Members = field(default_factory=Members, repr=False, compare=False)
    runs: list[str] = field(default_factory=list)
    signer: str | None = None  # the key id that signed, once its signature held
    pinned: tuple[str, ...] | None = None  # names of the keys accepted; None: not checked
    warnings: list[str] = field(default_factory=list)
    # Not read at all: not a canonical ustar of the layout, over a limit, or signed JSON of
    # the wrong shape (exit 15), as opposed to a check that failed (exit 1).
    refused: bool = False
    hint: str = ""  # what to do about the failed check: the hint of the error that failed it

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    @property
    def failure(self) -> str | None:
        return next((f"{part}: {detail}" for part, ok, detail in self.checks if not ok), None)

    @property
    def untrusted(self) -> bool:
        """Consistent in every byte, but signed by a key nobody pinned."""
        return [part for part, ok, _ in self.checks if not ok] == ["signer"]

    def passed(self, part: str, detail: str = "") -> None:
        self.checks.append((part, True, detail))

    def failed(self, part: str, detail: str, error: ReplayError) -> None:
        self.checks.append((part, False, detail))
        self.hint = error.hint


def verify_bundle(
    path: Path, expected_key: bytes | None = None, *, any_signer: bool = False
) -> Verification:
    """Verify every byte of the bundle at ``path``, then that a pinned key signed it: the
    trusted signers (replay.core.trust), or only ``expected_key`` when given. ``any_signer``
    skips that last check (a warning says so). Never raises on a bad bundle."""
    if any_signer and expected_key is not None:
        raise UsageError(
            "--key and --insecure-any-signer contradict each other",
            hint="--key pins one signer; drop --insecure-any-signer",
        )
    # Read first: a broken trust configuration is the user's error, before any bundle byte.
    pins = None if any_signer else pinned(expected_key)
    result = Verification()
    try:
        result.files = bundle.load(path)  # streams the file once: bounded time and memory
        result.passed("container", f"{len(result.files)} regular files, canonical layout")
        _verify(result)
        _check_signer(result, pins)
    except BundleError as exc:
        result.failed(exc.part, exc.message.partition(": ")[2] or exc.message, exc)
        result.refused = isinstance(exc, MalformedBundleError)
    return result


def _need(files: Members, name: str) -> None:
    if name not in files:
        raise BundleError(name, "missing from the bundle")


def _get(files: Members, name: str) -> bytes:
    _need(files, name)
    return files[name]


def _json(files: Members, name: str, shape: Any = None) -> Any:
    """A JSON member, refused unless small enough to parse and of the shape verify reads
    (``SHAPES`` by name, else ``shape``): a signature says who wrote it, not that it fits."""
    return _parse(_small(files, name), name, SHAPES.get(name, shape))


def _small(files: Members, name: str) -> bytes:
    _need(files, name)
    if files.size(name) > MAX_JSON:
        raise MalformedBundleError(
            name,
            f"is {files.size(name):,} bytes; a JSON member may "
            f"hold at most {MAX_JSON:,} (refused unparsed)",
        )
    return files[name]


def _parse(raw: bytes, name: str, shape: Any, where: str = "") -> Any:
    try:  # NaN and Infinity are not JSON, and canonical_json would refuse them later
        value = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise MalformedBundleError(name, f"{where}is not JSON") from None
    problem = shapes.mismatch(value, shape) if shape is not None else None
    if problem:
        raise MalformedBundleError(name, f"{where}is not of the expected shape: {problem}")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _check_signer(result: Verification, pins: tuple[TrustedKey, ...] | None) -> None:
    """The last check, once every byte is consistent: did a key the user pinned sign it?
    The key in the bundle proves only that the bundle is whole, not who made it."""
    signer = result.signer or ""
    if pins is None:
        result.warnings.append(
            f"signer not checked: {signer} signed this bundle and "
            "--insecure-any-signer accepted it without a pinned key"
        )
        return
    result.pinned = tuple(p.name if p.source != PINNED else f"--key {p.key_id}" for p in pins)
    match = next((p for p in pins if p.key_id == signer), None)
    if match is None:
        error = UntrustedSignerError(signer, result.pinned)
        result.failed("signer", f"consistent, {error.message}", error)
    elif match.source == PINNED:
        result.passed("signer", f"{signer} is the key --key pins")
    else:
        result.passed("signer", f"{signer} is pinned as {match.name!r} ({match.source})")


def _verify(result: Verification) -> None:
    files = result.files
    manifest = _json(files, "MANIFEST.json")
    try:
        public = keys.load_public(_get(files, "public_key.pem"))
    except UsageError:  # a bad bundle is a failed check, never an exception
        raise BundleError("public_key.pem", "is not an Ed25519 public key") from None
    kid = keys.key_id(public)
    if manifest.get("key_id") != kid:
        raise BundleError("MANIFEST.json", "names another key than public_key.pem")
    try:
        signature = base64.b64decode(_get(files, "MANIFEST.sig"), validate=True)
    except ValueError:
        raise BundleError("MANIFEST.sig", "is not base64") from None
    if not keys.verify_signature(public, signature, files["MANIFEST.json"]):
        raise BundleError("MANIFEST.sig", "the signature over MANIFEST.json does not verify")
    result.passed("signature", f"MANIFEST.json signed by {kid}")
    result.signer = kid
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
        result.passed(
            "images",
            f"{len(images)} image(s): config and every layer match the image ID the runs recorded",
        )
    _verify_statement(files, entries)
    result.passed("statement.intoto.json", "subjects are the runs' outputs")


def _verify_digests(files: Members, listed: dict[str, str]) -> None:
    for name in files:
        if name not in listed and name not in SIGNED:
            raise BundleError(name, "is not in the signed digest list")
    for name, digest in listed.items():
        _need(files, name)
        if files.digest(name) != digest:  # hashed while the bundle was read
            raise BundleError(name, "does not match its digest in MANIFEST.json")


def _verify_checkpoint(files: Members, public: Any, manifest: dict[str, Any]) -> Checkpoint:
    try:
        cp = Checkpoint.from_json(_json(files, "ledger/checkpoint.json"))
    except (KeyError, TypeError, ValueError):
        raise BundleError("ledger/checkpoint.json", "is not a checkpoint") from None
    if not cp.verify(public):
        raise BundleError("ledger/checkpoint.json", "signature does not verify")
    if manifest.get("checkpoint") != {"tree_size": cp.tree_size, "root": cp.root}:
        raise BundleError("ledger/checkpoint.json", "is not the checkpoint MANIFEST.json names")
    return cp


def _verify_ledger(files: Members, cp: Checkpoint) -> list[dict[str, Any]]:
    name = "ledger/entries.jsonl"
    proofs = _json(files, "ledger/proofs.json")
    entries = _entries(files, name)
    seqs = [e["seq"] for e in entries]
    if seqs != sorted(set(seqs)):
        raise BundleError(name, f"entries are not in ledger order ({seqs})")
    if seqs and seqs[-1] > cp.tree_size:
        raise BundleError(
            "ledger/checkpoint.json",
            f"stale checkpoint: it covers "
            f"{cp.tree_size} entries, the bundle holds entry {seqs[-1]}",
        )
    top = bytes.fromhex(cp.root[7:])
    for e in entries:
        where = f"entry {e['seq']} (run {e['run_id']})"
        if (
            entry_hash(e) != e["hash"]
            or sha256(canonical_json(e["manifest"])) != e["manifest_sha256"]
            or e["manifest"]["run_id"] != e["run_id"]
        ):
            raise BundleError(name, f"{where} does not match its own hashes")
        proof = proofs.get(e["run_id"], {})
        path = [bytes.fromhex(h) for h in proof.get("proof", [])]
        if proof.get("index") != e["seq"] - 1 or not merkle.verify_inclusion(
            e["seq"] - 1, cp.tree_size, merkle.leaf_hash(line_of(e)), path, top
        ):
            raise BundleError(
                "ledger/proofs.json", f"{where} is not proven in the checkpoint's tree"
            )
    return entries


def _entries(files: Members, name: str) -> list[dict[str, Any]]:
    return [
        _parse(line, name, shapes.ENTRY, f"line {i}: ")
        for i, line in enumerate(_small(files, name).splitlines(), 1)
    ]


def _verify_run(files: Members, e: dict[str, Any], redacted: set[str]) -> None:
    m, run = e["manifest"], e["run_id"]
    expected = {INPUT: (m["input"]["digest"], m["input"].get("parts"))} | {
        s["name"]: (s["output"], s.get("output_parts")) for s in m["steps"] if s["output"]
    }
    for kind, (digest, parts) in expected.items():
        _verify_table(files, f"runs/{run}/{kind}.arrow", digest, parts, redacted)
    tape = f"runs/{run}/tape.json"
    if "tape" in m and (tape in files or not redacted):
        _need(files, tape)
        if files.digest(tape) != m["tape"]:
            raise BundleError(tape, "does not match the manifest's tape digest")
    name = _object_name(m["version"])
    try:
        spec = msgspec.convert(_json(files, name, shapes.SPEC), Spec)
    except msgspec.ValidationError as exc:
        raise MalformedBundleError(name, f"is not a pipeline spec ({exc})") from None
    # Kept reference data is left out of redacted bundles.
    for digest in [*spec.objects(data=not redacted), m["env"]]:
        _need(files, _object_name(digest))
    _need(files, f"reports/{run}.json")


def _verify_table(
    files: Members, name: str, digest: str, parts: dict[str, Any] | None, redacted: set[str]
) -> None:
    _need(files, name)
    # A table's digest is the sha256 of its canonical Arrow IPC bytes, which export writes
    # as they are: bytes hashing to it are the recorded rows, proven without parsing them.
    if parts is None and files.digest(name) == digest:
        return
    try:
        table = pa.ipc.open_stream(files[name]).read_all()
    except pa.ArrowException:
        raise BundleError(name, "is not an Arrow IPC stream") from None
    if _content_digest(name, table, parts, redacted) != digest:
        raise BundleError(name, f"rows do not match the manifest of run {name.split('/')[1]}")


def _content_digest(
    name: str, table: pa.Table, parts: dict[str, Any] | None, redacted: set[str]
) -> str:
    """The table's digest; a redacted column enters by its recorded digest, every other
    column is recomputed from the bytes in the bundle."""
    if parts is None or not redacted & set(parts["personal"]):
        return table_digest(table, tuple(parts["personal"]) if parts else ())
    columns = json_digest(table.column_names)
    if parts.get("columns", columns) != columns:  # runs recorded before 2026-11-26 name them
        raise BundleError(name, "columns differ from the recorded ones")
    rest = table.drop_columns(list(parts["personal"]))
    personal = {
        c: (d if c in redacted else table_digest(table.select([c])))
        for c, d in parts["personal"].items()
    }
    return combine_parts({"columns": columns, "rest": table_digest(rest), "personal": personal})


def _object_name(digest: str) -> str:
    return "objects/" + relative_path(digest)


def _verify_objects(files: Members) -> None:
    for name in files:
        if name.startswith("objects/"):
            parts = name.split("/")
            if len(parts) != 4 or files.digest(name) != f"sha256:{parts[2]}{parts[3]}":
                raise BundleError(name, "does not hash to its name")


def _verify_images(
    files: Members, listed: dict[str, Any], digests: dict[str, str], entries: list[dict[str, Any]]
) -> None:
    recorded = set()
    for e in entries:
        env = _json(files, _object_name(e["manifest"]["env"]), shapes.ENVIRONMENT)
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
            raise BundleError(
                name, f"image {found} is not the image any exported run was recorded in"
            )


def _verify_statement(files: Members, entries: list[dict[str, Any]]) -> None:
    name = "statement.intoto.json"
    st = _json(files, name)
    want = sorted(
        e["manifest"]["steps"][-1]["output"][7:]
        for e in entries
        if e["manifest"]["steps"][-1]["output"]
    )
    got = sorted(s["digest"]["sha256"] for s in st.get("subject", []))
    if st.get("_type") != "https://in-toto.io/Statement/v1" or got != want:
        raise BundleError(name, "subjects are not the runs' recorded outputs")
