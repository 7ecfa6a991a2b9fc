"""Bundles built to hurt the verifier: refused with exit 15 and one line, fast and small.

Every bundle here is a real file under tmp_path: raw ustar headers written byte by byte for
what tarfile will not write (sparse, lying sizes, devices), tarfile for GNU and pax headers,
and re-signed copies of a real export for signed JSON of the wrong shape (an attacker signs
with their own key; the regulator pins it with --key to look at it).
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import rows, scale
from typer.testing import CliRunner, Result

import replay
from replay.cli.app import app
from replay.core import keys
from replay.core.digest import canonical_json, sha256
from replay.evidence import bundle
from replay.evidence.bundle import BundleError
from replay.evidence.export import export
from replay.evidence.verify import verify_bundle

REFUSED = 15
SIGNED = ("MANIFEST.json", "MANIFEST.sig")


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # a reason is one line; rich wraps at 80 otherwise


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, bytes]]:
    """A real export of two toy runs, its signing key, and its files."""
    tmp = tmp_path_factory.mktemp("limits")
    key = keys.init_key(tmp / "signing.pem")
    store = replay.Store.open(tmp / "store")
    pipe = replay.Pipeline("toy", [replay.Step("scale", scale, params={"k": 2.0})])
    ids = [replay.record(pipe, rows(3, i), store=store, record_key="id").run_id for i in range(2)]
    path = export(store, ids, tmp / "evidence.bundle", key=key).path
    return path, key, _members(path.read_bytes())


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore


def canonical_tar(files: dict[str, bytes]) -> bytes:
    """What export writes, made with tarfile, independently of replay.evidence.bundle."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def resign(files: dict[str, bytes], key: Path, manifest: Any = None) -> dict[str, bytes]:
    """``files`` under a fresh digest list (or ``manifest`` as given), signed by ``key``."""
    rest = {n: d for n, d in files.items() if n not in SIGNED}
    if manifest is None:
        manifest = {
            **json.loads(files["MANIFEST.json"]),
            "files": {n: sha256(d) for n, d in sorted(rest.items())},
        }
    body = canonical_json(manifest)
    return {
        **rest,
        "MANIFEST.json": body,
        "MANIFEST.sig": base64.b64encode(keys.load_private(key).sign(body)),
    }


def header(
    name: str,
    size: int = 0,
    kind: bytes = b"0",
    *,
    magic: bytes = b"ustar\x0000",
    link: bytes = b"",
) -> bytearray:
    """A ustar header written field by field, checksum last."""
    h = bytearray(512)
    h[0 : len(name)] = name.encode()
    h[100:148] = b"0000644\x00" + b"0000000\x00" * 2 + b"%011o\x00" % size + b"0" * 11 + b"\x00"
    h[156:157], h[157 : 157 + len(link)], h[257:265] = kind, link, magic
    return checksum(h)


def checksum(h: bytearray) -> bytearray:
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\x00 " % sum(h)
    return h


def raw_tar(*members: tuple[bytes, bytes]) -> bytes:
    """Headers and contents as given, padded and ended the way tar ends a file."""
    out = b"".join(bytes(h) + c + bytes(-len(c) % 512) for h, c in members) + bytes(1024)
    return out + bytes(-len(out) % 10240)


def refused(args: list[str], *, seconds: float = 5.0, peak: int | None = 32 << 20) -> Result:
    """Run the CLI; it must exit 15 within ``seconds`` and allocate at most ``peak`` bytes
    (None: not traced, tracemalloc slows a walk over many small members fivefold)."""
    if peak is not None:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        result = CliRunner().invoke(app, args)
    finally:
        took = time.perf_counter() - start
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert result.exit_code == REFUSED, (result.exit_code, result.output, result.exception)
    assert took < seconds, f"took {took:.1f} s"
    assert peak is None or top < peak, f"allocated {top:,} bytes at the peak"
    return result


