"""Gather what the pgwarden page shows (``core.status``), bounded in time, and cache it.

Per database two sources: the repository (catalog, drill evidence, archive listing, exported ledger head)
and the database itself through one read-only session with ``statement_timeout`` (``schema_history``,
``lifecycle_runs``, the erasure ledger and the subject table's counts). Each source runs in a worker thread
and is waited for at most ``timeout`` seconds; one that fails or is late becomes
``Unreachable(reason)`` for its parts only. A late source's thread finishes on its own (libpq's
``connect_timeout``, the statement timeout and the S3 client's timeouts end it) and is not reused.

:class:`StatusCache` keeps each database's status for ``ttl`` seconds; after that the old status is still
served while one background thread refreshes it (stale-while-refresh), so a page request never waits for
a source once the first load is done.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgwarden.core import layout
from pgwarden.core.config import DatabaseConfig
from pgwarden.core.drill import DrillEvidence
from pgwarden.core.status import (
    DRILLS_CHARTED,
    PURGE_DAYS,
    ErasureFacts,
    MigrationRow,
    PurgeDay,
    StatusFacts,
    Unreachable,
    database_status,
)
from pgwarden.engine.repository.contract import Repository

OpenRepository = Callable[[Any], Repository]
TargetFor = Callable[[str], Any]
DEFAULT_TTL = 60.0
DEFAULT_TIMEOUT = 5.0


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def read_drills(repo: Repository, database: str) -> list[DrillEvidence]:
    """The newest drill evidence files (names sort by time), parsed; unreadable ones are skipped."""
    keys = sorted(info.key for info in repo.list(f"{database}/drills/") if info.key.endswith(".json"))
    drills = []
    for key in keys[-DRILLS_CHARTED:]:
        try:
            drills.append(DrillEvidence.model_validate_json(repo.get_bytes(key)))
        except ValueError:
            continue
    return drills


def archived_bytes(repo: Repository, database: str) -> int:
    """Bytes of the archive's Parquet parts under ``<db>/archive/`` (a listing; nothing is read)."""
    return sum(info.size for info in repo.list(f"{database}/archive/") if info.key.endswith(".parquet"))


def exported_head(repo: Repository, database: str) -> dict[str, Any] | None:
    key = layout.ledger_head_key(database)
    if not repo.exists(key):
        return None
    return json.loads(repo.get_bytes(key))


@dataclass
class RepositoryFacts:
    catalog: Any
    drills: list[DrillEvidence]
    archived_bytes: int | None
    ledger_head: dict[str, Any] | None


def gather_repository(repo: Repository, name: str, db: DatabaseConfig) -> RepositoryFacts:
    from pgwarden.engine.catalog import read_catalog

    lifecycle = bool(db.lifecycle.policies)
    return RepositoryFacts(
        catalog=read_catalog(repo, name, db.backup.retention.policy()),
        drills=read_drills(repo, name),
        archived_bytes=archived_bytes(repo, name) if lifecycle else None,
        ledger_head=exported_head(repo, name) if db.lifecycle.erasure is not None else None,
    )


@dataclass
class DatabaseFacts:
    migrations: list[MigrationRow] | None = None
    purges: list[PurgeDay] | None = None
    erasure: dict[str, Any] | None = None


_HISTORY = ("SELECT version, name, kind, phase, status, started_at, finished_at, phases, approvals "
            "FROM pgwarden.schema_history ORDER BY version")


def _erasure_counts(conn: Any, db: DatabaseConfig, now: datetime) -> dict[str, Any]:
    from psycopg import sql

    from pgwarden.engine.lifecycle.erasure_plan import count_in_grace_sql, select_due_sql
    from pgwarden.engine.lifecycle.ledger import head, ledger_exists, ledger_table
    from pgwarden.engine.postgres import table_identifier

    config = db.lifecycle.erasure
    assert config is not None
    out: dict[str, Any] = {"erased": 0, "last_erased_at": None, "in_grace": None, "held": None}
    if ledger_exists(conn):
        erased, last = conn.execute(sql.SQL("SELECT count(*), max(erased_at) FROM {} WHERE kind = 'erasure'")
                                    .format(ledger_table())).fetchone()
        out.update(erased=int(erased), last_erased_at=last)
    out["head_seq"], out["head_hash"] = head(conn)
    soft = config.erasable.soft_deleted
    params = {"sd_threshold": now - (soft.grace if soft else timedelta(0)),
              "rq_threshold": now - (config.erasable.requests.grace if config.erasable.requests else timedelta(0))}
    in_grace = count_in_grace_sql(config)
    if in_grace is not None:
        out["in_grace"] = int(conn.execute(in_grace, params).fetchone()[0])
    hold = config.legal_hold
    if hold is not None:
        if hold.column is not None:  # due subjects whose row says they are held
            held = sql.SQL("SELECT count(*) FROM ({}) d JOIN {} s ON s.{}::text = d.subject "
                           "WHERE coalesce(s.{}, false)").format(
                select_due_sql(config), table_identifier(config.subject.table), sql.Identifier(config.subject.key),
                sql.Identifier(hold.column))
        else:
            released = (sql.SQL(" AND h.{} IS NULL").format(sql.Identifier(hold.released_column))
                        if hold.released_column else sql.SQL(""))
            held = sql.SQL("SELECT count(*) FROM ({}) d WHERE EXISTS (SELECT FROM {} h WHERE h.{}::text = d.subject{})"
                           ).format(select_due_sql(config), table_identifier(hold.table),
                                    sql.Identifier(hold.subject_column), released)
        out["held"] = int(conn.execute(held, params).fetchone()[0])
    return out


