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
    images/<sha256>.tar      with --with-image: ``docker save`` of each image the runs were
                             recorded in (MANIFEST.json maps each to its image ID)

Data a run read through DVC is carried as an object named by its sha256, so a bundle
replays offline, without the bank's DVC remote.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from replay.catalog.queries import entries as ledger_entries
from replay.catalog.queries import runs as runs_in
from replay.core import keys, merkle
from replay.core.digest import canonical_json, sha256, table_bytes
from replay.core.kinds import PRODUCTION
from replay.core.manifest import plain
from replay.engine.recorded import RecordedRun, load_environment, load_run
from replay.engine.replay import ReplayReport, replay
from replay.errors import CorruptionError, UntrustedSignerError, UsageError
from replay.evidence import bundle
from replay.store import checkpoint
from replay.store.history import check_in_chain, verified_tree
from replay.store.ledger import line_of
from replay.store.objects import relative_path
from replay.store.store import Store

if TYPE_CHECKING:
    from replay.evidence.verify import Verification

PREDICATE = "https://pipeline-replay.dev/run/v1"


@dataclass(frozen=True)
class Exported:
    """A bundle written: where, which runs, its size in bytes and files, who signed it and
    the checkpoint that covers its runs."""

    path: Path
    runs: tuple[str, ...]
    size: int
    files: int
    key_id: str
    checkpoint: checkpoint.Checkpoint


def _objects_of(run: RecordedRun, store: Store, redacting: bool) -> set[str]:
    out = {run.manifest.version, run.manifest.env}
    lock = load_environment(store, run.manifest.env).packages.lock_sha256
    if store.objects.has(lock):
        out.add(lock)
    # Kept reference data may itself be personal: a redacted bundle leaves it out.
    return out | set(run.spec.objects(data=not redacting))


class Redactor:
    """Keyed pseudonyms: the same value gives the same pseudonym under one signing key,
    and no one without the key can go back."""

    def __init__(self, columns: list[str], private: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        raw = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.columns = columns
        self._key = hashlib.sha256(b"pipeline-replay redaction v1\0" + raw).digest()

    def pseudonym(self, value: Any) -> str | None:
        if value is None:
            return None
        mac = hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()
        return f"pseud:{mac[:20]}"

    def __call__(self, table: pa.Table) -> pa.Table:
        for c in self.columns:
            if c in table.column_names:
                values = pa.array(
                    [self.pseudonym(v) for v in table.column(c).to_pylist()], pa.string()
                )
                table = table.set_column(table.column_names.index(c), c, values)
        return table


def _run_files(run: RecordedRun, redactor: Redactor | None) -> dict[str, bytes]:
    files = {}
    for kind in run.block.kinds(run.run_id):
        table = run.table(kind)  # checks the manifest digest
        data = table_bytes(redactor(table) if redactor else table)
        files[f"runs/{run.run_id}/{kind}.arrow"] = data.to_pybytes()
    # A tape's answers may name the person (they are keyed by the request): withheld.
    if run.manifest.tape and redactor is None:
        files[f"runs/{run.run_id}/tape.json"] = run.block.blob(run.run_id, "tape")
    return files


def _checkpoint_for(store: Store, private: Ed25519PrivateKey, newest: int) -> checkpoint.Checkpoint:
    found = checkpoint.largest(store.fs, [keys.key_id(private.public_key())], newest)
    return found[1] if found else checkpoint.sign(store, private, verified_tree(store))


def statement(runs: list[RecordedRun], reports: dict[str, ReplayReport]) -> dict[str, Any]:
    """An in-toto Statement v1: the runs' final outputs are its subjects."""
    subjects, predicate = [], []
    for run in runs:
        last = run.manifest.steps[-1]
        if last.output:
            subjects.append(
                {"name": f"run/{run.run_id}/{last.name}", "digest": {"sha256": last.output[7:]}}
            )
        predicate.append(
            {
                "run_id": run.run_id,
                "pipeline": run.manifest.pipeline,
                "version": run.manifest.version,
                "clock": run.manifest.clock,
                "status": run.manifest.status,
                "ledger_seq": run.entry.seq,
                "ledger_hash": run.entry.hash,
                "replay_verdict": reports[run.run_id].verdict,
            }
        )
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": PREDICATE,
        "predicate": {"runs": predicate},
    }


