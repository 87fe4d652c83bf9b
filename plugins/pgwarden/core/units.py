"""Human units in the config: durations ("15m", "1h30m", "7d") and sizes ("512MiB", "2GB")."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_PART = re.compile(r"(\d+)(ms|w|d|h|m|s)")
_DURATION_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_FACTOR = {
    None: 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"100ms"``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"``, ``"2w"``; a bare number means seconds."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like '15m', '1h' or '7d', got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"expected a non-negative duration, got {text!r}")
        return timedelta(seconds=text)
    compact = str(text).replace(" ", "")
    if not compact or _DURATION_PART.sub("", compact) != "":
        raise ValueError(
            f"expected a duration like '100ms', '90s', '15m', '1h30m', '7d' or '2w' "
            f"(units w, d, h, m, s, ms), got {text!r}"
        )
    return timedelta(seconds=sum(int(n) * _DURATION_SECONDS[u] for n, u in _DURATION_PART.findall(compact)))


def parse_size(text: str | int) -> int:
    """Bytes from ``"512MiB"``, ``"2GB"``, ``"1.5GiB"`` or a bare number of bytes."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size like '512MiB' or '2GiB', got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"expected a non-negative size, got {text!r}")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"expected a size like '512MiB', '2GiB' or '10GB', got {text!r}")
    return int(float(match.group(1)) * _SIZE_FACTOR[match.group(2)])


def format_size(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(delta: timedelta | float) -> str:
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{sec}s" if sec and not days else ""]
    return "".join(parts)
