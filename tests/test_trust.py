"""Trust is configured, never read from the evidence (issue 13).

THE ATTACK: a bundle re-signed with a fresh key after one decision was changed and the step's
code replaced by a pickle that writes a file when loaded, every digest, the manifest, the
entry hash, the Merkle root and the checkpoint recomputed. It is consistent in every byte;
only the trust store (or --key) can tell it is not the bank's.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import label, rows, scale
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.core import keys, merkle, trust
from replay.core.digest import canonical_json, sha256, table_bytes, table_digest
from replay.errors import UntrustedSignerError
from replay.evidence import bundle
from replay.evidence.export import export, open_bundle
from replay.store.checkpoint import Checkpoint
from replay.store.ledger import entry_hash, line_of

BANK = "Bank X model risk"


class Bomb:
    """Unpickling this writes ``marker``: proof that something from the bundle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"with open({self.marker!r}, 'w') as f: f.write('loaded')",))


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty config folder: no trust store, nothing pinned."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REPLAY_TRUSTED_KEYS", raising=False)
    monkeypatch.delenv("REPLAY_SIGNING_KEY", raising=False)
    return tmp_path / "config" / "pipeline-replay" / "trusted"


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The bank's real bundle of one toy run, the bank's public key, and the run id."""
    tmp = tmp_path_factory.mktemp("bank")
    key = keys.init_key(tmp / "bank.pem")
    store = replay.Store.open(tmp / "store")
    pipe = replay.Pipeline(
        "toy", [replay.Step("scale", scale, params={"k": 2.0}), replay.Step("label", label)]
    )
    run_id = replay.record(
        pipe, rows(3), store=store, record_key="id", at=datetime(2026, 3, 14, 8, tzinfo=UTC)
    ).run_id
    return export(store, [run_id], tmp / "bank.bundle", key=key).path, keys.public_path(key), run_id


def _object(digest: str) -> str:
    return f"objects/sha256/{digest[7:9]}/{digest[9:]}"


def _put(files: dict[str, bytes], data: bytes) -> str:
    files[_object(sha256(data))] = data
    return sha256(data)


def _flip_first_decision(files: dict[str, bytes], run: str, step: dict[str, Any]) -> None:
    name = f"runs/{run}/{step['name']}.arrow"
    table = pa.ipc.open_stream(files[name]).read_all()
    labels = table["label"].to_pylist()
    labels[0] = "hi" if labels[0] == "lo" else "lo"
    table = table.set_column(table.column_names.index("label"), "label", pa.array(labels))
    files[name] = table_bytes(table).to_pybytes()
    step["output"] = table_digest(table)
    statement = json.loads(files["statement.intoto.json"])
    statement["subject"][0]["digest"]["sha256"] = step["output"][7:]
    files["statement.intoto.json"] = canonical_json(statement)


def _prove(files: dict[str, bytes], entry: dict[str, Any], forger: Ed25519PrivateKey) -> str:
    """A Merkle tree holding the forged entry, its proof, and a checkpoint the forger signs."""
    leaves = [merkle.leaf_hash(b"filler %d" % i) for i in range(entry["seq"] - 1)]
    leaves.append(merkle.leaf_hash(line_of(entry)))
    index = entry["seq"] - 1
    files["ledger/proofs.json"] = canonical_json(
        {
            entry["run_id"]: {
                "index": index,
                "proof": [h.hex() for h in merkle.inclusion_proof(index, leaves)],
            }
        }
    )
    kid = keys.key_id(forger.public_key())
    cp = Checkpoint(
        len(leaves), "sha256:" + merkle.root(leaves).hex(), "2026-03-14T09:00:00+00:00", kid
    )
    signed = Checkpoint(
        **{**cp.as_json(), "signature": base64.b64encode(forger.sign(cp.body())).decode()}
    )
    files["ledger/checkpoint.json"] = canonical_json(signed.as_json())
    return kid


def forge(genuine: Path, forger: Ed25519PrivateKey, marker: Path) -> bytes:
    """THE ATTACK: the bank's bundle with a decision changed and a bomb for step code,
    every digest, hash and proof recomputed, re-signed by ``forger``."""
    files = bundle.read(genuine.read_bytes())
    entry = json.loads(files["ledger/entries.jsonl"])
    manifest = entry["manifest"]
    spec = json.loads(files.pop(_object(manifest["version"])))
    spec["steps"][0]["code"] = _put(files, pickle.dumps(Bomb(marker)))
    manifest["version"] = _put(files, canonical_json(spec))
    _flip_first_decision(files, entry["run_id"], manifest["steps"][-1])
    entry["manifest_sha256"] = sha256(canonical_json(manifest))
    entry["hash"] = entry_hash(entry)
    files["ledger/entries.jsonl"] = canonical_json(entry) + b"\n"
    kid = _prove(files, entry, forger)
    files["public_key.pem"] = keys.public_pem(forger.public_key())
    signed = json.loads(files.pop("MANIFEST.json"))
    del files["MANIFEST.sig"]
    cp = json.loads(files["ledger/checkpoint.json"])
    signed.update(
        key_id=kid,
        checkpoint={"tree_size": cp["tree_size"], "root": cp["root"]},
        files={n: sha256(d) for n, d in sorted(files.items())},
    )
    body = canonical_json(signed)
    return bundle.write(
        {**files, "MANIFEST.json": body, "MANIFEST.sig": base64.b64encode(forger.sign(body))}
    )


@pytest.fixture
def forged(genuine, tmp_path: Path) -> tuple[Path, Path, str, Path]:
    """The forged bundle, the forger's public key, its key id, and the bomb's marker file."""
    key = keys.init_key(tmp_path / "forger.pem")
    out, marker = tmp_path / "forged.bundle", tmp_path / "bomb-went-off"
    out.write_bytes(forge(genuine[0], keys.load_private(key), marker))
    return out, keys.public_path(key), keys.key_id(keys.load_private(key).public_key()), marker


def cli(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Printed text as one line: the console wraps long key ids at 80 columns."""
    return " ".join(text.split())


