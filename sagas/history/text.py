"""How the times of a saga's path read: in UTC to the millisecond, durations in ms
or s as fits."""

from datetime import UTC, datetime, timedelta


def instant(moment: datetime | None) -> str:
    """A time in UTC to the millisecond: ``2026-12-01 18:56:03.120``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(delta: timedelta | None) -> str:
    """A duration as an operator reads it: ``0.4 ms``, ``12 ms``, ``1.52 s``,
    ``2 min 05 s``, ``1 h 02 min``."""
    if delta is None:
        return "-"
    ms = delta.total_seconds() * 1000
    if ms < 9.95:
        return f"{ms:.1f} ms"
    if ms < 999.5:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s" if ms < 10_000 else f"{ms / 1000:.1f} s"
    seconds = round(ms / 1000)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
