"""After a power loss, every acknowledged run is back and no partial one is visible.

Writers sync only their segment log (block and commit frame) per group, never the ledger, so
a crash of the machine can take the ledger's unsynced tail: lines lost, torn or zeroed, or a
line kept whose block never reached the disk. Each test records runs for real, then leaves
the bytes such a crash could leave, with the boot marker naming the boot before it; the next
writer or ``doctor`` recovers, and the store then verifies and replays ``exact``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import rows, scale

import replay
from replay.catalog.check import verify_store
from replay.catalog.queries import runs as catalog_runs
from replay.catalog.repair import Checkup, doctor
from replay.store import recovery
from replay.store.recovery import MARKER

PIPE = replay.Pipeline("power", [replay.Step("scale", scale, params={"k": 2.0})])
ASSETS = Path(__file__).parent / "assets"


def _record(root: Path, n: int, start: int = 0) -> list[str]:
    """``n`` durable runs, each its own commit group, recorded by a writer of its own."""
    store = replay.Store.open(root)
    return [replay.record(PIPE, rows(1, start + i), store=store).run_id for i in range(n)]


def _line_ends(root: Path) -> list[int]:
    data = (root / "ledger" / "ledger.jsonl").read_bytes()
    return [i + 1 for i, b in enumerate(data) if b == 0x0A]


def _reboot(root: Path) -> None:
    """The machine went down and came back: the marker names the boot before."""
    marker = json.loads((root / MARKER).read_bytes())
    (root / MARKER).write_text(json.dumps({**marker, "boot": "the-boot-before-the-crash"}))


def _crash(root: Path, keep: int | None = None) -> Checkup:
    """The machine crashes (keeping the first ``keep`` bytes of the ledger) and comes back;
    ``doctor`` runs."""
    if keep is not None:
        _keep_ledger(root, keep)
    _reboot(root)
    return doctor(replay.Store.open(root))


def _keep_ledger(root: Path, size: int) -> None:
    with open(root / "ledger" / "ledger.jsonl", "r+b") as f:
        f.truncate(size)


def _last_block(root: Path) -> dict[str, object]:
    line = (root / "ledger" / "ledger.jsonl").read_bytes().splitlines()[-1]
    block: dict[str, object] = json.loads(line)["block"]
    return block


def _lose_last_group(root: Path) -> None:
    """The last group's block and frame never reached the disk; its ledger line did."""
    block = _last_block(root)
    with open(root / "segments" / str(block["segment"]), "r+b") as f:
        f.truncate(int(str(block["offset"])))


def _all_exact(root: Path, runs: list[str]) -> None:
    store = replay.Store.open(root)
    assert [e["run_id"] for _, e in store.entries()] == runs
    assert verify_store(store)["runs"] == len(runs)
    for run_id in runs:
        assert replay.replay(store, run_id).verdict == "exact"


def test_lines_the_ledger_lost_are_restored_from_the_commit_frames(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 4)
    before = (root / "ledger" / "ledger.jsonl").read_bytes()
    report = _crash(root, _line_ends(root)[0])
    assert any("restored 3 committed entries" in r for r in report.repaired)
    assert (root / "ledger" / "ledger.jsonl").read_bytes() == before
    _all_exact(root, runs)