def test_nothing_pinned_a_forged_bundle_is_consistent_but_its_signer_not_trusted(forged) -> None:
    path, _, forger, _ = forged
    result = cli("verify", path)
    assert result.exit_code == 14, result.output
    lines = flat(result.stdout)
    assert "FAIL signer consistent, signer not trusted" in lines
    assert forger in lines and "no signer is pinned" in lines and "replay trust add" in lines
    checks = json.loads(cli("verify", path, "--json").stdout)["checks"]
    assert [c["part"] for c in checks if not c["ok"]] == ["signer"]  # all else consistent


def test_with_the_banks_key_pinned_the_forgery_fails_naming_the_forged_key(genuine, forged) -> None:
    added = cli("trust", "add", genuine[1], "--name", BANK)
    assert added.exit_code == 0, added.output
    assert keys.key_id(keys.load_public(genuine[1].read_bytes())) in flat(added.stdout)
    refused = cli("verify", forged[0], "--json")
    assert refused.exit_code == 14
    report = json.loads(refused.stdout)
    assert report["signer"] == forged[2] and report["pinned"] == [BANK]
    assert f"signer: consistent, signer not trusted: {forged[2]}" in report["failure"]
    accepted = cli("verify", genuine[0])
    assert accepted.exit_code == 0 and f"pinned as '{BANK}'" in flat(accepted.stdout)


def test_replay_from_a_forged_bundle_is_refused_and_unpickles_nothing(genuine, forged) -> None:
    path, _, forger, marker = forged
    for pinned in ((), (genuine[1],)):
        for pub in pinned:
            assert cli("trust", "add", pub, "--name", BANK).exit_code == 0
        result = cli("run", genuine[2], "--bundle", path)
        assert result.exit_code == 14, result.output
        assert f"signer not trusted: {forger}" in flat(result.stderr)
        with pytest.raises(UntrustedSignerError) as refused:
            open_bundle(path)
        assert refused.value.signer == forger and refused.value.exit_code == 14
    assert not marker.exists()


