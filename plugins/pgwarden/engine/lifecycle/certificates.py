"""Erasure certificates from a verified ledger and the repository's catalog.

A certificate is only issued from a chain that verifies, in the database and against the export:
a certificate pointing at a tampered entry would prove nothing. The backup forecast is computed once
per call from the catalog (``core/lifecycle/backup_expiry.py``) and applied to every entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from pgwarden.core import layout
from pgwarden.core.config import DatabaseConfig
from pgwarden.core.lifecycle.backup_expiry import BackupDrops, forecast_backup_drops
from pgwarden.core.lifecycle.certificate import Certificate
from pgwarden.core.lifecycle.ledger import LedgerEntry
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.ledger import ledger_exists, read_entries
from pgwarden.engine.lifecycle.ledger_export import LEDGER_LOCK, verify_ledger
from pgwarden.engine.repository import Repository

Log = Callable[[str], None]


@dataclass(frozen=True)
class CertificatesWritten:
    database: str
    written: list[int]
    already_there: int

    def to_json_dict(self) -> dict[str, Any]:
        return {"database": self.database, "written_seqs": self.written, "already_there": self.already_there}

    def summary(self) -> str:
        return (f"{self.database}: wrote {len(self.written)} erasure certificates "
                f"({self.already_there} already in the repository)")


def backup_drops(repo: Repository, database: str, db_config: DatabaseConfig, now: datetime) -> BackupDrops:
    """The retention forecast of the repository's catalog as it is now."""
    policy = db_config.backup.retention.policy()
    catalog = read_catalog(repo, database, policy)
    schedule = db_config.backup.full_schedule if db_config.backup.enabled else None
    return forecast_backup_drops([b.ref() for b in catalog.backups], policy, now, schedule)


def certificates(conn: psycopg.Connection, repo: Repository, database: str, db_config: DatabaseConfig, *,
                 select: Callable[[LedgerEntry], bool], now: datetime | None = None) -> list[Certificate]:
    """Certificates of the erasure entries ``select`` picks, from a chain that verifies."""
    now = now or datetime.now(UTC)
    if not ledger_exists(conn):
        return []
    verification = verify_ledger(conn, repo, database)
    if not verification.ok:
        raise PermanentError(f"{database}: no certificate from a ledger that does not verify: "
                             f"{verification.summary()}; run `pgwarden ledger verify {database}`")
    entries, _ = read_entries(conn)
    chosen = [e for e in entries if select(e)]
    if not chosen:
        return []
    drops = backup_drops(repo, database, db_config, now)
    exported = verification.comparison.exported if verification.comparison else 0
    return [Certificate(database=database, entry=e, chain_head_seq=verification.chain.head_seq,
                        chain_head_hash=verification.chain.head_hash, exported_through=exported,
                        data_expiry=drops.for_erasure(e.record.erased_at), generated_at=now) for e in chosen]


def matching(needle: str) -> Callable[[LedgerEntry], bool]:
    """Entries of a request id or a subject reference (erasures and re-applies alike)."""
    return lambda e: needle in (e.record.request_id, e.record.subject_ref)


def write_certificates(conn: psycopg.Connection, repo: Repository, database: str, db_config: DatabaseConfig, *,
                       now: datetime | None = None, log: Log = lambda _: None) -> CertificatesWritten:
    """Write JSON and HTML certificates of every erasure entry that has none in the repository yet.

    The HTML goes first and the JSON last: an entry whose JSON exists is done, so a run killed in
    between writes both again and a re-run writes nothing.
    """
    now = now or datetime.now(UTC)
    done = {info.key for info in repo.list(layout.certificates_prefix(database))}

    def todo(entry: LedgerEntry) -> bool:
        return entry.record.kind == "erasure" and layout.certificate_key(database, entry.seq, "json") not in done

    retain = now + LEDGER_LOCK if db_config.repository.object_lock_mode else None
    written = []
    for certificate in certificates(conn, repo, database, db_config, select=todo, now=now):
        seq = certificate.entry.seq
        repo.put_bytes(layout.certificate_key(database, seq, "html"), certificate.to_html(), retain_until=retain)
        repo.put_bytes(layout.certificate_key(database, seq, "json"), certificate.to_json(), retain_until=retain)
        written.append(seq)
    if written:
        log(f"{database}: wrote erasure certificates of ledger entries {written[0]}..{written[-1]}")
    already = sum(1 for key in done if key.endswith(".json"))
    return CertificatesWritten(database, written, already)
