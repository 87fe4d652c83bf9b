"""PostgreSQL log sequence numbers (``pg_lsn``): a byte position in the write-ahead log.

An LSN is an unsigned 64-bit integer written as two hex numbers, the high and the low 32 bits:
``16/B374D848``. PostgreSQL prints them upper-case without zero padding, and so does ``str(lsn)``;
``Lsn.parse`` accepts what PostgreSQL's ``pg_lsn`` input accepts (1 to 8 hex digits each side,
either case, nothing else around them).

LSNs compare and subtract like PostgreSQL's ``pg_lsn``: ``a - b`` is the signed distance in bytes.
Positions on different timelines share one LSN space, so comparing them says nothing about which
timeline is newer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import overload

MAX_LSN_VALUE = 2**64 - 1

_LSN_TEXT = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


@dataclass(frozen=True, order=True, repr=False)
class Lsn:
    """An immutable WAL position. ``Lsn(0x16B374D848)`` or ``Lsn.parse("16/B374D848")``."""

    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise ValueError(f"an LSN is an integer byte position, got {self.value!r}")
        if not 0 <= self.value <= MAX_LSN_VALUE:
            raise ValueError(f"an LSN lies between 0 and 2**64 - 1, got {self.value}")

    @classmethod
    def parse(cls, text: str) -> Lsn:
        """Read PostgreSQL's text form, ``"16/B374D848"``."""
        match = _LSN_TEXT.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"expected a PostgreSQL LSN like '16/B374D848' (two hex numbers of 1-8 digits "
                f"separated by '/'), got {text!r}"
            )
        return cls((int(match.group(1), 16) << 32) | int(match.group(2), 16))

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"

    def __int__(self) -> int:
        return self.value

    def __add__(self, other: int) -> Lsn:
        if isinstance(other, Lsn) or not isinstance(other, int):
            return NotImplemented
        return Lsn(self.value + other)

    __radd__ = __add__

    @overload
    def __sub__(self, other: Lsn) -> int: ...
    @overload
    def __sub__(self, other: int) -> Lsn: ...

    def __sub__(self, other: Lsn | int) -> int | Lsn:
        """``lsn - lsn`` is the distance in bytes (may be negative); ``lsn - n`` is an earlier LSN."""
        if isinstance(other, Lsn):
            return self.value - other.value
        if isinstance(other, int):
            return Lsn(self.value - other)
        return NotImplemented