def test_a_bundle_from_a_pinned_signer_replays(genuine) -> None:
    assert cli("trust", "add", genuine[1], "--name", BANK).exit_code == 0
    result = cli("run", genuine[2], "--bundle", genuine[0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "exact"


def test_without_a_container_engine_a_bundle_replays_on_the_host_and_says_so(
    genuine, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert cli("trust", "add", genuine[1], "--name", BANK).exit_code == 0
    result = cli("run", genuine[2], "--bundle", genuine[0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "exact"
    assert "no Docker engine answers" in result.stderr
    assert "replaying the bundle on this machine, not in a container" in flat(result.stderr)


def test_no_sandbox_says_what_it_gives_up(genuine) -> None:
    assert cli("trust", "add", genuine[1], "--name", BANK).exit_code == 0
    result = cli("run", genuine[2], "--bundle", genuine[0], "--no-sandbox")
    assert result.exit_code == 0, result.output
    assert "runs on this machine, with its network and files" in flat(result.stderr)


def test_no_sandbox_is_for_bundles_only_and_contradicts_in_container(genuine) -> None:
    assert cli("run", genuine[2], "--no-sandbox").exit_code == 2
    assert cli("trust", "add", genuine[1], "--name", BANK).exit_code == 0
    both = cli("run", genuine[2], "--bundle", genuine[0], "--no-sandbox", "--in-container")
    assert both.exit_code == 2 and "contradict" in both.stderr


def test_with_the_forgers_key_pinned_the_forgery_verifies(forged) -> None:
    path, pub, forger, _ = forged
    assert cli("trust", "add", pub, "--name", "forger").exit_code == 0
    result = cli("verify", path)
    assert result.exit_code == 0, result.output
    printed = flat(result.stdout)
    assert "FAIL" not in printed and f"{forger} is pinned as 'forger'" in printed


def test_insecure_any_signer_checks_consistency_only_and_warns(forged) -> None:
    result = cli("verify", forged[0], "--insecure-any-signer")
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout and "OK   signer" not in result.stdout
    warning = flat(result.stderr)
    assert warning.startswith("warning: signer not checked: ") and forged[2] in warning
    both = cli("verify", forged[0], "--insecure-any-signer", "--key", forged[1])
    assert both.exit_code == 2 and "contradict" in flat(both.stderr)


def test_replay_trusted_keys_pins_key_files_and_folders(
    genuine, forged, tmp_path, monkeypatch
) -> None:
    folder = tmp_path / "ci-keys"
    folder.mkdir()
    (folder / "bank.pem").write_bytes(genuine[1].read_bytes())
    third = keys.public_path(keys.init_key(tmp_path / "third.pem"))
    for value in (f"{third}{os.pathsep}{genuine[1]}", str(folder)):
        monkeypatch.setenv("REPLAY_TRUSTED_KEYS", value)
        assert cli("verify", genuine[0]).exit_code == 0
        assert cli("verify", forged[0]).exit_code == 14
    listed = json.loads(cli("trust", "list", "--json").stdout)
    assert [(k["name"], k["source"]) for k in listed] == [("bank", "REPLAY_TRUSTED_KEYS")]
    monkeypatch.setenv("REPLAY_TRUSTED_KEYS", str(tmp_path / "typo.pem"))
    missing = cli("verify", genuine[0])
    assert missing.exit_code == 2 and "REPLAY_TRUSTED_KEYS names" in flat(missing.stderr)


def test_trust_list_and_remove_round_trip(genuine, forged, config) -> None:
    bank = keys.key_id(keys.load_public(genuine[1].read_bytes()))
    assert cli("trust", "add", genuine[1], "--name", BANK).exit_code == 0
    assert cli("trust", "add", forged[1], "--name", "other").exit_code == 0
    listed = json.loads(cli("trust", "list", "--json").stdout)
    assert [(k["name"], k["key_id"], k["source"]) for k in listed] == [
        (BANK, bank, "trust store"),
        ("other", forged[2], "trust store"),
    ]
    assert (config / f"{BANK}.pem").read_bytes() == genuine[1].read_bytes()
    assert cli("trust", "remove", BANK).exit_code == 0
    gone = cli("trust", "remove", forged[2][7:19])  # a unique prefix of the key id
    assert gone.exit_code == 0 and forged[2] in flat(gone.stdout)
    assert json.loads(cli("trust", "list", "--json").stdout) == []
    unknown = cli("trust", "remove", BANK)
    assert unknown.exit_code == 4 and "no trusted key is named" in flat(unknown.stderr)


def test_adding_twice_changes_nothing_and_a_name_or_key_is_never_reused(genuine, forged) -> None:
    first = trust.add(genuine[1], BANK)
    assert trust.add(genuine[1], BANK) == first
    renamed = cli("trust", "add", genuine[1], "--name", "another name")
    assert renamed.exit_code == 2 and f"already trusted as '{BANK}'" in flat(renamed.stderr)
    same_name = cli("trust", "add", forged[1], "--name", BANK.upper())
    assert same_name.exit_code == 2 and "is already trusted" in flat(same_name.stderr)
    assert [k.name for k in trust.list()] == [BANK]


def test_verify_key_pins_only_that_key(genuine, forged) -> None:
    assert cli("trust", "add", forged[1], "--name", "forger").exit_code == 0
    refused = cli("verify", forged[0], "--key", genuine[1])  # the trust store is not read
    assert refused.exit_code == 14
    assert f"signer not trusted: {forged[2]}" in flat(refused.stdout)
    accepted = cli("verify", genuine[0], "--key", genuine[1])
    assert accepted.exit_code == 0 and "is the key --key pins" in flat(accepted.stdout)
    run = cli("run", genuine[2], "--bundle", forged[0], "--key", genuine[1])
    assert run.exit_code == 14 and not forged[3].exists()


def test_a_private_or_malformed_key_is_refused_a_readable_public_one_is_fine(
    genuine, tmp_path, config
) -> None:
    private = genuine[1].with_suffix(".pem")
    refused = cli("trust", "add", private, "--name", BANK)
    assert refused.exit_code == 2 and "is a private key" in flat(refused.stderr)
    assert not config.exists() or not any(config.iterdir())
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    malformed = cli("trust", "add", junk, "--name", BANK)
    assert malformed.exit_code == 2 and "not a PEM public key" in flat(malformed.stderr)
    bad_name = cli("trust", "add", genuine[1], "--name", "../escape")
    assert bad_name.exit_code == 2 and "cannot name a trusted key" in flat(bad_name.stderr)
    genuine[1].chmod(0o644)
    assert cli("trust", "add", genuine[1], "--name", BANK).exit_code == 0


def test_a_public_key_whose_algorithm_bytes_are_damaged_is_refused_as_not_a_key(
    genuine, tmp_path
) -> None:
    """Found by tests/test_byte_flips.py: one flipped byte of the algorithm's OID made the
    key name an algorithm cryptography does not know, which escaped as a traceback."""
    pem = genuine[1].read_text()
    assert "MCowBQYDK2VwAyEA" in pem  # the Ed25519 SubjectPublicKeyInfo prefix
    damaged = tmp_path / "damaged.pub"
    damaged.write_text(pem.replace("MCowBQYDK2Vw", "MCowBQYD+2Vw"))
    refused = cli("trust", "add", damaged, "--name", BANK)
    assert refused.exit_code == 2 and "not a PEM public key" in flat(refused.stderr)
    assert "Traceback" not in refused.output


def test_a_trust_store_anyone_can_write_is_refused(genuine, config) -> None:
    trust.add(genuine[1], BANK)
    config.chmod(config.stat().st_mode | stat.S_IWOTH)
    result = cli("verify", genuine[0])
    assert result.exit_code == 2 and "writable by every user" in flat(result.stderr)


def test_the_old_trust_flag_is_refused_with_its_new_name(genuine, forged) -> None:
    result = cli("run", genuine[2], "--bundle", forged[0], "--trust")
    assert result.exit_code == 2 and "--insecure-replay-unverified" in flat(result.stderr)
    assert not forged[3].exists()


def test_insecure_replay_unverified_replays_an_unpinned_bundle_with_a_warning(genuine) -> None:
    result = cli(
        "run", genuine[2], "--bundle", genuine[0], "--insecure-replay-unverified", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == "exact"
    assert "warning: replaying an unverified bundle" in flat(result.stderr)


def test_every_trust_command_is_a_library_function_of_the_same_name() -> None:
    from replay.cli.evidence import trust_app

    commands = {c.name for c in trust_app.registered_commands}
    assert commands == {"add", "list", "remove", "allow-store"}
    assert all(callable(getattr(trust, name.replace("-", "_"))) for name in commands)


def test_the_untrusted_signer_has_its_own_exit_code_drawn_in_the_error_tree() -> None:
    from replay import errors

    assert errors.EXIT_CODES["UntrustedSignerError"] == 14
    assert "UntrustedSignerError         exit 14" in (errors.__doc__ or "")