def reason(result: Result) -> str:
    """The one line that says why: the FAIL line of verify, or the error line."""
    lines = [
        ln for ln in result.stdout.splitlines() if ln.startswith("FAIL")
    ] or result.stderr.splitlines()[:1]
    assert len(lines) == 1, result.output
    return lines[0]


def verify(path: Path, key: Path, *more: str, **bounds: Any) -> str:
    return reason(
        refused(["verify", str(path), "--key", str(keys.public_path(key)), *more], **bounds)
    )


def test_a_sparse_member_is_refused_unread(signed, tmp_path) -> None:
    # 0 stored bytes that tar expands to 4 GiB of zeros: a 10 KB file that made verify
    # reach 8.3 GB of memory.
    real = (4 << 30) - 1
    h = header("objects/sparse", 0, b"S", magic=b"ustar  \x00")
    h[386:410] = b"%011o\x00" % (real - 1) + b"%011o\x00" % 0
    h[483:495] = b"%011o\x00" % real
    path = tmp_path / "sparse.bundle"
    path.write_bytes(raw_tar((checksum(h), b"")))
    assert path.stat().st_size == 10240
    line = verify(path, signed[1], seconds=2.0)
    assert "objects/sparse  GNU sparse member in bundle (refused" in line


def test_a_header_claiming_more_bytes_than_the_file_holds_is_refused_before_reading(
    signed, tmp_path
) -> None:
    path = tmp_path / "liar.bundle"
    path.write_bytes(raw_tar((header("report.html", 1 << 30), b"<html>")))
    line = verify(path, signed[1], seconds=2.0)
    assert "truncated or not a bundle (report.html's header says 1,073,741,824 bytes" in line


def test_more_members_than_the_cap_are_refused(signed, tmp_path) -> None:
    names = sorted(
        f"objects/sha256/{i:064x}"[:17] + "/" + f"{i:064x}"[2:]
        for i in range(bundle.MAX_MEMBERS + 1)
    )
    path = tmp_path / "many.bundle"
    path.write_bytes(raw_tar(*((header(n), b"") for n in names)))
    line = verify(path, signed[1], seconds=10.0, peak=None)
    assert f"bundle  more than {bundle.MAX_MEMBERS:,} members" in line


def test_a_bundle_over_the_size_cap_is_refused_unread(signed, tmp_path) -> None:
    size = bundle.MAX_BUNDLE + 10240
    path = tmp_path / "huge.bundle"
    with path.open("wb") as f:  # sparse on disk: the size is real, the blocks are not
        f.write(bytes(header("MANIFEST.json", 10)))
        f.truncate(size)
    line = verify(path, signed[1], seconds=2.0)
    assert f"bundle  {size:,} bytes, more than the {bundle.MAX_BUNDLE:,}" in line


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (b"2", "symbolic link in bundle (to '/etc/passwd'"),
        (b"1", "hard link in bundle (to 'MANIFEST.json'"),
        (b"3", "character device in bundle"),
        (b"4", "block device in bundle"),
        (b"5", "directory in bundle"),
        (b"6", "FIFO in bundle"),
        (b"7", "member of type b'7' in bundle"),
    ],
)
def test_links_devices_and_other_non_files_are_refused(signed, tmp_path, kind, what) -> None:
    link = {b"1": b"MANIFEST.json", b"2": b"/etc/passwd"}.get(kind, b"")
    path = tmp_path / "odd.bundle"
    path.write_bytes(raw_tar((header("report.html", 0, kind, link=link), b"")))
    assert f"report.html  {what}" in verify(path, signed[1], seconds=2.0)


