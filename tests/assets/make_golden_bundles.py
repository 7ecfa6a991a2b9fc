"""Regenerate the golden bad bundles: `python tests/assets/make_golden_bundles.py`.

Each file is named after the one defect it carries; tests/test_bundle.py expects each to be
refused with its own message. Bundles that need a valid signature over a bad content are
re-signed with a throwaway key whose public half is kept as golden-signing.pub.
"""

from __future__ import annotations

import base64
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from replay.digest import canonical_json, sha256  # noqa: E402

import replay  # noqa: E402
from replay import bundle, checkpoint, keys  # noqa: E402
from replay.evidence import export  # noqa: E402


class Bomb:
    """Unpickling this writes the file named by $REPLAY_BOMB: proof that something loaded."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, ("import os; open(os.environ['REPLAY_BOMB'], 'w').write('loaded')",))


def double(table: pa.Table) -> pa.Table:
    return table.append_column("y", pa.array([2 * x for x in table["x"].to_pylist()]))


def resign(files: dict[str, bytes], private) -> bytes:  # type: ignore[no-untyped-def]
    files = {k: v for k, v in files.items() if k not in ("MANIFEST.json", "MANIFEST.sig")}
    manifest = json.loads(_manifest)
    manifest["files"] = {n: sha256(d) for n, d in sorted(files.items())}
    cp = json.loads(files["ledger/checkpoint.json"])
    manifest["checkpoint"] = {"tree_size": cp["tree_size"], "root": cp["root"]}
    body = canonical_json(manifest)
    return bundle.write(
        {**files, "MANIFEST.json": body, "MANIFEST.sig": base64.b64encode(private.sign(body))}
    )


def raw_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    import io

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def main() -> None:
    global _manifest
    tmp = Path(tempfile.mkdtemp())
    key_path = keys.init_key(tmp / "golden-signing.pem")
    other = keys.init_key(tmp / "golden-other.pem")
    private = keys.load_private(key_path)
    store = replay.Store.open(tmp / "store")
    pipe = replay.Pipeline("golden", [replay.Step("double", double)])
    a = replay.record(pipe, pa.table({"id": ["a"], "x": [1]}), store=store, record_key="id")
    old_cp = checkpoint.sign(store, private)
    b = replay.record(pipe, pa.table({"id": ["b"], "x": [2]}), store=store, record_key="id")
    good = export(store, [a.run_id, b.run_id], tmp / "good.bundle", key=key_path).path
    files = bundle.read(good.read_bytes())
    _manifest = files["MANIFEST.json"]
    out: dict[str, bytes] = {}

    out["truncated.bundle"] = good.read_bytes()[: len(good.read_bytes()) // 2]
    out["wrong-key.bundle"] = good.read_bytes()

    traversal = tarfile.TarInfo("../escaped.txt")
    traversal.size = 5
    out["path-traversal.bundle"] = raw_tar([(traversal, b"owned")])
    link = tarfile.TarInfo("objects/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    out["symlink.bundle"] = raw_tar([(link, b"")])

    entries = files["ledger/entries.jsonl"].splitlines(keepends=True)
    out["reordered-ledger.bundle"] = resign(
        {**files, "ledger/entries.jsonl": b"".join(reversed(entries))}, private
    )
    first, second = (json.loads(e) for e in entries)
    first["manifest"], second["manifest"] = second["manifest"], first["manifest"]
    out["swapped-manifest.bundle"] = resign(
        {
            **files,
            "ledger/entries.jsonl": canonical_json(first) + b"\n" + canonical_json(second) + b"\n",
        },
        private,
    )
    out["stale-checkpoint.bundle"] = resign(
        {**files, "ledger/checkpoint.json": canonical_json(old_cp.as_json())}, private
    )

    spec = json.loads(files[_object(a.manifest.version)])
    code = _object(spec["steps"][0]["code"])
    import pickle

    out["pickle-bomb.bundle"] = resign({**files, code: pickle.dumps(Bomb())}, private)

    for name, data in out.items():
        (HERE / name).write_bytes(data)
    (HERE / "golden-signing.pub").write_bytes(keys.public_path(key_path).read_bytes())
    (HERE / "golden-other.pub").write_bytes(keys.public_path(other).read_bytes())


def _object(digest: str) -> str:
    return f"objects/sha256/{digest[7:9]}/{digest[9:]}"


_manifest = b""

if __name__ == "__main__":
    main()
