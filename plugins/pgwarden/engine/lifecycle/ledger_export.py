"""The erasure ledger anchored outside its database: entries and the chain head in the repository.

Layout (``core/layout.py``): ``<db>/ledger/entries/<first>-<last>.json`` holds entries first..last and
is written once, never rewritten; ``<db>/ledger/head.json`` names the last exported entry (seq and
hash) and is rewritten after each export that added entries. With ``object_lock_mode`` in the
repository config every object is stored under S3 Object Lock for ``LEDGER_LOCK`` (the brief's seven
years of audit retention), so nobody, the bucket owner included in COMPLIANCE mode, can remove them.

An export reads what is already exported from the repository (a listing, not the head: a run killed
between its entry objects and the head loses nothing), refuses to go on when the database chain no
longer links to the exported head (that is tampering, for ``ledger verify`` to name), and writes the
new entries in objects of at most ``ENTRIES_PER_OBJECT``. A re-run finds nothing new and writes
nothing; a killed run leaves whole objects only, and the next one continues after them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgwarden.core import layout
from pgwarden.core.config import RepositoryConfig
from pgwarden.core.lifecycle.ledger import (
    GENESIS_HASH,
    ChainProblem,
    ChainReport,
    LedgerEntry,
    LedgerVerification,
    StoredEntry,
    compare_with_export,
    verify_chain,
)
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.ledger import ledger_exists, read_stored
from pgwarden.engine.repository import Repository

ENTRIES_PER_OBJECT = 10_000
LEDGER_LOCK = timedelta(days=7 * 365 + 2)  # seven years, leap days included
EXPORT_FORMAT = 1
Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportedLedger:
    """What the repository holds for a database: entries in chain order (records unparsed), and the head."""

    entries: list[StoredEntry]
    head: tuple[int, str] | None
    objects: int

    def records(self) -> list[LedgerEntry]:
        return [e.entry() for e in self.entries]

    @property
    def last(self) -> tuple[int, str]:
        return (self.entries[-1].seq, self.entries[-1].entry_hash) if self.entries else (0, GENESIS_HASH)


@dataclass(frozen=True)
class LedgerExport:
    """One export run: what it added and where the exported chain now ends."""

    database: str
    exported_entries: int
    objects_written: list[str]
    head_seq: int
    head_hash: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"database": self.database, "exported_entries": self.exported_entries,
                "objects_written": self.objects_written, "head_seq": self.head_seq, "head_hash": self.head_hash}

    def summary(self) -> str:
        if not self.exported_entries:
            return f"{self.database}: ledger export up to date at entry {self.head_seq}"
        return (f"{self.database}: exported {self.exported_entries} ledger entries in "
                f"{len(self.objects_written)} objects; exported head now entry {self.head_seq} {self.head_hash[:16]}")


def read_export(repo: Repository, database: str) -> ExportedLedger:
    """Every exported entry (verified reads) in position order, plus the head object's (seq, hash)."""
    ranges = []
    for info in repo.list(layout.ledger_entries_prefix(database)):
        span = layout.ledger_entries_range(info.key)
        if span is not None:
            ranges.append((span, info.key))
    entries: list[StoredEntry] = []
    for (first, last), key in sorted(ranges):
        document = json.loads(repo.get_bytes(key))
        chunk = [StoredEntry.from_json_dict(e) for e in document["entries"]]
        if not chunk or (chunk[0].seq, chunk[-1].seq) != (first, last):
            raise PermanentError(f"{repo.uri(key)} does not hold entries {first}..{last} as its name says: "
                                 "the exported ledger was tampered with; keep it as evidence and investigate")
        entries.extend(chunk)
    head = None
    if repo.exists(layout.ledger_head_key(database)):
        document = json.loads(repo.get_bytes(layout.ledger_head_key(database)))
        head = (int(document["seq"]), str(document["entry_hash"]))
    return ExportedLedger(entries=entries, head=head, objects=len(ranges))