def export(
    store: Store,
    run_ids: list[str],
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    pipeline: str | None = None,
    kind: str | None = PRODUCTION,
    key: Path | None = None,
    question: dict[str, Any] | None = None,
    redact: list[str] | None = None,
    with_image: bool = False,
    client: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Exported:
    """Write a signed evidence bundle for ``run_ids`` to ``out``, signed with the private key
    at ``key`` (default: the user's signing key).

    ``since``/``until`` add every run of an incident window (logical clock; of ``pipeline``
    only, if given, and of ``kind``, None for any). ``redact`` replaces the named personal
    columns by keyed pseudonyms; the bundle still proves every row belongs to the signed run
    (see ``digest_parts``). ``with_image`` adds the images the runs were recorded in, from
    the Docker engine (``client``). ``progress`` is called with a short line at each stage
    and before each run is replayed (each run is replayed once, and its report serves the
    bundle, the statement and the human report).
    """
    # Runs named alone are found in the ledger itself (near where their ids' times fall: 2 ms
    # for one at a million runs; see replay.store.lookup), not through the catalog, which
    # might first have to index that million;
    # a window is the catalog's answer, which also says where each line ends (a seek each).
    find_entries: Callable[[Store, list[str]], list[dict[str, Any]]] = Store.find_entries
    if since is not None or until is not None:
        window = runs_in(store, pipeline=pipeline, since=since, until=until, kind=kind, limit=None)
        run_ids = [*run_ids, *(r["run_id"] for r in window)]
        find_entries = ledger_entries
    if not run_ids:
        raise UsageError("no runs to export", hint="name runs, or a --since/--until window")
    tell = progress or (lambda _: None)
    private = keys.load_private(key)
    # Entry hashes and the chain first, without requiring a checkpoint to cover the runs:
    # this export signs the checkpoint that covers them, and only then are they loaded.
    tell("the ledger entries of the runs")
    entries = sorted(find_entries(store, list(dict.fromkeys(run_ids))), key=lambda e: int(e["seq"]))
    for entry in entries:
        check_in_chain(store, entry)
    _checkpoint_for(store, private, int(entries[-1]["seq"]))
    runs = [load_run(store, e) for e in entries]
    redactor = Redactor(sorted(set(redact)), private) if redact else None
    for run in runs:
        undeclared = set(redact or ()) - set(run.personal)
        if undeclared:
            raise UsageError(
                f"run {run.run_id} did not declare {', '.join(sorted(undeclared))} "
                "personal when it was recorded, so a redacted copy cannot be "
                "proven",
                hint="declare it with Pipeline(..., personal=[...]); "
                f"declared: {', '.join(run.personal) or 'none'}",
            )
    cp = _checkpoint_for(store, private, runs[-1].entry.seq)
    tell(f"the rows, objects and proofs of {len(runs)} runs")
    tree = verified_tree(store)  # the runs were checked in it: the ledger is not read again
    if tree.size < cp.tree_size:
        raise CorruptionError(
            str(store.ledger.path),
            f"holds {tree.size} entries but its checkpoint covers {cp.tree_size}: "
            "entries were removed",
        )
    files: dict[str, bytes] = {}
    proofs: dict[str, Any] = {}
    for run in runs:
        leaf = merkle.leaf_hash(line_of(plain(run.entry)))
        index = run.entry.seq - 1
        if index >= cp.tree_size or tree.leaf(index) != leaf:
            raise CorruptionError(
                str(store.ledger.path),
                f"entry {run.entry.seq} is not the one the checkpoint covers",
            )
        proofs[run.run_id] = {
            "index": index,
            "proof": [h.hex() for h in tree.inclusion_proof(index, cp.tree_size)],
        }
        files.update(_run_files(run, redactor))
        for digest in _objects_of(run, store, redactor is not None):
            files["objects/" + relative_path(digest)] = store.get_object(digest)
        if redactor is None:
            _add_dvc_data(store, run, files)
    if with_image:
        tell("the images the runs were recorded in")
    images = _images(store, runs, client) if with_image else {}
    files.update({name: data for name, (_, data) in images.items()})
    reports = {}
    for n, run in enumerate(runs, 1):
        tell(f"run {n}/{len(runs)} {run.run_id}")
        reports[run.run_id] = replay(store, run.run_id)
    files["ledger/entries.jsonl"] = b"".join(
        canonical_json(plain(r.entry) | {"manifest": plain(r.manifest)}) + b"\n" for r in runs
    )
    files["ledger/proofs.json"] = canonical_json(proofs)
    files["ledger/checkpoint.json"] = canonical_json(cp.as_json())
    files["public_key.pem"] = keys.public_pem(private.public_key())
    for run_id, rep in reports.items():
        files[f"reports/{run_id}.json"] = canonical_json(rep.as_json())
    files["statement.intoto.json"] = canonical_json(statement(runs, reports))
    question = {**(question or {}), "redacted": redactor.columns if redactor else []}
    files.update(_human_report(store, runs, reports, cp, question, redactor, tell))
    tell("signing the bundle")
    return _seal(
        files,
        runs,
        cp,
        private,
        out,
        redactor.columns if redactor else [],
        {name: info for name, (info, _) in images.items()},
    )


def _human_report(
    store: Store,
    runs: list[RecordedRun],
    reports: dict[str, ReplayReport],
    cp: checkpoint.Checkpoint,
    question: dict[str, Any],
    redactor: Redactor | None,
    tell: Callable[[str], None],
) -> dict[str, bytes]:
    from replay.evidence import report
    from replay.evidence.facts import context

    tell("the human report")
    ctx = context(store, runs, reports, cp, question, redactor)
    html = report.render_html(ctx).encode()
    tell("the human report as PDF")
    return {"report.html": html, "report.pdf": report.render_pdf(ctx)}


def _add_dvc_data(store: Store, run: RecordedRun, files: dict[str, bytes]) -> None:
    """The bytes of data read through DVC, as objects named by their sha256 (runs of one
    day share them: each is read or fetched once)."""
    from replay.engine.recorded import data_bytes

    for s in run.spec.steps:
        for d in s.data.values():
            name = "objects/" + relative_path(d.sha256)
            if d.dvc and not d.object and name not in files:
                files[name] = data_bytes(store, d)


def _images(
    store: Store, runs: list[RecordedRun], client: Any
) -> dict[str, tuple[dict[str, str], bytes]]:
    from replay.docker.client import engine
    from replay.docker.sandbox import save_images

    recorded = []
    for run in runs:
        img = load_environment(store, run.manifest.env).image
        if not img.id and "@sha256:" not in img.digest:
            raise UsageError(
                f"run {run.run_id} was recorded {img.digest}: there is no image to add",
                hint="export it without --with-image",
            )
        recorded.append(img)
    if client is None:
        with contextlib.closing(engine()) as own:
            saved = save_images(own, recorded)
    else:
        saved = save_images(client, recorded)
    return {
        f"images/{sha256(data)[7:]}.tar": ({"id": image_id, "digest": digest}, data)
        for image_id, (digest, data) in saved.items()
    }


def bundle_images(files: dict[str, bytes]) -> dict[str, bytes]:
    """The verified image tarballs of a bundle, by image ID."""
    listed = json.loads(files["MANIFEST.json"]).get("images", {})
    return {info["id"]: files[name] for name, info in listed.items()}


def _seal(
    files: dict[str, bytes],
    runs: list[RecordedRun],
    cp: checkpoint.Checkpoint,
    private: Ed25519PrivateKey,
    out: Path,
    redacted: list[str],
    images: dict[str, dict[str, str]],
) -> Exported:
    manifest = canonical_json(
        {
            "format": 1,
            "created": datetime.now(UTC).isoformat(),
            "redacted": redacted,
            "images": images,
            "runs": [r.run_id for r in runs],
            "key_id": keys.key_id(private.public_key()),
            "checkpoint": {"tree_size": cp.tree_size, "root": cp.root},
            "files": {name: sha256(data) for name, data in sorted(files.items())},
        }
    )
    files = {
        **files,
        "MANIFEST.json": manifest,
        "MANIFEST.sig": base64.b64encode(private.sign(manifest)),
    }
    data = bundle.write(files)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    return Exported(
        out,
        tuple(r.run_id for r in runs),
        len(data),
        len(files),
        keys.key_id(private.public_key()),
        cp,
    )


def open_bundle(
    path: Path, *, key: bytes | None = None, insecure_replay_unverified: bool = False
) -> tuple[Store, Any]:
    """A temporary store holding a bundle's runs, made only after the bundle verified
    against a pinned signer: a trusted one (replay.core.trust), or only ``key`` when given.

    ``insecure_replay_unverified`` loads a bundle that failed verification, or whose signer
    nobody pinned, anyway: its code will be unpickled when replayed, so only do that for
    bundles you made yourself.
    """
    from replay.evidence.verify import verify_bundle
    from replay.store.segments import RunData, StoredTable

    check = verify_bundle(path, key)
    if not check.ok and not insecure_replay_unverified:
        _refuse(check)
    _refuse_redacted(check)
    # A private folder (mkdtemp: 0700), removed when the process ends: the store must outlive
    # this call, since the caller replays from it.
    folder = Path(tempfile.mkdtemp(prefix="replay-bundle-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = Store.open(folder / "store")
    for name, data in check.files.items():
        if name.startswith("objects/"):
            store.put_object(data)
    for line in check.files.get("ledger/entries.jsonl", b"").splitlines():
        e = json.loads(line)
        prefix = f"runs/{e['run_id']}/"
        tables = {
            n[len(prefix) : -6]: StoredTable.of(pa.ipc.open_stream(d).read_all())
            for n, d in check.files.items()
            if n.startswith(prefix) and n.endswith(".arrow")
        }
        blobs = {"tape": check.files[prefix + "tape.json"]} if "tape" in e["manifest"] else {}
        store.commit(RunData(e["run_id"], tables, blobs), e["manifest"]).result()
    return store, check


def _refuse_redacted(check: Verification) -> None:
    """A redacted bundle proves its runs but cannot replay them: pseudonyms and withheld
    tapes and reference data are not what the steps read."""
    from replay.evidence.bundle import BundleError

    redacted = json.loads(check.files.get("MANIFEST.json", b"{}")).get("redacted")
    if redacted:
        raise BundleError(
            "MANIFEST.json",
            f"the bundle is redacted ({', '.join(redacted)}): "
            "it proves its runs, but pseudonyms and withheld tapes cannot be "
            "replayed",
            hint="replay from the unredacted bundle or the store",
        )


def _refuse(check: Verification) -> None:
    """Raise why a bundle is not replayed: its signer is not pinned (exit 14), or a check of
    its bytes failed (the bundle error's code)."""
    from replay.evidence.bundle import BundleError

    if check.untrusted:
        raise UntrustedSignerError(check.signer or "", check.pinned or ())
    part, _, reason = (check.failure or "bundle: failed").partition(": ")
    raise BundleError(
        part,
        f"{reason} — refusing to replay an unverified bundle",
        hint="check it with `replay verify`; --insecure-replay-unverified "
        "replays it anyway, running its code",
    )
