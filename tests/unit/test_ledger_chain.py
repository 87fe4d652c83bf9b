"""The erasure ledger's hash chain and subject references (pure logic)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgwarden.core.lifecycle.ledger import (
    GENESIS_HASH,
    ErasureRecord,
    LedgerEntry,
    StoredEntry,
    TableErasure,
    compare_with_export,
    next_entry,
    subject_reference,
    verify_chain,
)

KEY = b"k" * 32
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def record(i: int, kind: str = "erasure") -> ErasureRecord:
    return ErasureRecord(
        kind=kind, request_id=f"req-{i}", subject_ref=subject_reference(KEY, "appdb", '"public"."users"', str(i)),
        policy_version="p" * 16,
        tables=(TableErasure('"public"."sessions"', "delete_row", i), TableErasure('"public"."users"', "null:phone", 1)),
        dag_id="appdb.gdpr_erasure", run_id="scheduled__2026-11-30", task_id="erase", try_number=1,
        erased_at=T0 + timedelta(seconds=i),
    )


def chain(n: int) -> list[LedgerEntry]:
    entries: list[LedgerEntry] = []
    for i in range(1, n + 1):
        entries.append(next_entry(entries[-1] if entries else None, record(i)))
    return entries


def test_a_fresh_chain_starts_at_genesis_and_verifies() -> None:
    entries = chain(5)
    assert entries[0].seq == 1 and entries[0].prev_hash == GENESIS_HASH
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))
    report = verify_chain(entries)
    assert report.ok and report.entries == 5 and report.head_seq == 5 and report.head_hash == entries[-1].entry_hash
    assert verify_chain([]).ok


def test_an_edited_entry_is_named() -> None:
    entries = chain(5)
    edited = dataclasses.replace(entries[2].record, tables=(TableErasure('"public"."users"', "delete_row", 0),))
    entries[2] = dataclasses.replace(entries[2], record=edited)
    report = verify_chain(entries)
    assert not report.ok and report.problem.seq == 3 and "edited" in report.problem.reason


def test_a_deleted_entry_is_named_by_the_gap() -> None:
    entries = chain(5)
    del entries[1]
    report = verify_chain(entries)
    assert report.problem.seq == 3 and "entry 2 is missing" in report.problem.reason
    del entries[0]
    assert "entries 1..2 are missing" in verify_chain(entries).problem.reason


def test_a_reordered_chain_is_named() -> None:
    entries = chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    report = verify_chain(entries)
    assert report.problem.seq == 3 and "reordered" in report.problem.reason
    # Positions swapped as well (rows renumbered): the link gives it away.
    entries = chain(5)
    a, b = entries[1], entries[2]
    entries[1] = dataclasses.replace(b, seq=2)
    entries[2] = dataclasses.replace(a, seq=3)
    report = verify_chain(entries)
    assert report.problem.seq == 2 and "links to entry 3" in report.problem.reason


def test_a_deleted_entry_with_the_chain_recomputed_is_caught_by_the_export() -> None:
    exported = chain(5)
    rewritten: list[LedgerEntry] = []
    for e in [e for e in exported if e.seq != 3]:
        rewritten.append(next_entry(rewritten[-1] if rewritten else None, e.record))
    assert verify_chain(rewritten).ok  # the database alone looks fine
    comparison = compare_with_export(rewritten, exported, (5, exported[-1].entry_hash))
    assert not comparison.ok and comparison.problem.seq == 3 and "rewritten" in comparison.problem.reason
    # A tail deleted from the database (no recompute needed) is caught too.
    comparison = compare_with_export(exported[:3], exported)
    assert comparison.problem.seq == 4 and "missing from the database" in comparison.problem.reason


def test_the_database_may_be_ahead_of_the_export_but_the_export_may_not_be_cut_short() -> None:
    entries = chain(6)
    comparison = compare_with_export(entries, entries[:4], (4, entries[3].entry_hash))
    assert comparison.ok and comparison.exported == 4 and comparison.not_yet_exported == 2
    comparison = compare_with_export(entries, entries[:3], (4, entries[3].entry_hash))
    assert not comparison.ok and "exported objects are missing" in comparison.problem.reason
    assert compare_with_export([], [], None).ok


def test_entries_survive_a_json_round_trip_with_the_same_hash() -> None:
    for entry in chain(3):
        back = LedgerEntry.from_json_dict(json.loads(json.dumps(entry.to_json_dict())))
        assert back == entry and back.computed_hash() == entry.entry_hash


def test_times_are_normalized_to_utc_so_the_hash_does_not_depend_on_the_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    a = dataclasses.replace(record(1), erased_at=T0)
    b = dataclasses.replace(record(1), erased_at=T0.astimezone(plus2))
    assert next_entry(None, a).entry_hash == next_entry(None, b).entry_hash
    assert a.to_json_dict()["erased_at"] == "2026-11-30T12:00:00.000000Z"
    with pytest.raises(ValueError):
        dataclasses.replace(record(1), erased_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        dataclasses.replace(record(1), kind="oops")


def test_subject_references_are_keyed_and_unambiguous() -> None:
    ref = subject_reference(KEY, "appdb", '"public"."users"', "42")
    assert len(ref) == 64 and int(ref, 16) >= 0
    assert ref == subject_reference(KEY, "appdb", '"public"."users"', "42")
    assert ref != subject_reference(b"other key", "appdb", '"public"."users"', "42")
    assert ref != subject_reference(KEY, "otherdb", '"public"."users"', "42")
    # No split of the same characters collides.
    assert subject_reference(KEY, "a", "b.c", "1") != subject_reference(KEY, "a", "b", ".c1")
    with pytest.raises(ValueError):
        subject_reference(b"", "appdb", "t", "1")


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8), st.data())
def test_changing_any_row_count_breaks_the_chain_at_that_entry(counts: list[int], data: st.DataObject) -> None:
    entries: list[LedgerEntry] = []
    for i, rows in enumerate(counts, 1):
        rec = dataclasses.replace(record(i), tables=(TableErasure('"s"."t"', "delete_row", rows),))
        entries.append(next_entry(entries[-1] if entries else None, rec))
    victim = data.draw(st.integers(min_value=0, max_value=len(entries) - 1))
    changed = dataclasses.replace(entries[victim].record,
                                  tables=(TableErasure('"s"."t"', "delete_row", counts[victim] + 1),))
    entries[victim] = dataclasses.replace(entries[victim], record=changed)
    assert verify_chain(entries).problem.seq == victim + 1


def test_an_entry_read_back_unparsed_hashes_like_the_entry_itself() -> None:
    for entry in chain(3):
        stored = StoredEntry.from_json_dict(json.loads(json.dumps(entry.to_json_dict())))
        assert stored.computed_hash() == entry.entry_hash and stored.entry() == entry
        assert stored.to_json_dict() == entry.to_json_dict()
    entries = [StoredEntry.from_json_dict(e.to_json_dict()) for e in chain(4)]
    assert verify_chain(entries).ok
    entries[2] = dataclasses.replace(entries[2], record_json=entries[2].record_json.replace('"rows":3', '"rows":99'))
    assert verify_chain(entries).problem.seq == 3


def test_entries_already_verified_elsewhere_are_not_hashed_again_but_still_linked() -> None:
    entries = [StoredEntry.from_json_dict(e.to_json_dict()) for e in chain(4)]
    forged = entries[1].record_json.replace('"req-2"', '"forged"')  # content no longer matches its hash
    entries[1] = dataclasses.replace(entries[1], record_json=forged)
    assert verify_chain(entries).problem.seq == 2
    assert verify_chain(entries, verified=lambda e: e.seq == 2).ok  # the caller vouched for it
    del entries[2]
    assert verify_chain(entries, verified=lambda e: True).problem.seq == 4  # links are always checked