def export_ledger(conn: psycopg.Connection, repo: Repository, database: str, repo_config: RepositoryConfig,
                  *, now: datetime | None = None, log: Log = lambda _: None) -> LedgerExport:
    """Write database entries the repository does not hold yet, then the head. Idempotent."""
    exported = read_export(repo, database)
    last_seq, last_hash = exported.last
    if not ledger_exists(conn):
        log(f"{database}: no erasure ledger in the database yet; nothing to export")
        return LedgerExport(database, 0, [], last_seq, last_hash)
    # The exported head is read back too: it must still be in the database, unchanged.
    new, mismatch = read_stored(conn, after_seq=max(last_seq - 1, 0))
    if mismatch is not None:
        raise _refuse(database, mismatch)
    if last_seq:
        anchor = new.pop(0) if new and new[0].seq == last_seq else None
        if anchor is None or anchor.entry_hash != last_hash:
            raise _refuse(database, ChainProblem(last_seq, "the last exported entry is missing from the database "
                                                           "or differs from the export"))
    if new:
        if new[0].seq != last_seq + 1 or new[0].prev_hash != last_hash:
            raise _refuse(database, ChainProblem(new[0].seq, f"it does not link to the exported entry {last_seq}"))
        report = verify_chain(new, after=(last_seq, last_hash))
        if not report.ok:
            raise _refuse(database, report.problem)  # type: ignore[arg-type]
    retain = _retain_until(repo_config, now)
    written = []
    for start in range(0, len(new), ENTRIES_PER_OBJECT):
        chunk = new[start:start + ENTRIES_PER_OBJECT]
        key = layout.ledger_entries_key(database, chunk[0].seq, chunk[-1].seq)
        body = {"format": EXPORT_FORMAT, "database": database, "first_seq": chunk[0].seq,
                "last_seq": chunk[-1].seq, "entries": [e.to_json_dict() for e in chunk]}
        repo.put_bytes(key, json.dumps(body, sort_keys=True, indent=1).encode(), retain_until=retain)
        written.append(key)
        log(f"{database}: exported ledger entries {chunk[0].seq}..{chunk[-1].seq} to {repo.uri(key)}")
    head_seq, head_hash = (new[-1].seq, new[-1].entry_hash) if new else (last_seq, last_hash)
    if exported.head != (head_seq, head_hash) and head_seq > 0:
        head = {"format": EXPORT_FORMAT, "database": database, "seq": head_seq, "entry_hash": head_hash,
                "exported_at": (now or datetime.now(UTC)).isoformat()}
        repo.put_bytes(layout.ledger_head_key(database), json.dumps(head, sort_keys=True).encode(),
                       retain_until=retain)
    return LedgerExport(database, len(new), written, head_seq, head_hash)


def _retain_until(repo_config: RepositoryConfig, now: datetime | None) -> datetime | None:
    if repo_config.object_lock_mode is None:
        return None
    return (now or datetime.now(UTC)) + LEDGER_LOCK


def _refuse(database: str, problem: ChainProblem) -> PermanentError:
    return PermanentError(
        f"{database}: not exporting the erasure ledger: the database chain breaks at {problem.describe()}; "
        f"run `pgwarden ledger verify {database}` and investigate before anything is exported")


def verify_ledger(conn: psycopg.Connection, repo: Repository | None, database: str) -> LedgerVerification:
    """Walk the database chain; with a repository, also the exported chain and the two compared."""
    notes: list[str] = []
    if ledger_exists(conn):
        entries, mismatch = read_stored(conn)
    else:
        entries, mismatch = [], None
        notes.append("no erasure ledger table in the database")
    chain = verify_chain(entries)
    if mismatch is not None and (chain.problem is None or mismatch.seq < chain.problem.seq):
        chain = ChainReport(chain.entries, chain.head_seq, chain.head_hash, mismatch)
    if repo is None:
        return LedgerVerification(database, chain, None, None, tuple(notes))
    exported = read_export(repo, database)
    if not exported.entries:
        notes.append("nothing exported to the repository yet")
    # An exported entry identical to the database's copy, whose hash the walk above checked, needs no second
    # hash: half the work of a verify over a fully exported ledger.
    good_until = chain.problem.seq if chain.problem else float("inf")
    in_db = {e.seq: e for e in entries if e.seq < good_until}

    def same_as_verified(entry: StoredEntry) -> bool:
        mine = in_db.get(entry.seq)
        return mine is not None and mine.entry_hash == entry.entry_hash and mine.record_json == entry.record_json

    export_chain = verify_chain(exported.entries, verified=same_as_verified)
    comparison = compare_with_export(entries, exported.entries, exported.head)
    return LedgerVerification(database, chain, export_chain, comparison, tuple(notes))