def test_a_signed_name_outside_the_layout_is_refused_and_never_extracted(signed, tmp_path) -> None:
    _, key, files = signed
    path = tmp_path / "ssh.bundle"
    path.write_bytes(
        canonical_tar(
            resign({**files, ".ssh/authorized_keys": b"ssh-ed25519 AAAA attacker\n"}, key)
        )
    )
    target = tmp_path / "home"
    line = verify(path, key, "--extract", str(target))
    assert ".ssh/authorized_keys  is not a name of the bundle layout (refused)" in line
    assert not (target / ".ssh").exists()
    with pytest.raises(BundleError, match="not a name of the bundle layout"):
        bundle.write({".ssh/authorized_keys": b"x"})
    with pytest.raises(BundleError, match="not a name of the bundle layout"):
        bundle.extract({".ssh/authorized_keys": b"x"}, target)
    assert not (target / ".ssh").exists()


def test_a_name_over_100_characters_uses_the_ustar_prefix_or_is_refused(tmp_path) -> None:
    # Step names reach 64 characters, so runs/<id>/<step>.arrow reaches 112: export puts
    # "runs/<id>" in the ustar prefix field, as tar does, and verify reads it back.
    key = keys.init_key(tmp_path / "k.pem")
    store = replay.Store.open(tmp_path / "store")
    step = "s" * 64
    pipe = replay.Pipeline("long", [replay.Step(step, scale, params={"k": 2.0})])
    run_id = replay.record(pipe, rows(2), store=store, record_key="id").run_id
    path = export(store, [run_id], tmp_path / "long.bundle", key=key).path
    name = f"runs/{run_id}/{step}.arrow"
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        at = tar.getmember(name).offset  # where its header starts
    assert len(name) == 112 and data[at + 345 : at + 500].rstrip(b"\0") == f"runs/{run_id}".encode()
    assert data == canonical_tar(_members(data))  # the very bytes tarfile writes
    ok = CliRunner().invoke(app, ["verify", str(path), "--key", str(keys.public_path(key))])
    assert ok.exit_code == 0, ok.output
    with pytest.raises(BundleError, match="not a name of the bundle layout"):
        bundle.write({f"objects/{'a' * 120}": b"x"})  # was a ValueError: exit 70
    for fmt, what in [
        (tarfile.GNU_FORMAT, "GNU long-name header"),
        (tarfile.PAX_FORMAT, "pax extended header"),
    ]:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
            info = tarfile.TarInfo(f"objects/{'a' * 120}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        (tmp_path / "ext.bundle").write_bytes(out.getvalue())
        assert f"{what} in bundle (refused" in verify(tmp_path / "ext.bundle", key)


def test_extracting_twice_into_one_folder_is_refused_and_changes_nothing(signed, tmp_path) -> None:
    path, key, _ = signed
    target = tmp_path / "opened"
    args = ["verify", str(path), "--key", str(keys.public_path(key)), "--extract", str(target)]
    assert CliRunner().invoke(app, args).exit_code == 0
    (target / "report.html").write_text("the regulator's notes")
    line = reason(refused(args))
    assert "already exists in" in line and "nothing was extracted" in line
    assert (target / "report.html").read_text() == "the regulator's notes"


def _entries(change: Callable[[list[Any]], None]) -> Callable[[Any, dict[str, bytes]], Any]:
    def apply(manifest: Any, files: dict[str, bytes]) -> Any:
        entries = [json.loads(line) for line in files["ledger/entries.jsonl"].splitlines()]
        change(entries)
        files["ledger/entries.jsonl"] = b"".join(canonical_json(e) + b"\n" for e in entries)
        return None

    return apply


def _file(name: str, change: Callable[[Any], Any]) -> Callable[[Any, dict[str, bytes]], Any]:
    def apply(manifest: Any, files: dict[str, bytes]) -> Any:
        files[name] = canonical_json(change(json.loads(files[name])))
        return None

    return apply


def _manifest(change: Callable[[dict[str, Any]], Any]) -> Callable[[Any, dict[str, bytes]], Any]:
    return lambda manifest, files: change(manifest)


MALFORMED = {
    "manifest-a-list": ("MANIFEST.json", _manifest(lambda m: [m]), "$ is a list, not an object"),
    "manifest-without-files": (
        "MANIFEST.json",
        _manifest(lambda m: {k: v for k, v in m.items() if k != "files"}),
        "$ has no 'files'",
    ),
    "files-a-list": (
        "MANIFEST.json",
        _manifest(lambda m: {**m, "files": [*m["files"]]}),
        "$.files is a list, not an object",
    ),
    "key-id-a-number": (
        "MANIFEST.json",
        _manifest(lambda m: {**m, "key_id": 7}),
        "$.key_id is an integer, not a string",
    ),
    "runs-a-string": (
        "MANIFEST.json",
        _manifest(lambda m: {**m, "runs": "all"}),
        "$.runs is a string, not a list",
    ),
    "images-a-list": (
        "MANIFEST.json",
        _manifest(lambda m: {**m, "images": ["x"]}),
        "$.images is a list, not an object",
    ),
    "entry-a-list": (
        "ledger/entries.jsonl",
        _entries(lambda es: es.__setitem__(0, [es[0]])),
        "line 1: is not of the expected shape: $ is a list, not an object",
    ),
    "entry-without-manifest": (
        "ledger/entries.jsonl",
        _entries(lambda es: es[1].pop("manifest")),
        "line 2: is not of the expected shape: $ has no 'manifest'",
    ),
    "seq-a-string": (
        "ledger/entries.jsonl",
        _entries(lambda es: es[0].update(seq="1")),
        "$.seq is a string, not a positive integer",
    ),
    "no-steps": (
        "ledger/entries.jsonl",
        _entries(lambda es: es[0]["manifest"].update(steps=[])),
        "$.manifest.steps holds 0 items, not at least 1",
    ),
    "proofs-a-list": (
        "ledger/proofs.json",
        _file("ledger/proofs.json", lambda p: [p]),
        "$ is a list, not an object",
    ),
    "tree-size-a-string": (
        "ledger/checkpoint.json",
        _file("ledger/checkpoint.json", lambda c: {**c, "tree_size": str(c["tree_size"])}),
        "$.tree_size is a string, not an integer",
    ),
    "subject-an-object": (
        "statement.intoto.json",
        _file("statement.intoto.json", lambda s: {**s, "subject": {"a": 1}}),
        "$.subject is an object, not a list",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_signed_json_of_the_wrong_shape_is_refused_naming_the_member(
    signed, tmp_path, case
) -> None:
    _, key, files = signed
    member, change, problem = MALFORMED[case]
    files = dict(files)
    manifest = change(json.loads(files["MANIFEST.json"]), files)
    path = tmp_path / f"{case}.bundle"
    path.write_bytes(canonical_tar(resign(files, key, manifest)))
    line = verify(path, key)
    assert f"FAIL {member}  " in line and "shape" in line and problem in line


def test_a_big_member_is_hashed_streaming_not_held(signed, tmp_path) -> None:
    _, key, files = signed
    model = bytes(range(256)) * (1 << 18)  # 64 MiB, as a model object
    digest = sha256(model)[7:]
    path = tmp_path / "model.bundle"
    path.write_bytes(
        canonical_tar(resign({**files, f"objects/sha256/{digest[:2]}/{digest[2:]}": model}, key))
    )
    del model
    tracemalloc.start()
    try:
        check = verify_bundle(path, keys.public_path(key).read_bytes())
        top = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert check.ok, check.failure
    assert top < 16 << 20, f"allocated {top:,} bytes at the peak for a 64 MiB member"


def test_a_member_changed_on_disk_after_the_check_is_never_read(signed, tmp_path) -> None:
    path = signed[0]
    copy = tmp_path / "copy.bundle"
    copy.write_bytes(path.read_bytes())
    files = bundle.load(copy)
    member = files.index["report.html"]
    with copy.open("r+b") as f:
        f.seek(member.offset)
        f.write(b"X")  # same length, other bytes
    with pytest.raises(BundleError, match=r"report\.html: changed on disk"):
        files["report.html"]
