"""Commit frames: a group's ledger lines, written into its segment log after its block.

    b"RPL1" | u32 length | lines | u32 length | b"1LPR"

``lines`` are the bytes the group appended to ``ledger/ledger.jsonl``, newlines included.
One fdatasync of the segment log makes the block and the frame durable together; the ledger
file itself is not synced on that path, so after a power loss the frames are what tells
which runs were committed (``replay.store.recovery``). The trailer repeats the length so
that the last frames of a log are found from its end; a frame's lines name their block, which
sits right before it, so the frame before it ends where that block starts.

Readers never see frames: blocks are addressed by offset and length from the ledger.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from replay.store.fs import StoreFS

HEAD, TRAIL = b"RPL1", b"1LPR"
_LEN = struct.Struct("<I")
OVERHEAD = 2 * (len(HEAD) + _LEN.size)
_SCAN = 1 << 16


def frame(lines: bytes, head: bytes = HEAD) -> bytes:
    """``lines`` framed (``head``: another kind of payload, e.g. compressed lines)."""
    size = _LEN.pack(len(lines))
    return head + size + lines + size + TRAIL


@dataclass(frozen=True)
class Frame:
    start: int  # where the frame starts in its log
    entries: list[dict[str, Any]]  # its ledger lines, parsed (the hash chain checks them)


def length_at(fs: StoreFS, name: str, offset: int) -> int:
    """The length of the frame at ``offset`` of log ``name``; 0 when there is none."""
    size = fs.size(name)
    if offset + OVERHEAD > size:
        return 0
    head = bytes(fs.read_range(name, offset, len(HEAD) + _LEN.size))
    (n,) = _LEN.unpack(head[4:])
    end = offset + len(HEAD) + _LEN.size + n
    if head[:4] != HEAD or end + _LEN.size + len(TRAIL) > size:
        return 0
    return OVERHEAD + n if bytes(fs.read_range(name, end, _LEN.size + 4)) == head[4:] + TRAIL else 0


def last_frames(fs: StoreFS, name: str) -> Iterator[Frame]:
    """The frames of log ``name``, last first.

    Whatever follows the last durable frame (a block or frame a power loss left half
    written) is skipped by searching back for a trailer that closes a well-formed frame.
    """
    end = fs.size(name)
    while end > 0:
        found = _frame_ending_before(fs, name, end)
        if found is None:
            return
        yield found
        # The frame before this one ends where this frame's block starts.
        block = found.entries[0].get("block") if found.entries else None
        offset = block.get("offset") if isinstance(block, dict) else None
        end = min(offset, found.start) if isinstance(offset, int) else found.start


def _frame_ending_before(fs: StoreFS, name: str, end: int) -> Frame | None:
    while end >= OVERHEAD:
        start = max(0, end - _SCAN)
        chunk = bytes(fs.read_range(name, start, end - start))
        at = chunk.rfind(TRAIL)
        while at >= 0:
            found = _frame_ending_at(fs, name, start + at + len(TRAIL))
            if found is not None:
                return found
            at = chunk.rfind(TRAIL, 0, at)
        if start == 0:
            return None
        end = start + len(TRAIL) - 1  # a trailer cut by the chunk's start is searched again
    return None


def _frame_ending_at(fs: StoreFS, name: str, end: int) -> Frame | None:
    tail = bytes(fs.read_range(name, end - len(TRAIL) - _LEN.size, _LEN.size))
    (n,) = _LEN.unpack(tail)
    start = end - OVERHEAD - n
    if start < 0 or length_at(fs, name, start) != OVERHEAD + n:
        return None
    lines = bytes(fs.read_range(name, start + len(HEAD) + _LEN.size, n))
    try:
        entries = [json.loads(line) for line in lines.split(b"\n")[:-1]]
    except ValueError:
        return None
    if not lines.endswith(b"\n") or not all(isinstance(e, dict) for e in entries):
        return None
    return Frame(start, entries)


def length_before_trailer(data: bytes) -> int | None:
    """The length of the lines of the frame that ends ``data``, as its trailer says."""
    if len(data) < _LEN.size + len(TRAIL) or not data.endswith(TRAIL):
        return None
    (n,) = _LEN.unpack(data[-len(TRAIL) - _LEN.size : -len(TRAIL)])
    return int(n)


def lines_at_end(data: bytes, head: bytes = HEAD) -> bytes | None:
    """The lines (the payload, for another ``head``) of the well-formed frame that ends
    ``data``; None when none does."""
    n = length_before_trailer(data)
    if n is None or n + OVERHEAD > len(data):
        return None
    start = len(data) - OVERHEAD - n
    if data[start : start + len(head) + _LEN.size] != head + _LEN.pack(n):
        return None
    lines = data[start + len(head) + _LEN.size : start + len(head) + _LEN.size + n]
    return lines if head != HEAD or lines.endswith(b"\n") or not lines else None
