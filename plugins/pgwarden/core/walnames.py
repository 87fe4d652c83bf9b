"""WAL file names, segment arithmetic and timeline history files, as PostgreSQL defines them.

A WAL segment holds ``seg_size`` bytes of the log (16 MiB unless ``initdb --wal-segsize`` chose another
power of two from 1 MiB to 1 GiB). Its file name is three 8-digit upper-case hex numbers: the timeline,
then the segment number split at 4 GiB boundaries (``xlogid``, ``seg``)::

    00000001 00000000 00000003   timeline 1, segment 3 = LSN 0/3000000 up to (not including) 0/4000000

Other files in the archive: ``00000002.history`` (how timeline 2 branched off its ancestors),
``<segment>.partial`` (the last, incomplete segment of a timeline, written at promotion or by
``pg_receivewal``) and ``<segment>.<offset>.backup`` (backup history files).

Segment ranges are half-open, like PostgreSQL's own arithmetic: a segment *covers* ``[start, end)``,
and the WAL a backup needs between ``start_lsn`` and ``stop_lsn`` lives in the segments covering the
bytes ``[start_lsn, stop_lsn)``, i.e. from the segment containing ``start_lsn`` to the segment
containing the byte just before ``stop_lsn`` (PostgreSQL's ``XLByteToPrevSeg``, the file
``pg_backup_stop`` waits for).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pgwarden.core.lsn import MAX_LSN_VALUE, Lsn

DEFAULT_SEGMENT_SIZE = 16 * 2**20
MIN_SEGMENT_SIZE = 2**20
MAX_SEGMENT_SIZE = 2**30
MAX_TIMELINE = 2**32 - 1

_HEX8 = "[0-9A-F]{8}"
_SEGMENT = re.compile(f"({_HEX8})({_HEX8})({_HEX8})")
_PARTIAL = re.compile("[0-9A-F]{24}\\.partial")
_HISTORY = re.compile(f"({_HEX8})\\.history")
_BACKUP_HISTORY = re.compile(f"[0-9A-F]{{24}}\\.{_HEX8}\\.backup")
# readTimeLineHistory() uses sscanf("%u\t%X/%X"): any whitespace separates the fields.
_HISTORY_LINE = re.compile(r"([0-9]+)\s+([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8})(?:\s+(.*))?")


def check_segment_size(seg_size: int) -> int:
    """Return ``seg_size`` if PostgreSQL allows it: a power of two from 1 MiB to 1 GiB."""
    if (
        not isinstance(seg_size, int)
        or isinstance(seg_size, bool)
        or not MIN_SEGMENT_SIZE <= seg_size <= MAX_SEGMENT_SIZE
        or seg_size & (seg_size - 1)
    ):
        raise ValueError(
            f"WAL segment size must be a power of two from 1 MiB to 1 GiB (16777216 by default), got {seg_size!r}"
        )
    return seg_size


def _check_timeline(timeline: int) -> int:
    if not isinstance(timeline, int) or isinstance(timeline, bool) or not 1 <= timeline <= MAX_TIMELINE:
        raise ValueError(f"timeline ids are integers from 1 to {MAX_TIMELINE}, got {timeline!r}")
    return timeline


def _check_lsn(lsn: Lsn, what: str = "lsn") -> Lsn:
    if not isinstance(lsn, Lsn):
        raise ValueError(f"{what} must be an Lsn (use Lsn.parse('0/3000000')), got {lsn!r}")
    return lsn


def segment_number(lsn: Lsn, seg_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The number of the segment containing ``lsn`` (PostgreSQL's ``XLByteToSeg``)."""
    return _check_lsn(lsn).value // check_segment_size(seg_size)


def _name(timeline: int, segno: int, seg_size: int) -> str:
    per_xlogid = 2**32 // seg_size
    return f"{timeline:08X}{segno // per_xlogid:08X}{segno % per_xlogid:08X}"


