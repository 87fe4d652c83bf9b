"""The erasure ledger as pure data: PII-free records, a SHA-256 hash chain, and its verification.

An erasure (or a re-apply after a restore) becomes one ``ErasureRecord``: request id, the keyed
HMAC reference of the subject (never its id, never a value), the policy version, and per table the
method and the row count. Appended, it becomes a ``LedgerEntry`` at position ``seq`` whose hash
covers the previous entry's hash and the record's canonical JSON::

    entry_hash = sha256(prev_hash || canonical_json({"seq": seq, "record": record}))

with ``prev_hash`` of the first entry 64 zeros. Editing, deleting or reordering an entry breaks the
chain at that entry; deleting one and recomputing every hash after it does not, which is why the chain
is also exported outside the database and ``compare_with_export`` checks the two agree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

GENESIS_HASH = "0" * 64
SUBJECT_REFERENCE_VERSION = "pgwarden.subject.v1"

RecordKind = Literal["erasure", "reapply"]
RECORD_KINDS: tuple[str, ...] = ("erasure", "reapply")


def subject_reference(key: bytes, database: str, subject_table: str, subject_id: str) -> str:
    """The only form in which a subject reaches the ledger: hex HMAC-SHA256 with the erasure key.

    The parts are JSON-encoded as a list, so no choice of table name or id can collide with
    another split of the same characters. Without the key, the reference cannot be linked back to
    an id by trying candidate ids.
    """
    if not key:
        raise ValueError("the subject reference key is empty")
    message = json.dumps(
        [SUBJECT_REFERENCE_VERSION, database, subject_table, str(subject_id)],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def format_time(moment: datetime) -> str:
    """UTC, microseconds, ``Z``: the one spelling of a time inside a hashed record."""
    if moment.tzinfo is None:
        raise ValueError(f"ledger times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # fast, and reads the ``Z`` (Python 3.11)
    if moment.tzinfo is None:
        raise ValueError(f"ledger time without a time zone: {text!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class TableErasure:
    """What happened in one table: its quoted qualified name, the method, how many rows.

    ``method`` is ``delete_row`` or per-column strategies such as ``null:phone,redact_email:email``:
    names only, never values.
    """

    table: str
    method: str
    rows: int

    def to_json_dict(self) -> dict[str, Any]:
        return {"table": self.table, "method": self.method, "rows": self.rows}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> TableErasure:
        return cls(table=str(data["table"]), method=str(data["method"]), rows=int(data["rows"]))


@dataclass(frozen=True)
class ErasureRecord:
    """One erasure or re-apply, PII-free. ``erased_at`` is timezone-aware; kept to the microsecond."""

    kind: RecordKind
    request_id: str
    subject_ref: str
    policy_version: str
    tables: tuple[TableErasure, ...]
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    try_number: int | None
    erased_at: datetime

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"ledger record kind must be one of {RECORD_KINDS}, got {self.kind!r}")
        if self.erased_at.tzinfo is None:
            raise ValueError("erased_at must be timezone-aware")
        # Normalize to UTC so equality and hashing do not depend on the caller's zone.
        object.__setattr__(self, "erased_at", self.erased_at.astimezone(UTC))
        object.__setattr__(self, "tables", tuple(self.tables))

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "request_id": self.request_id,
            "subject_ref": self.subject_ref,
            "policy_version": self.policy_version,
            "tables": [t.to_json_dict() for t in self.tables],
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
            "erased_at": format_time(self.erased_at),
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ErasureRecord:
        try_number = data.get("try_number")
        return cls(
            kind=data["kind"],
            request_id=str(data["request_id"]),
            subject_ref=str(data["subject_ref"]),
            policy_version=str(data["policy_version"]),
            tables=tuple(TableErasure.from_json_dict(t) for t in data["tables"]),
            dag_id=data.get("dag_id"),
            run_id=data.get("run_id"),
            task_id=data.get("task_id"),
            try_number=None if try_number is None else int(try_number),
            erased_at=parse_time(data["erased_at"]),
        )


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text as is: the same bytes for the same value, everywhere."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def body_hash(seq: int, prev_hash: str, body: dict[str, Any]) -> str:
    """The entry hash over a record's JSON form (``ErasureRecord.to_json_dict()`` or the same read back)."""
    text = canonical_json({"seq": seq, "record": body})
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def entry_hash(seq: int, prev_hash: str, record: ErasureRecord) -> str:
    return body_hash(seq, prev_hash, record.to_json_dict())


