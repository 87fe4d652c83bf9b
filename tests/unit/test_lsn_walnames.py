from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.core.lsn import MAX_LSN_VALUE, Lsn
from pgwarden.core.walnames import (
    DEFAULT_SEGMENT_SIZE,
    HistoryEntry,
    TimelineSpan,
    check_segment_size,
    history_name,
    history_timeline,
    is_backup_history_name,
    is_history_name,
    is_partial,
    is_segment_name,
    parse_history_file,
    parse_segment_name,
    segment_end,
    segment_name,
    segment_number,
    segment_start,
    segments_between,
    segments_on_timeline,
    timeline_spans,
)

MiB = 2**20
SEGMENT_SIZES = [2**k for k in range(20, 31)]
lsns = st.integers(0, MAX_LSN_VALUE).map(Lsn)
timelines = st.integers(1, 2**32 - 1)


# --- Lsn -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "printed"),
    [
        ("16/B374D848", 0x16_B374D848, "16/B374D848"),
        ("0/0", 0, "0/0"),
        ("0/3000028", 0x3000028, "0/3000028"),
        ("16/b374d848", 0x16_B374D848, "16/B374D848"),
        ("00000000/00000001", 1, "0/1"),
        ("FFFFFFFF/FFFFFFFF", MAX_LSN_VALUE, "FFFFFFFF/FFFFFFFF"),
    ],
)
def test_lsn_parse_and_print(text, value, printed):
    lsn = Lsn.parse(text)
    assert lsn.value == value == int(lsn)
    assert str(lsn) == printed
    assert repr(lsn) == f"Lsn('{printed}')"


@pytest.mark.parametrize(
    "text",
    ["", "16", "16/", "/1", "123456789/0", "0/123456789", " 0/1", "0/1 ", "0/1\n", "G/0", "1/2/3", "-1/0",
     "0x1/0", "1 /0", None, 5, b"0/1"],
)
def test_lsn_parse_rejects(text):
    with pytest.raises(ValueError, match="expected a PostgreSQL LSN like '16/B374D848'"):
        Lsn.parse(text)


@pytest.mark.parametrize("value", [-1, 2**64, True, 1.0, "0/1", None])
def test_lsn_value_checked(value):
    with pytest.raises(ValueError, match="LSN"):
        Lsn(value)


def test_lsn_arithmetic_and_order():
    a, b = Lsn.parse("0/2000000"), Lsn.parse("0/3000000")
    assert b - a == 16 * MiB
    assert a - b == -16 * MiB
    assert a + 16 * MiB == b == 16 * MiB + a
    assert b - 16 * MiB == a
    assert isinstance(b - 1, Lsn) and isinstance(b - a, int)
    assert a < b and max(b, a) == b and sorted([b, a]) == [a, b]
    assert Lsn.parse("1/0") > Lsn.parse("0/FFFFFFFF")
    assert {Lsn(5), Lsn(5)} == {Lsn(5)}
    with pytest.raises(ValueError):
        a - 2**26
    with pytest.raises(TypeError):
        a < 5  # noqa: B015  -- an LSN is not a plain number
    with pytest.raises(TypeError):
        a + b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.value = 3  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(lsns, lsns)
def test_lsn_round_trip_and_order_match_integers(a, b):
    assert Lsn.parse(str(a)) == a
    assert Lsn.parse(str(a).lower()) == a
    hi, lo = str(a).split("/")
    assert Lsn.parse(f"{hi:0>8}/{lo:0>8}") == a
    assert (a < b) == (a.value < b.value) and (a == b) == (a.value == b.value)
    assert a - b == a.value - b.value


# --- segment names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeline", "lsn", "seg_size", "name"),
    [
        (1, "0/3000028", DEFAULT_SEGMENT_SIZE, "000000010000000000000003"),
        (1, "0/0", DEFAULT_SEGMENT_SIZE, "000000010000000000000000"),
        (1, "0/FFFFFFFF", DEFAULT_SEGMENT_SIZE, "0000000100000000000000FF"),
        (1, "1/0", DEFAULT_SEGMENT_SIZE, "000000010000000100000000"),
        (26, "16/B374D848", DEFAULT_SEGMENT_SIZE, "0000001A00000016000000B3"),
        (2, "1/7FFFFFFF", 2**30, "000000020000000100000001"),
        (1, "0/FFF00000", MiB, "000000010000000000000FFF"),
        (1, "A/12345678", 64 * MiB, "000000010000000A00000004"),
    ],
)
def test_segment_name_examples(timeline, lsn, seg_size, name):
    assert segment_name(timeline, Lsn.parse(lsn), seg_size) == name
    tli, first = parse_segment_name(name, seg_size)
    assert tli == timeline
    assert first == segment_start(Lsn.parse(lsn), seg_size)
    assert first <= Lsn.parse(lsn) < segment_end(first, seg_size)


