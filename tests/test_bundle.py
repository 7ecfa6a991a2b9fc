"""Evidence bundles: export, verification without trust, refusal of every defect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.core import keys
from replay.evidence import bundle
from replay.evidence.bundle import BundleError
from replay.evidence.export import export, open_bundle
from replay.evidence.verify import verify_bundle

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """A small real bundle of two toy runs, and the key that signed it."""
    from conftest import label, scale

    tmp = tmp_path_factory.mktemp("bundle")
    key = keys.init_key(tmp / "signing.pem")
    store = replay.Store.open(tmp / "store")
    pipe = replay.Pipeline(
        "toy", [replay.Step("scale", scale, params={"k": 2.0}), replay.Step("label", label)]
    )
    ids = [replay.record(pipe, rows(3, i), store=store, record_key="id").run_id for i in range(2)]
    return export(store, ids, tmp / "evidence.bundle", key=key).path, key, ids


def test_runs_named_alone_are_exported_without_indexing_the_store(exported) -> None:
    """The runs come from the ledger itself: an export never waits for the catalog to index
    a store it was never asked to search (a million runs took minutes)."""
    path, _, _ = exported
    assert not (path.parent / "store" / "catalog.duckdb").exists()


def test_an_untouched_bundle_verifies_against_its_key(exported) -> None:
    path, key, ids = exported
    check = verify_bundle(path, keys.public_path(key).read_bytes())
    assert check.ok and check.failure is None
    assert check.runs == ids
    assert [part for part, _, _ in check.checks][:5] == [
        "container",
        "signature",
        "digests",
        "checkpoint",
        "ledger",
    ]


def test_the_bundle_holds_an_in_toto_statement_of_the_outputs(exported) -> None:
    files = bundle.read(exported[0].read_bytes())
    st_ = json.loads(files["statement.intoto.json"])
    assert st_["_type"] == "https://in-toto.io/Statement/v1"
    assert len(st_["subject"]) == 2 and all(
        len(s["digest"]["sha256"]) == 64 for s in st_["subject"]
    )


def test_the_private_key_never_enters_the_bundle(exported) -> None:
    path, key, _ = exported
    secret = keys.load_private(key).private_bytes_raw()
    assert secret not in path.read_bytes()
    assert b"PRIVATE KEY" not in path.read_bytes()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_flipping_any_byte_anywhere_makes_verify_fail_and_name_the_part(
    exported, tmp_path_factory, data: st.DataObject
) -> None:
    path, key, _ = exported
    raw = bytearray(path.read_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    bad = tmp_path_factory.mktemp("flip") / "flipped.bundle"
    bad.write_bytes(bytes(raw))
    check = verify_bundle(bad, keys.public_path(key).read_bytes())
    assert not check.ok
    assert check.failure and check.failure.split(":")[0]


GOLDEN = [
    ("path-traversal.bundle", "../escaped.txt: path escapes the bundle folder"),
    ("symlink.bundle", "objects/link: symbolic link in bundle"),
    ("truncated.bundle", "bundle: truncated or not a bundle"),
    ("reordered-ledger.bundle", "ledger/entries.jsonl: entries are not in ledger order"),
    ("swapped-manifest.bundle", "does not match its own hashes"),
    ("stale-checkpoint.bundle", "ledger/checkpoint.json: stale checkpoint: it covers 1"),
    ("pickle-bomb.bundle", "does not hash to its name"),
]


@pytest.mark.parametrize(("name", "message"), GOLDEN)
def test_each_golden_bad_bundle_is_refused_with_its_own_message(name, message) -> None:
    check = verify_bundle(ASSETS / name, (ASSETS / "golden-signing.pub").read_bytes())
    assert not check.ok
    assert message in (check.failure or "")


REORDERED = ["verify", str(ASSETS / "reordered-ledger.bundle")]
ASK_SENDER = "the bundle cannot be trusted; ask its sender for a fresh export"


def test_a_failed_check_of_verify_ends_with_what_to_do_next() -> None:
    result = CliRunner().invoke(
        app, [*REORDERED, "--key", str(ASSETS / "golden-signing.pub")], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 1, result.output
    [failed] = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed.startswith("FAIL ledger/entries.jsonl  entries are not in ledger order")
    assert failed.endswith(f" — {ASK_SENDER}")


def test_verify_json_gives_a_failed_check_its_hint() -> None:
    result = CliRunner().invoke(
        app, [*REORDERED, "--key", str(ASSETS / "golden-signing.pub"), "--json"]
    )
    assert result.exit_code == 1, result.output
    checks = json.loads(result.stdout)["checks"]
    assert [(c["part"], c["hint"]) for c in checks if not c["ok"]] == [
        ("ledger/entries.jsonl", ASK_SENDER)
    ]
    assert {c["hint"] for c in checks if c["ok"]} == {""}


def test_a_bundle_checked_against_another_key_is_refused() -> None:
    check = verify_bundle(ASSETS / "wrong-key.bundle", (ASSETS / "golden-other.pub").read_bytes())
    assert "signer not trusted" in (check.failure or "") and check.untrusted
    assert verify_bundle(
        ASSETS / "wrong-key.bundle", (ASSETS / "golden-signing.pub").read_bytes()
    ).ok


def test_nothing_is_unpickled_by_verify_or_by_a_refused_replay(tmp_path, monkeypatch) -> None:
    bomb = tmp_path / "bomb-went-off"
    monkeypatch.setenv("REPLAY_BOMB", str(bomb))
    for name, _ in GOLDEN:
        verify_bundle(ASSETS / name)
    with pytest.raises(BundleError, match="refusing to replay an unverified bundle"):
        open_bundle(ASSETS / "pickle-bomb.bundle")
    result = CliRunner().invoke(
        app, ["run", "anything", "--bundle", str(ASSETS / "pickle-bomb.bundle")]
    )
    assert result.exit_code == BundleError.exit_code and "refusing" in result.stderr
    assert not bomb.exists()


def test_extraction_never_writes_outside_its_target(tmp_path) -> None:
    with pytest.raises(BundleError, match="escapes"):
        bundle.extract({"../outside.txt": b"x"}, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()


def test_a_verified_bundle_replays_exact(exported) -> None:
    path, key, ids = exported
    store, check = open_bundle(path, key=keys.public_path(key).read_bytes())
    assert check.ok
    assert replay.replay(store, ids[0]).verdict == "exact"


def test_cli_export_verify_and_replay_a_bundle(store, toy, tmp_path) -> None:
    key = keys.init_key(tmp_path / "k.pem")
    run_id = replay.record(toy, rows(2), store=store, record_key="id").run_id
    base = ["--store", str(store.root)]
    out = tmp_path / "e.bundle"
    made = CliRunner().invoke(app, [*base, "export", run_id, "--out", str(out), "--key", str(key)])
    assert made.exit_code == 0, made.output
    ok = CliRunner().invoke(app, ["verify", str(out), "--key", str(keys.public_path(key))])
    assert ok.exit_code == 0 and "FAIL" not in ok.stdout
    replayed = CliRunner().invoke(
        app, ["run", run_id, "--bundle", str(out), "--key", str(keys.public_path(key)), "--json"]
    )
    assert replayed.exit_code == 0 and json.loads(replayed.stdout)["verdict"] == "exact"


NAMES = [f"Alice Example-{i:04d}" for i in range(6)]


def _with_name(table, *, ctx):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    answer = ctx.call("kyc", lambda names: [n.upper() for n in names], table["name"].to_pylist())
    return table.append_column("kyc", pa.array(answer))


@pytest.fixture
def personal_store(tmp_path):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    store = replay.Store.open(tmp_path / "store")
    # "kyc" derives from the name, so it is personal too: declarations must cover both.
    pipe = replay.Pipeline("kyc", [replay.Step("kyc", _with_name)], personal=["name", "kyc"])
    run = replay.record(
        pipe,
        pa.table({"id": [f"A{i}" for i in range(6)], "name": NAMES}),
        store=store,
        record_key="id",
    )
    return store, run.run_id, keys.init_key(tmp_path / "k.pem")


def test_a_redacted_bundle_verifies_and_holds_no_plaintext(personal_store, tmp_path) -> None:
    store, run_id, key = personal_store
    out = export(store, [run_id], tmp_path / "r.bundle", key=key, redact=["name", "kyc"]).path
    check = verify_bundle(out, keys.public_path(key).read_bytes())
    assert check.ok, check.failure
    raw = out.read_bytes()
    for name in NAMES:
        assert name.encode() not in raw and name.upper().encode() not in raw
    table = (
        __import__("pyarrow")
        .ipc.open_stream(bundle.read(raw)[f"runs/{run_id}/input.arrow"])
        .read_all()
    )
    assert all(v.startswith("pseud:") for v in table["name"].to_pylist())


def test_a_redacted_bundle_is_refused_for_replay_with_the_reason(personal_store, tmp_path) -> None:
    store, run_id, key = personal_store
    out = export(store, [run_id], tmp_path / "r.bundle", key=key, redact=["name", "kyc"]).path
    result = CliRunner().invoke(
        app, ["run", run_id, "--bundle", str(out), "--key", str(keys.public_path(key))]
    )
    assert result.exit_code == BundleError.exit_code, result.output
    assert "the bundle is redacted (kyc, name)" in result.stderr


def test_the_same_value_gets_the_same_pseudonym(personal_store, tmp_path) -> None:
    store, run_id, key = personal_store
    a = export(store, [run_id], tmp_path / "a.bundle", key=key, redact=["name", "kyc"]).path
    b = export(store, [run_id], tmp_path / "b.bundle", key=key, redact=["name", "kyc"]).path
    name = f"runs/{run_id}/input.arrow"
    assert bundle.read(a.read_bytes())[name] == bundle.read(b.read_bytes())[name]


def test_a_redacted_row_changed_after_export_is_caught(personal_store, tmp_path) -> None:
    import base64

    import pyarrow as pa

    from replay.core.digest import canonical_json, sha256, table_bytes

    store, run_id, key = personal_store
    out = export(store, [run_id], tmp_path / "r.bundle", key=key, redact=["name", "kyc"]).path
    files = bundle.read(out.read_bytes())
    name = f"runs/{run_id}/input.arrow"
    table = pa.ipc.open_stream(files[name]).read_all()
    forged = table.set_column(0, "id", pa.array(["FORGED", *table["id"].to_pylist()[1:]]))
    files[name] = table_bytes(forged).to_pybytes()
    manifest = json.loads(files["MANIFEST.json"])
    manifest["files"][name] = sha256(files[name])
    body = canonical_json(manifest)  # the exporter itself re-signs: still caught
    files["MANIFEST.json"] = body
    files["MANIFEST.sig"] = base64.b64encode(keys.load_private(key).sign(body))
    out.write_bytes(bundle.write(files))
    check = verify_bundle(out, keys.public_path(key).read_bytes())
    assert f"{name}: rows do not match the manifest" in (check.failure or "")


def test_only_columns_declared_personal_can_be_redacted(personal_store, tmp_path) -> None:
    store, run_id, key = personal_store
    with pytest.raises(replay.ReplayError, match="did not declare id personal"):
        export(store, [run_id], tmp_path / "x.bundle", key=key, redact=["id"])


def test_a_hard_link_in_a_bundle_is_refused() -> None:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        link = tarfile.TarInfo("objects/hard")
        link.type, link.linkname = tarfile.LNKTYPE, "MANIFEST.json"
        tar.addfile(link)
    with pytest.raises(BundleError, match="hard link in bundle"):
        bundle.read(out.getvalue())


def test_verify_can_extract_a_verified_bundle_for_reading(exported, tmp_path) -> None:
    path, key, _ = exported
    result = CliRunner().invoke(
        app,
        [
            "verify",
            str(path),
            "--key",
            str(keys.public_path(key)),
            "--extract",
            str(tmp_path / "opened"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "opened" / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_a_member_whose_name_was_zeroed_is_refused_naming_where_it_is(exported, tmp_path) -> None:
    path, key, _ = exported
    raw = bytearray(path.read_bytes())
    raw[4096] = 0  # the second header's first name byte: the name reads as empty
    bad = tmp_path / "nameless.bundle"
    bad.write_bytes(bytes(raw))
    check = verify_bundle(bad, keys.public_path(key).read_bytes())
    assert not check.ok and check.refused
    assert check.failure and check.failure.split(":")[0] == "bundle"