def gather_database(target: Any, db: DatabaseConfig, now: datetime, statement_timeout: str) -> DatabaseFacts:
    """One read-only session: nothing is created or changed, every statement bounded."""
    from pgwarden.engine.lifecycle.runs import purged_per_day
    from pgwarden.engine.postgres import connect

    facts = DatabaseFacts()
    with connect(target, statement_timeout=statement_timeout) as conn:
        conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
        if conn.execute("SELECT to_regclass('pgwarden.schema_history') IS NOT NULL").fetchone()[0]:
            facts.migrations = [MigrationRow(*row[:7], phases=row[7] or [], approvals=row[8] or [])
                                for row in conn.execute(_HISTORY)]
        else:
            facts.migrations = []
        if db.lifecycle.policies:
            since = now - timedelta(days=PURGE_DAYS)
            facts.purges = [PurgeDay(d, p, n) for d, p, n in purged_per_day(conn, since)]
        if db.lifecycle.erasure is not None:
            facts.erasure = _erasure_counts(conn, db, now)
    return facts


# Two pools: a database's load waits on its sources, so sharing one pool could fill it with waiting loads
# and leave the sources queued behind them. A late source keeps its thread until its own timeout ends it.
_SOURCES = ThreadPoolExecutor(max_workers=32, thread_name_prefix="pgwarden-status-source")
_LOADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pgwarden-status-load")


def _bounded(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    future = _SOURCES.submit(fn)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        return Unreachable(f"{what} did not answer within {timeout:g}s")
    except Exception as exc:  # any failure of a source is shown, never raised into the page
        return Unreachable(f"{what}: {_reason(exc)}")


@dataclass
class StatusSources:
    """How to reach each database's repository and server (the Airflow layer passes its hooks)."""

    open_repository: OpenRepository
    target_for: TargetFor
    timeout: float = DEFAULT_TIMEOUT

    def collect(self, name: str, db: DatabaseConfig, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        where = db.repository.url
        repo_part = _bounded(lambda: gather_repository(self.open_repository(db.repository), name, db),
                             self.timeout, f"repository {where}")
        statement_timeout = f"{max(int(self.timeout * 1000) - 500, 500)}ms"
        db_part = _bounded(lambda: gather_database(self.target_for(db.conn_id), db, now, statement_timeout),
                           self.timeout, f"database (connection {db.conn_id})")
        return database_status(facts_from(name, db, now, repo_part, db_part))


def facts_from(name: str, db: DatabaseConfig, now: datetime, repo: RepositoryFacts | Unreachable,
               database: DatabaseFacts | Unreachable) -> StatusFacts:
    def pick(source: Any, attribute: str) -> Any:
        return source if isinstance(source, Unreachable) else getattr(source, attribute)

    erasure: ErasureFacts | Unreachable | None = None
    if db.lifecycle.erasure is not None:
        if isinstance(database, Unreachable):
            erasure = database
        elif database.erasure is not None:
            e = database.erasure
            head = None if isinstance(repo, Unreachable) else repo.ledger_head
            exported_at = head.get("exported_at") if head else None
            erasure = ErasureFacts(
                erased=e["erased"], last_erased_at=e["last_erased_at"], in_grace=e["in_grace"], held=e["held"],
                db_head_seq=e["head_seq"], db_head_hash=e["head_hash"] if e["head_seq"] else None,
                exported_head_seq=head.get("seq") if head else None,
                exported_head_hash=head.get("entry_hash") if head else None,
                exported_at=datetime.fromisoformat(exported_at) if exported_at else None)
    return StatusFacts(
        database=name, now=now, rpo_target=db.verify.rpo_target, rto_target=db.verify.rto_target,
        catalog=pick(repo, "catalog"), drills=pick(repo, "drills"),
        archived_bytes=pick(repo, "archived_bytes") if db.lifecycle.policies else None,
        purges=pick(database, "purges") if db.lifecycle.policies else None,
        erasure=erasure, migrations=pick(database, "migrations"),
    )


@dataclass
class _Entry:
    status: dict[str, Any]
    at: float
    refreshing: bool = False


@dataclass
class StatusCache:
    """Each database's status for ``ttl`` seconds, then served stale while one thread refreshes it."""

    load: Callable[[str], dict[str, Any]]
    ttl: float = DEFAULT_TTL
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                if self.clock() - entry.at > self.ttl and not entry.refreshing:
                    entry.refreshing = True
                    threading.Thread(target=self._refresh, args=(name,), daemon=True,
                                     name=f"pgwarden-status-{name}").start()
                return entry.status
        return self._refresh(name)

    def _refresh(self, name: str) -> dict[str, Any]:
        try:
            status = self.load(name)
        except Exception as exc:  # the page shows it; the next request tries again
            status = {"database": name, "error": f"status could not be built: {_reason(exc)}"}
        with self._lock:
            self._entries[name] = _Entry(status, self.clock())
        return status

    def get_many(self, names: list[str]) -> list[dict[str, Any]]:
        """Cached ones at once; the missing ones loaded side by side (the first request after a start)."""
        with self._lock:
            missing = [n for n in names if n not in self._entries]
        if missing:
            list(_LOADS.map(self._refresh, missing))
        return [self.get(n) for n in names]