def segment_name(timeline: int, lsn: Lsn, seg_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """File name of the segment of ``timeline`` containing ``lsn``: ``"000000010000000000000003"``."""
    return _name(_check_timeline(timeline), segment_number(lsn, seg_size), seg_size)


def parse_segment_name(name: str, seg_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, Lsn]:
    """``(timeline, first LSN of the segment)`` from a bare segment file name (no ``.partial``)."""
    check_segment_size(seg_size)
    match = _SEGMENT.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"expected a WAL segment file name of 24 upper-case hex digits like "
            f"'000000010000000000000003', got {name!r}"
        )
    timeline, xlogid, seg = (int(part, 16) for part in match.groups())
    per_xlogid = 2**32 // seg_size
    if seg >= per_xlogid:
        raise ValueError(
            f"{name!r} is not a segment name for {seg_size} byte segments: its last 8 digits must be "
            f"below {per_xlogid:08X} (was the cluster initialised with another --wal-segsize?)"
        )
    if timeline == 0:
        raise ValueError(f"{name!r} names timeline 0, which PostgreSQL never uses")
    return timeline, Lsn((xlogid * per_xlogid + seg) * seg_size)


def segment_start(lsn: Lsn, seg_size: int = DEFAULT_SEGMENT_SIZE) -> Lsn:
    """First byte of the segment containing ``lsn``."""
    return Lsn(segment_number(lsn, seg_size) * seg_size)


def segment_end(lsn: Lsn, seg_size: int = DEFAULT_SEGMENT_SIZE) -> Lsn:
    """First byte *after* the segment containing ``lsn`` (exclusive end; the next segment's start)."""
    end = (segment_number(lsn, seg_size) + 1) * seg_size
    if end > MAX_LSN_VALUE:
        raise ValueError(f"the segment containing {lsn} is the last one; its end lies beyond 2**64 - 1")
    return Lsn(end)


def segments_between(
    timeline: int, start_lsn: Lsn, end_lsn: Lsn, seg_size: int = DEFAULT_SEGMENT_SIZE
) -> list[str]:
    """Names of the segments of ``timeline`` holding the WAL bytes ``[start_lsn, end_lsn)``, oldest first.

    The segment containing ``start_lsn`` is always first. The last one is the segment containing
    ``end_lsn - 1``: the segment containing ``end_lsn`` is included when ``end_lsn`` lies inside it and
    left out when ``end_lsn`` is exactly a segment boundary (no byte of it is in the range). An empty
    range (``end_lsn == start_lsn``) gives ``[]``; ``end_lsn < start_lsn`` is a ``ValueError``.
    For a backup, ``segments_between(tli, start_lsn, stop_lsn)`` is the WAL it needs to be consistent.
    """
    return [_name(timeline, segno, seg_size) for segno in _segment_numbers(timeline, start_lsn, end_lsn, seg_size)]


def _segment_numbers(timeline: int, start_lsn: Lsn, end_lsn: Lsn, seg_size: int) -> range:
    _check_timeline(timeline)
    _check_lsn(start_lsn, "start_lsn")
    _check_lsn(end_lsn, "end_lsn")
    check_segment_size(seg_size)
    if end_lsn < start_lsn:
        raise ValueError(f"end_lsn {end_lsn} is before start_lsn {start_lsn}")
    if end_lsn == start_lsn:
        return range(0)
    return range(start_lsn.value // seg_size, (end_lsn.value - 1) // seg_size + 1)


def is_segment_name(name: str) -> bool:
    """24 upper-case hex digits (PostgreSQL's ``IsXLogFileName``); says nothing about the segment size."""
    return isinstance(name, str) and _SEGMENT.fullmatch(name) is not None


def is_partial(name: str) -> bool:
    """A segment name followed by ``.partial``; ``name.removesuffix(".partial")`` is the segment."""
    return isinstance(name, str) and _PARTIAL.fullmatch(name) is not None


def is_history_name(name: str) -> bool:
    """A timeline history file name: 8 upper-case hex digits and ``.history`` (``"00000002.history"``)."""
    return isinstance(name, str) and _HISTORY.fullmatch(name) is not None


def is_backup_history_name(name: str) -> bool:
    """A backup history file name: ``"000000010000000000000002.00000028.backup"``."""
    return isinstance(name, str) and _BACKUP_HISTORY.fullmatch(name) is not None


def history_name(timeline: int) -> str:
    """``"00000002.history"`` for timeline 2."""
    return f"{_check_timeline(timeline):08X}.history"


def history_timeline(name: str) -> int:
    """The timeline a history file describes: ``history_timeline("0000000A.history") == 10``."""
    match = _HISTORY.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"expected a timeline history file name like '00000002.history', got {name!r}")
    return _check_timeline(int(match.group(1), 16))