@dataclass(frozen=True)
class LedgerEntry:
    """A record at its chain position. ``entry_hash`` as stored; ``verify_chain`` recomputes it."""

    seq: int
    prev_hash: str
    entry_hash: str
    record: ErasureRecord

    @classmethod
    def chain(cls, seq: int, prev_hash: str, record: ErasureRecord) -> LedgerEntry:
        """The entry that follows ``prev_hash`` at ``seq``."""
        return cls(seq=seq, prev_hash=prev_hash, entry_hash=entry_hash(seq, prev_hash, record), record=record)

    def computed_hash(self) -> str:
        return entry_hash(self.seq, self.prev_hash, self.record)

    def to_json_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev_hash": self.prev_hash, "entry_hash": self.entry_hash,
                "record": self.record.to_json_dict()}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        return cls(seq=int(data["seq"]), prev_hash=str(data["prev_hash"]), entry_hash=str(data["entry_hash"]),
                   record=ErasureRecord.from_json_dict(data["record"]))


@dataclass(frozen=True)
class StoredEntry:
    """An entry as stored: the record kept as its canonical JSON text. Its hash is computed from that text
    without parsing it (``canonical_json`` of ``{"record": r, "seq": n}`` is ``{"record":<r>,"seq":n}``),
    which is what keeps ``ledger verify`` over 100k entries within seconds."""

    seq: int
    prev_hash: str
    entry_hash: str
    record_json: str

    def computed_hash(self) -> str:
        text = f'{{"record":{self.record_json},"seq":{self.seq}}}'
        return hashlib.sha256((self.prev_hash + text).encode()).hexdigest()

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.record_json)

    def entry(self) -> LedgerEntry:
        return LedgerEntry(self.seq, self.prev_hash, self.entry_hash, ErasureRecord.from_json_dict(self.body))

    def to_json_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev_hash": self.prev_hash, "entry_hash": self.entry_hash, "record": self.body}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> StoredEntry:
        """From an exported entry, whose record is a JSON object (readable in the export)."""
        return cls(int(data["seq"]), str(data["prev_hash"]), str(data["entry_hash"]), canonical_json(data["record"]))

    @classmethod
    def of(cls, entry: LedgerEntry) -> StoredEntry:
        return cls(entry.seq, entry.prev_hash, entry.entry_hash, canonical_json(entry.record.to_json_dict()))


def next_entry(head: LedgerEntry | None, record: ErasureRecord) -> LedgerEntry:
    """The entry that appends ``record`` after ``head`` (``None``: the first entry)."""
    if head is None:
        return LedgerEntry.chain(1, GENESIS_HASH, record)
    return LedgerEntry.chain(head.seq + 1, head.entry_hash, record)


@dataclass(frozen=True)
class ChainProblem:
    """The first place a chain stops holding: the entry's position and why, in words."""

    seq: int
    reason: str

    def describe(self) -> str:
        return f"entry {self.seq}: {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking a chain: its length, its head, and the first problem if any."""

    entries: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "head_seq": self.head_seq, "head_hash": self.head_hash, "ok": self.ok,
                "problem": None if self.problem is None else {"seq": self.problem.seq,
                                                              "reason": self.problem.reason}}

    def summary(self) -> str:
        if self.problem:
            return f"ledger chain BROKEN at {self.problem.describe()} ({self.entries} entries read)"
        return f"ledger chain holds: {self.entries} entries, head {self.head_seq} {self.head_hash[:16]}"


def verify_chain(entries: Iterable[LedgerEntry | StoredEntry], after: tuple[int, str] = (0, GENESIS_HASH),
                 verified: Callable[[Any], bool] | None = None) -> ChainReport:
    """Walk ``entries`` (in the order they are stored) and name the first one that breaks the chain.

    ``after`` (seq, hash) is the entry the first one follows: the genesis by default, the exported
    head when checking only the entries after it. ``verified(entry)`` true: its content was already
    checked against the same hash (the database's copy of an exported entry), so it is not hashed again.

    Reasons, in the order checked per entry: a position out of sequence (a gap: entries missing; a
    repeat or step back: reordered), a link to something other than the previous entry (reordered
    when it links to another entry of the chain, otherwise the entry before it was removed or
    replaced), content that no longer matches its hash (edited).
    """
    listed = list(entries)
    by_hash = {e.entry_hash: e.seq for e in listed}
    positions = {e.seq for e in listed}
    prev_seq, prev_hash = after
    for entry in listed:
        problem = _link_problem(entry, prev_seq, prev_hash, by_hash, positions)
        if problem is not None:
            return ChainReport(len(listed), prev_seq, prev_hash, ChainProblem(entry.seq, problem))
        if not (verified is not None and verified(entry)) and entry.computed_hash() != entry.entry_hash:
            return ChainReport(len(listed), prev_seq, prev_hash, ChainProblem(
                entry.seq, "its content does not match its hash: the entry was edited"))
        prev_seq, prev_hash = entry.seq, entry.entry_hash
    return ChainReport(len(listed), prev_seq, prev_hash)


