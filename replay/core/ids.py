"""Run ids: UUIDv7 (RFC 9562), so ids sort by creation time across processes."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0


def new_run_id() -> str:
    global _last
    with _lock:
        # Strictly increasing within a process even when the clock stalls or steps back.
        ms = max(time.time_ns() // 1_000_000, _last >> 12)
        stamp = max(ms << 12, _last + 1)
        _last = stamp
    ms, seq = stamp >> 12, stamp & 0xFFF
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid_text((ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand)


def uuid_text(value: int) -> str:
    """``str(uuid.UUID(int=value))``, without building the UUID: less than half the time."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