class HistoryEntry(NamedTuple):
    """One line of a ``.history`` file: the server left ``parent_tli`` at ``switch_lsn``."""

    parent_tli: int
    switch_lsn: Lsn
    reason: str


def parse_history_file(text: str) -> list[HistoryEntry]:
    """The ancestors recorded in a timeline history file, oldest first.

    Lines are ``<parent tli>\\t<switch LSN>\\t<reason>``; blank lines and lines starting with ``#`` are
    ignored, as PostgreSQL's ``readTimeLineHistory`` does. Timeline ids must increase line by line.
    """
    entries: list[HistoryEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _HISTORY_LINE.fullmatch(line)
        if match is None:
            raise ValueError(
                f"timeline history line {number}: expected '<timeline>\\t<switch LSN>\\t<reason>' "
                f"like '1\\t0/3000000\\tno recovery target specified', got {raw!r}"
            )
        tli = int(match.group(1))
        if not 1 <= tli <= MAX_TIMELINE:
            raise ValueError(f"timeline history line {number}: timeline {tli} is out of range")
        if entries and tli <= entries[-1].parent_tli:
            raise ValueError(
                f"timeline history line {number}: timeline ids must increase, got {tli} "
                f"after {entries[-1].parent_tli}"
            )
        entries.append(HistoryEntry(tli, Lsn.parse(match.group(2)), (match.group(3) or "").strip()))
    return entries


class TimelineSpan(NamedTuple):
    """The WAL ``[begin, end)`` that a timeline contributes to a history; ``end`` None while current."""

    timeline: int
    begin: Lsn
    end: Lsn | None


def timeline_spans(timeline: int, history: list[HistoryEntry]) -> list[TimelineSpan]:
    """Which timeline holds which stretch of WAL, oldest first, for a server on ``timeline``.

    ``history`` is ``parse_history_file`` of ``<timeline>.history`` (empty for timeline 1).
    """
    _check_timeline(timeline)
    spans: list[TimelineSpan] = []
    begin = Lsn(0)
    for entry in history:
        spans.append(TimelineSpan(entry.parent_tli, begin, entry.switch_lsn))
        begin = entry.switch_lsn
    if history and history[-1].parent_tli >= timeline:
        raise ValueError(
            f"the history names timeline {history[-1].parent_tli} as an ancestor of timeline {timeline}"
        )
    spans.append(TimelineSpan(timeline, begin, None))
    return spans


def segments_on_timeline(
    timeline: int,
    history: list[HistoryEntry],
    start_lsn: Lsn,
    end_lsn: Lsn,
    seg_size: int = DEFAULT_SEGMENT_SIZE,
) -> list[str]:
    """Segment names that recovery to ``timeline`` reads for the WAL bytes ``[start_lsn, end_lsn)``.

    Like ``segments_between``, but each segment comes from the newest timeline that had begun by that
    segment (PostgreSQL's ``XLogFileReadAnyTLI``): the segment holding a switch point is read from
    the new timeline, which starts with a copy of the old one up to the switch.
    """
    spans = timeline_spans(timeline, history)
    result = []
    for segno in _segment_numbers(timeline, start_lsn, end_lsn, seg_size):
        tli = next(s.timeline for s in reversed(spans) if s.begin.value // seg_size <= segno)
        result.append(_name(tli, segno, seg_size))
    return result