def _link_problem(entry: LedgerEntry | StoredEntry, prev_seq: int, prev_hash: str, by_hash: dict[str, int],
                  positions: set[int]) -> str | None:
    if entry.seq > prev_seq + 1 and prev_seq + 1 in positions:
        return f"it comes before entry {prev_seq + 1} in stored order: the chain was reordered"
    if entry.seq > prev_seq + 1:
        if entry.seq == prev_seq + 2:
            return f"entry {prev_seq + 1} is missing before it"
        return f"entries {prev_seq + 1}..{entry.seq - 1} are missing before it"
    if entry.seq <= prev_seq:
        return f"position {entry.seq} follows position {prev_seq}: the chain was reordered"
    if entry.prev_hash == prev_hash:
        return None
    linked = by_hash.get(entry.prev_hash)
    if linked is not None:
        return f"it links to entry {linked} instead of entry {prev_seq}: the chain was reordered"
    expected = "the genesis hash" if prev_seq == 0 else f"entry {prev_seq}'s hash"
    return f"its previous hash is not {expected}: an entry before it was removed or replaced"


@dataclass(frozen=True)
class ExportComparison:
    """The database chain against the exported one: how far the export reaches, first disagreement."""

    exported: int
    not_yet_exported: int
    problem: ChainProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json_dict(self) -> dict[str, Any]:
        return {"exported": self.exported, "not_yet_exported": self.not_yet_exported, "ok": self.ok,
                "problem": None if self.problem is None else {"seq": self.problem.seq,
                                                              "reason": self.problem.reason}}

    def summary(self) -> str:
        if self.problem:
            return f"database ledger disagrees with the export at {self.problem.describe()}"
        return (f"database ledger agrees with the export ({self.exported} exported entries, "
                f"{self.not_yet_exported} not yet exported)")


def compare_with_export(database: Sequence[LedgerEntry | StoredEntry], exported: Sequence[LedgerEntry | StoredEntry],
                        exported_head: tuple[int, str] | None = None) -> ExportComparison:
    """Every exported entry must be in the database chain at its position with the same hash.

    The database may hold entries the export has not reached yet; it may not lack or differ in any
    entry the export holds. ``exported_head`` (seq, hash) from the head object, when given, must be
    the last exported entry: the export itself cannot have been cut short unnoticed.
    """
    in_db = {e.seq: e for e in database}
    if exported_head is not None:
        head_seq, head_hash = exported_head
        last = exported[-1].seq if exported else 0
        named = next((e for e in exported if e.seq == head_seq), None)
        if head_seq > last:
            return ExportComparison(len(exported), 0, ChainProblem(
                head_seq, f"the exported head names entry {head_seq} but the exported entries end at {last}: "
                "exported objects are missing"))
        # A head behind the entries is an export killed between its objects and the head: harmless.
        if named is not None and named.entry_hash != head_hash:
            return ExportComparison(len(exported), 0, ChainProblem(
                head_seq, f"the exported head's hash {head_hash[:16]} differs from the exported entry's "
                f"{named.entry_hash[:16]}: the exported entries were rewritten"))
    for entry in exported:
        mine = in_db.get(entry.seq)
        if mine is None:
            return ExportComparison(len(exported), 0, ChainProblem(
                entry.seq, "exported but missing from the database: the entry was deleted"))
        if mine.entry_hash != entry.entry_hash:
            return ExportComparison(len(exported), 0, ChainProblem(
                entry.seq, f"its hash {mine.entry_hash[:16]} differs from the exported {entry.entry_hash[:16]}: "
                "the database chain was rewritten from here on"))
    head = exported[-1].seq if exported else 0
    return ExportComparison(len(exported), sum(1 for e in database if e.seq > head))


@dataclass(frozen=True)
class LedgerVerification:
    """``ledger verify``'s answer: the database chain, the exported chain, and the two compared."""

    database: str
    chain: ChainReport
    export_chain: ChainReport | None
    comparison: ExportComparison | None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.chain.ok and (self.export_chain is None or self.export_chain.ok) and (
            self.comparison is None or self.comparison.ok)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "ok": self.ok,
            "chain": self.chain.to_json_dict(),
            "export_chain": None if self.export_chain is None else self.export_chain.to_json_dict(),
            "comparison": None if self.comparison is None else self.comparison.to_json_dict(),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        parts = [self.chain.summary()]
        if self.export_chain is not None:
            parts.append("export: " + self.export_chain.summary())
        if self.comparison is not None:
            parts.append(self.comparison.summary())
        parts.extend(self.notes)
        return f"{self.database}: " + "; ".join(parts)