@pytest.mark.parametrize(
    ("name", "seg_size", "message"),
    [
        ("000000010000000000000100", DEFAULT_SEGMENT_SIZE, "not a segment name for 16777216 byte segments"),
        ("000000010000000000000004", 2**30, "last 8 digits must be below 00000004"),
        ("0000000100000000000000ab", DEFAULT_SEGMENT_SIZE, "24 upper-case hex digits"),
        ("00000001000000000000000", DEFAULT_SEGMENT_SIZE, "24 upper-case hex digits"),
        ("000000010000000000000003.partial", DEFAULT_SEGMENT_SIZE, "24 upper-case hex digits"),
        ("000000000000000000000003", DEFAULT_SEGMENT_SIZE, "timeline 0"),
        ("000000010000000000000003", 3 * MiB, "power of two"),
    ],
)
def test_parse_segment_name_rejects(name, seg_size, message):
    with pytest.raises(ValueError, match=message):
        parse_segment_name(name, seg_size)


@pytest.mark.parametrize("seg_size", [0, MiB // 2, 3 * MiB, 2**31, True, 16.0 * MiB, "16MiB"])
def test_segment_size_checked(seg_size):
    with pytest.raises(ValueError, match="power of two from 1 MiB to 1 GiB"):
        check_segment_size(seg_size)
    with pytest.raises(ValueError, match="power of two"):
        segment_name(1, Lsn(0), seg_size)


@pytest.mark.parametrize("timeline", [0, -1, 2**32, True, "1"])
def test_timeline_checked(timeline):
    with pytest.raises(ValueError, match="timeline ids are integers from 1"):
        segment_name(timeline, Lsn(0))


def test_last_segment_has_no_end():
    last = Lsn(MAX_LSN_VALUE)
    assert segment_name(0xFFFFFFFF, last) == "FFFFFFFFFFFFFFFF000000FF"
    with pytest.raises(ValueError, match="last one"):
        segment_end(last)


@pytest.mark.parametrize(
    ("start", "end", "names"),
    [
        ("0/3000000", "0/3000000", []),
        ("0/2000028", "0/2000100", ["000000010000000000000002"]),
        ("0/2000000", "0/3000000", ["000000010000000000000002"]),  # end on a boundary: excluded
        ("0/2000028", "0/4000000", ["000000010000000000000002", "000000010000000000000003"]),
        ("0/2000028", "0/4000001",
         ["000000010000000000000002", "000000010000000000000003", "000000010000000000000004"]),
        ("0/FF000000", "1/1000000", ["0000000100000000000000FF", "000000010000000100000000"]),
    ],
)
def test_segments_between_examples(start, end, names):
    assert segments_between(1, Lsn.parse(start), Lsn.parse(end)) == names


def test_segments_between_rejects_backwards_range():
    with pytest.raises(ValueError, match="end_lsn 0/1 is before start_lsn 0/2"):
        segments_between(1, Lsn(2), Lsn(1))
    with pytest.raises(ValueError, match="must be an Lsn"):
        segments_between(1, 0, Lsn(1))  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(timelines, st.sampled_from(SEGMENT_SIZES), st.integers(0, 2**63), st.integers(0, 2**30))
def test_segments_between_covers_exactly_the_range(timeline, seg_size, start, length):
    start_lsn, end_lsn = Lsn(start), Lsn(start + length)
    names = segments_between(timeline, start_lsn, end_lsn, seg_size)
    if length == 0:
        assert names == []
        return
    firsts = [parse_segment_name(name, seg_size) for name in names]
    assert all(tli == timeline for tli, _ in firsts)
    assert names[0] == segment_name(timeline, start_lsn, seg_size)
    assert names[-1] == segment_name(timeline, end_lsn - 1, seg_size)
    assert all(b - a == seg_size for (_, a), (_, b) in zip(firsts, firsts[1:], strict=False))
    assert names == sorted(names)
    assert len(names) == segment_number(end_lsn - 1, seg_size) - segment_number(start_lsn, seg_size) + 1


@settings(max_examples=200, deadline=None)
@given(timelines, lsns, st.sampled_from(SEGMENT_SIZES))
def test_segment_name_round_trip(timeline, lsn, seg_size):
    name = segment_name(timeline, lsn, seg_size)
    assert is_segment_name(name)
    tli, first = parse_segment_name(name, seg_size)
    assert tli == timeline
    assert first == segment_start(lsn, seg_size) <= lsn
    assert lsn - first < seg_size
    assert first.value % seg_size == 0


# --- other archive file names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "segment", "partial", "history", "backup_history"),
    [
        ("000000010000000000000003", True, False, False, False),
        ("000000010000000000000003.partial", False, True, False, False),
        ("00000002.history", False, False, True, False),
        ("000000010000000000000002.00000028.backup", False, False, False, True),
        ("0000000100000000000000ab", False, False, False, False),
        ("000000010000000000000003.gz", False, False, False, False),
        ("0000000100000000000000030", False, False, False, False),
        ("00000002.history.partial", False, False, False, False),
        ("0000002.history", False, False, False, False),
        ("0000000a.history", False, False, False, False),
        ("", False, False, False, False),
        (None, False, False, False, False),
    ],
)
def test_file_kinds(name, segment, partial, history, backup_history):
    assert is_segment_name(name) is segment
    assert is_partial(name) is partial
    assert is_history_name(name) is history
    assert is_backup_history_name(name) is backup_history


def test_history_names():
    assert history_name(2) == "00000002.history"
    assert history_timeline("0000000A.history") == 10
    assert history_timeline(history_name(0xFFFFFFFF)) == 0xFFFFFFFF
    for bad in ["00000000.history", "0000000a.history", "00000002", "000000010000000000000003"]:
        with pytest.raises(ValueError):
            history_timeline(bad)


# --- timeline history files ----------------------------------------------------------------------

HISTORY_3 = (
    "1\t0/3000000\tno recovery target specified\n"
    "\n"
    "# written by hand during the 2024 incident\n"
    '2\t0/5800000\tat restore point "before_migration"\n'
)


def test_parse_history_file():
    assert parse_history_file(HISTORY_3) == [
        HistoryEntry(1, Lsn.parse("0/3000000"), "no recovery target specified"),
        HistoryEntry(2, Lsn.parse("0/5800000"), 'at restore point "before_migration"'),
    ]
    assert parse_history_file("") == []
    assert parse_history_file("1 0/3000000\r\n") == [HistoryEntry(1, Lsn(0x3000000), "")]
    assert parse_history_file("  1\t0/3000000\tbefore 2024-01-01 00:00:00+00\tx\n")[0].reason == (
        "before 2024-01-01 00:00:00+00\tx"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x\t0/3000000\treason", "line 1: expected '<timeline>"),
        ("1\n", "line 1: expected"),
        ("1\tnot-an-lsn\treason", "line 1: expected"),
        ("\n1\t0/3000000\tr\n1\t0/4000000\tr\n", "line 3: timeline ids must increase, got 1 after 1"),
        ("3\t0/3000000\tr\n2\t0/4000000\tr\n", "timeline ids must increase"),
        ("0\t0/3000000\tr", "timeline 0 is out of range"),
    ],
)
def test_parse_history_file_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_history_file(text)


def test_timeline_spans_and_segments_across_switches():
    history = parse_history_file(HISTORY_3)
    assert timeline_spans(3, history) == [
        TimelineSpan(1, Lsn(0), Lsn.parse("0/3000000")),
        TimelineSpan(2, Lsn.parse("0/3000000"), Lsn.parse("0/5800000")),
        TimelineSpan(3, Lsn.parse("0/5800000"), None),
    ]
    assert timeline_spans(1, []) == [TimelineSpan(1, Lsn(0), None)]
    # Each segment comes from the newest timeline begun by then; the segment holding a switch
    # point (0/5800000 is inside segment 5) is read from the new timeline.
    assert segments_on_timeline(3, history, Lsn.parse("0/2000000"), Lsn.parse("0/6000001")) == [
        "000000010000000000000002",
        "000000020000000000000003",
        "000000020000000000000004",
        "000000030000000000000005",
        "000000030000000000000006",
    ]
    assert segments_on_timeline(3, history, Lsn(5), Lsn(5)) == []
    with pytest.raises(ValueError, match="names timeline 2 as an ancestor of timeline 2"):
        timeline_spans(2, history)
