"""Is the WAL archive unbroken? Which segments replay from a backup's start to a later point needs.

A restore replays WAL from the base backup's ``start_lsn`` on its timeline up to a target on a later
(or the same) timeline, following the target timeline's history the way PostgreSQL's recovery does:
each segment is read from the newest timeline that had begun by that segment
(``walnames.segments_on_timeline``). ``missing_segments`` lists the names of that path absent from
the archive; ``check_chain`` turns the answer into a :class:`ChainReport` whose message says what is
missing, how far recovery gets before the first gap (``replayable_to``), the newest restore point
before that, and what to do.

File names are PostgreSQL's (the repository's compression suffixes removed first). A ``.partial``
file stands in for the *last* segment of the range only: that is where ``pg_receivewal`` keeps the
segment it is still writing. Everywhere else a ``.partial`` is the tail of an abandoned timeline,
which recovery does not read.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pgwarden.core.lsn import Lsn
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.walnames import (
    DEFAULT_SEGMENT_SIZE,
    HistoryEntry,
    history_name,
    parse_segment_name,
    segment_start,
    segments_on_timeline,
    timeline_spans,
)

MAX_LISTED = 5
"""How many missing names a report lists; ``missing_count`` has the total."""


class TimelineNotReachable(ValueError):
    """The start timeline is not an ancestor of the end timeline at the start LSN: no replay joins them."""


def _check_reachable(start_tli: int, start_lsn: Lsn, end_tli: int, history: list[HistoryEntry]) -> None:
    spans = timeline_spans(end_tli, history)
    for span in spans:
        if span.timeline == start_tli and span.begin <= start_lsn and (span.end is None or start_lsn <= span.end):
            return
    path = ", ".join(
        f"timeline {s.timeline} from {s.begin}" + (f" to {s.end}" if s.end is not None else " on") for s in spans
    )
    raise TimelineNotReachable(
        f"timeline {start_tli} at {start_lsn} is not on the history of timeline {end_tli} ({path}): "
        f"WAL from there cannot be replayed onto timeline {end_tli}"
    )


def missing_segments(
    present: set[str],
    start_tli: int,
    start_lsn: Lsn,
    end_tli: int,
    end_lsn: Lsn,
    history: list[HistoryEntry],
    seg_size: int = DEFAULT_SEGMENT_SIZE,
) -> list[str]:
    """Segment names needed to replay ``[start_lsn, end_lsn)`` from ``start_tli`` onto ``end_tli``, absent from ``present``.

    ``history`` is ``parse_history_file`` of ``<end_tli>.history`` (``[]`` for timeline 1). Oldest
    first. ``TimelineNotReachable`` when ``start_tli`` at ``start_lsn`` is not on that history;
    ``ValueError`` when ``end_lsn < start_lsn``.
    """
    if end_lsn < start_lsn:
        raise ValueError(f"end_lsn {end_lsn} is before start_lsn {start_lsn}")
    _check_reachable(start_tli, start_lsn, end_tli, history)
    needed = segments_on_timeline(end_tli, history, start_lsn, end_lsn, seg_size)
    missing = [name for name in needed if name not in present]
    if missing and missing[-1] == needed[-1] and f"{needed[-1]}.partial" in present:
        missing.pop()
    return missing


def newest_point_before(points: Iterable[RestorePoint], consistent_at: Lsn, replayable_to: Lsn
                        ) -> RestorePoint | None:
    """The newest restore point a restore reaches: at or after the backup is consistent, before the gap.

    Recovery stops right after a restore point's record, which ends at its ``lsn``; ``lsn`` before
    ``replayable_to`` (not equal: a conservative margin) means every byte of it is there.
    """
    reachable = [p for p in points if consistent_at <= p.lsn < replayable_to]
    return max(reachable, key=lambda p: p.lsn, default=None)


@dataclass(frozen=True)
class ChainReport:
    """The answer of ``check_chain``: is the WAL from ``checked_from`` to ``checked_to`` all there?"""

    ok: bool
    start_timeline: int
    checked_from: Lsn
    end_timeline: int
    checked_to: Lsn
    segments_checked: int
    missing: tuple[str, ...]
    """the first ``MAX_LISTED`` missing file names, oldest first"""
    missing_count: int
    message: str
    replayable_to: Lsn
    """recovery from ``checked_from`` replays without a gap up to here (``checked_to`` when ``ok``)"""
    reachable_point: RestorePoint | None = None
    """the newest restore point before ``replayable_to`` (from the backup's consistency point on)"""

    def summary(self) -> str:
        return self.message

    def to_json_dict(self) -> dict[str, Any]:
        point = self.reachable_point
        return {
            "ok": self.ok,
            "start_timeline": self.start_timeline,
            "checked_from": str(self.checked_from),
            "end_timeline": self.end_timeline,
            "checked_to": str(self.checked_to),
            "segments_checked": self.segments_checked,
            "missing": list(self.missing),
            "missing_count": self.missing_count,
            "replayable_to": str(self.replayable_to),
            "reachable_point": point.to_json_dict() if point else None,
            "message": self.message,
        }


def _remedy(database: str) -> str:
    return f"take a new full backup (trigger {database}.backup_full) to start a new unbroken chain"


def describe_reachable(replayable_to: Lsn, timeline: int, point: RestorePoint | None) -> str:
    """Where a restore from the checked backup can go, with the restore point to ask for."""
    text = f"the WAL replays without a gap up to {replayable_to} on timeline {timeline}"
    if point is None:
        return text + "; no restore point is reachable between the backup's end and there"
    return (f"{text}; the newest reachable point is restore point {point.name!r} "
            f"({point.created_at.isoformat()}, LSN {point.lsn}): restore to it by name "
            f"(--target-name {shlex.quote(point.name)} in the CLI)")


def _replayable_to(missing: list[str], start_tli: int, start_lsn: Lsn, end_tli: int, end_lsn: Lsn,
                   history: list[HistoryEntry], seg_size: int) -> Lsn:
    """The start of the first missing segment; without the end timeline's ``.history`` file recovery
    cannot switch timelines either, so no further than the segment where the end timeline begins."""
    limits = [end_lsn]
    segments = [name for name in missing if name != history_name(end_tli)]
    if segments:
        limits.append(parse_segment_name(segments[0], seg_size)[1])
    if len(segments) < len(missing) and history and start_tli != end_tli:
        limits.append(segment_start(history[-1].switch_lsn, seg_size))
    return max(start_lsn, min(limits))


def check_chain(
    present: set[str],
    start_tli: int,
    start_lsn: Lsn,
    end_tli: int,
    end_lsn: Lsn,
    history: list[HistoryEntry],
    seg_size: int = DEFAULT_SEGMENT_SIZE,
    *,
    database: str,
    points: Iterable[RestorePoint] = (),
    consistent_at: Lsn | None = None,
) -> ChainReport:
    """``missing_segments`` as a report; the end timeline's ``.history`` file counts as needed too.

    ``points`` are the restore points to pick ``reachable_point`` from, and ``consistent_at`` the
    backup's ``stop_lsn`` (``start_lsn`` when not given): a restore point before it is not a target.
    """
    where = f"from timeline {start_tli} at {start_lsn} to timeline {end_tli} at {end_lsn}"
    points = list(points)
    consistent_at = consistent_at if consistent_at is not None else start_lsn

    def report(ok: bool, checked: int, missing: list[str], replayable_to: Lsn, message: str) -> ChainReport:
        return ChainReport(ok, start_tli, start_lsn, end_tli, end_lsn, checked, tuple(missing[:MAX_LISTED]),
                           len(missing), message, replayable_to,
                           newest_point_before(points, consistent_at, replayable_to))

    try:
        missing = missing_segments(present, start_tli, start_lsn, end_tli, end_lsn, history, seg_size)
        checked = len(segments_on_timeline(end_tli, history, start_lsn, end_lsn, seg_size))
    except TimelineNotReachable as exc:
        return report(False, 0, [], start_lsn, f"WAL chain of {database} is broken: {exc}; {_remedy(database)}")
    if end_tli > 1 and history_name(end_tli) not in present:
        missing.insert(0, history_name(end_tli))
    if not missing:
        return report(True, checked, [], end_lsn, f"WAL chain of {database} is complete {where} ({checked} segments)")
    replayable_to = _replayable_to(missing, start_tli, start_lsn, end_tli, end_lsn, history, seg_size)
    others = len(missing) - 1
    also = f" and {others} more file{'s' if others != 1 else ''}" if others else ""
    reachable = describe_reachable(replayable_to, end_tli, newest_point_before(points, consistent_at, replayable_to))
    message = (
        f"WAL chain of {database} has a gap: {missing[0]}{also} missing from the archive; "
        f"recovery {where} cannot replay past it: {reachable}; {_remedy(database)}"
    )
    return report(False, checked, missing, replayable_to, message)
