"""Times as users type them: ISO-8601 with a zone, or a bare date (midnight UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from replay.errors import UsageError


def parse_time(text: str) -> datetime:
    """An aware UTC datetime from ISO-8601; a time without zone is refused, not guessed."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not an ISO-8601 time",
            hint="write e.g. 2026-03-14T09:30:00Z or 2026-03-14",
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(
            f"{text!r} has no timezone", hint="add one, e.g. 2026-03-14T09:30:00Z or +01:00"
        ) from None
    return parsed.astimezone(UTC)