def test_a_torn_last_line_is_restored_whole(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    _crash(root, _line_ends(root)[1] + 40)
    _all_exact(root, runs)


def test_zeros_where_lines_were_are_cut_and_the_lines_restored(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    ledger = root / "ledger" / "ledger.jsonl"
    data = ledger.read_bytes()
    keep = _line_ends(root)[0]
    ledger.write_bytes(data[:keep] + bytes(len(data) - keep))  # size kept, pages lost
    _crash(root)
    assert ledger.read_bytes() == data
    _all_exact(root, runs)


def test_the_next_writer_restores_the_ledger_before_it_appends(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    _keep_ledger(root, 0)
    _reboot(root)
    runs += _record(root, 1, start=3)
    assert replay.Store.open(root).ledger.verify() == 4
    _all_exact(root, runs)


def test_a_line_whose_block_never_reached_the_disk_is_cut(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    _lose_last_group(root)
    report = _crash(root)
    assert any("cut 1 entry" in r for r in report.repaired)
    _all_exact(root, runs[:2])


def test_a_frame_whose_block_is_not_whole_restores_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    block = _last_block(root)
    start, length = int(str(block["offset"])), int(str(block["length"]))
    with open(root / "segments" / str(block["segment"]), "r+b") as f:
        f.seek(start + length // 2)
        f.write(bytes(length - length // 2))  # the frame reached the disk, the block did not
    _crash(root, _line_ends(root)[1])
    _all_exact(root, runs[:2])


def test_recovery_run_again_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    _crash(root, _line_ends(root)[0])
    after = (root / "ledger" / "ledger.jsonl").read_bytes()
    _reboot(root)  # as if killed before the marker was written
    report = doctor(replay.Store.open(root))
    assert not [r for r in report.repaired if "entr" in r]
    assert (root / "ledger" / "ledger.jsonl").read_bytes() == after
    _all_exact(root, runs)


def test_a_store_of_the_fsynced_ledger_format_takes_new_runs(tmp_path: Path) -> None:
    """tests/assets/store-538e4b6 was written when each group fsynced its block and then the
    ledger, with no commit frames and no boot marker."""
    root = tmp_path / "store"
    shutil.copytree(ASSETS / "store-538e4b6", root)
    old = [e["run_id"] for _, e in replay.Store.open(root).entries()]
    new = _record(root, 2)
    _all_exact(root, old + new)


def test_new_runs_after_old_ones_are_restored_after_a_power_loss(tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(ASSETS / "store-538e4b6", root)
    old_size = (root / "ledger" / "ledger.jsonl").stat().st_size
    old = [e["run_id"] for _, e in replay.Store.open(root).entries()]
    new = _record(root, 2)
    _crash(root, old_size)
    _all_exact(root, old + new)


def test_a_frame_holds_the_lines_its_group_appended(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _record(root, 1)
    block = _last_block(root)
    segment = (root / "segments" / str(block["segment"])).read_bytes()
    frame = segment[int(str(block["offset"])) + int(str(block["length"])) :]
    lines = (root / "ledger" / "ledger.jsonl").read_bytes()
    size = len(lines).to_bytes(4, "little")
    assert frame == b"RPL1" + size + lines + size + b"1LPR"


def _shadowed_group(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store where writer A's third group reached the disk with its frame, but its sync
    reported a failure: the ledger dropped its line, and writer B's groups took its number.
    A's log sorts before B's, so its frame is found first."""
    for attempt in range(64):
        root = tmp_path / f"store-{attempt}"
        runs = _record(root, 2)
        size = _line_ends(root)[-1]
        _record(root, 1, start=2)
        a_log = str(_last_block(root)["segment"])
        _keep_ledger(root, size)  # what Ledger.append does when the seal fails
        (root / "ledger" / "sealed").write_bytes(size.to_bytes(8, "little"))
        runs += _record(root, 2, start=10)
        if a_log < str(_last_block(root)["segment"]):
            return root, runs
    raise AssertionError("no uuid4 order in 64 tries")


def test_a_group_that_reused_a_failed_groups_number_is_the_one_restored(
    tmp_path: Path,
) -> None:
    root, runs = _shadowed_group(tmp_path)
    _crash(root, _line_ends(root)[1])
    _all_exact(root, runs)


def test_a_run_the_catalog_indexed_and_recovery_cut_leaves_the_catalog(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = _record(root, 3)
    assert len(catalog_runs(replay.Store.open(root))) == 3
    _lose_last_group(root)
    _reboot(root)
    runs = runs[:2] + _record(root, 1, start=3)  # the next writer recovers first
    listed = catalog_runs(replay.Store.open(root))
    assert sorted(r["run_id"] for r in listed) == sorted(runs)


def test_the_marker_moves_on_as_the_ledger_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a recovery checks is bounded: once the ledger has grown ``VOUCH_EVERY`` bytes past
    the marker, a writer syncs the ledger and the marker vouches for all of it."""
    monkeypatch.setattr(recovery, "VOUCH_EVERY", 1)
    root = tmp_path / "store"
    _record(root, 3)
    vouched = json.loads((root / MARKER).read_bytes())["size"]
    assert vouched == (root / "ledger" / "ledger.jsonl").stat().st_size > 0
