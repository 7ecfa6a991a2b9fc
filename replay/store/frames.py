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

import zstandard

from replay.store.fs import StoreFS

HEAD, TRAIL = b"RPL1", b"1LPR"
PACKED = b"RPZ1"  # a frame of zstd-compressed lines (an S3 writer's, a mirror's catalog lines)
ARROW = b"RPA1"  # a frame of a zstd-compressed Arrow IPC stream (a mirror's catalog lines)
_LEN = struct.Struct("<I")
START = len(HEAD) + _LEN.size  # a frame's bytes before its payload
OVERHEAD = 2 * START
_SCAN = 1 << 16


def frame(lines: bytes | memoryview, head: bytes = HEAD) -> bytes:
    """``lines`` framed (``head``: another kind of payload, e.g. compressed lines)."""
    size = _LEN.pack(len(lines))
    return head + size + lines + size + TRAIL


def unpack(payload: bytes | memoryview, limit: int) -> bytes:
    """zstd-compressed ``payload`` decompressed, at most ``limit`` bytes; ValueError when it
    is not that. The size a frame declares is checked first: python-zstandard trusts it
    over ``max_output_size`` and would allocate whatever a forged header claims."""
    try:
        _within(payload, limit)
        return zstandard.ZstdDecompressor().decompress(payload, max_output_size=limit)
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from None


def unpacked_lines(payload: bytes | memoryview, limit: int, piece: int) -> Iterator[bytes]:
    """The lines zstd-compressed in ``payload``, about ``piece`` bytes of whole lines at a
    time (what follows the last newline is no line), unpacked as they are read; ValueError
    when it is not that, or unpacks to more than ``limit`` bytes."""
    carry, total = b"", 0
    try:
        _within(payload, limit)
        reader = zstandard.ZstdDecompressor().stream_reader(payload)
        while block := reader.read(piece):
            total += len(block)
            if total > limit:
                raise ValueError(f"it decompresses to more than {limit:,} bytes")
            cut = block.rfind(b"\n") + 1
            if cut:
                yield b"".join((carry, memoryview(block)[:cut]))
            carry = block[cut:] if cut else carry + block
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from None


def _within(payload: bytes | memoryview, limit: int) -> None:
    if zstandard.frame_content_size(payload) > limit:
        raise ValueError(f"it says it decompresses to more than {limit:,} bytes")


@dataclass(frozen=True)
class Frame:
    start: int  # where the frame starts in its log
    entries: list[dict[str, Any]]  # its ledger lines, parsed (the hash chain checks them)


def length_at(fs: StoreFS, name: str, offset: int, head: bytes = HEAD) -> int:
    """The length of the frame at ``offset`` of log ``name`` (of payload kind ``head``); 0
    when there is none."""
    size = fs.size(name)
    if offset + OVERHEAD > size:
        return 0
    start = bytes(fs.read_range(name, offset, START))
    (n,) = _LEN.unpack(start[4:])
    end = offset + START + n
    if start[:4] != head or end + _LEN.size + len(TRAIL) > size:
        return 0
    return (
        OVERHEAD + n if bytes(fs.read_range(name, end, _LEN.size + 4)) == start[4:] + TRAIL else 0
    )


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
