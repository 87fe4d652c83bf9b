"""Judging a server against what pgwarden's enabled concerns need. Pure: facts in, findings out.

The engine gathers ``ServerFacts`` over a real connection; this module decides what is fine,
what deserves a warning and what must fail the healthcheck, and says what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from pgwarden.core.identifiers import QualifiedName, quote
from pgwarden.core.units import format_duration, format_size

MIN_SERVER_VERSION = 140000
# pg_basebackup -X stream holds two WAL senders; the incremental task's pg_receivewal one more.
BACKUP_WAL_SENDERS = 2

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class SlotFacts:
    name: str
    slot_type: str
    active: bool
    wal_status: str | None
    retained_bytes: int | None


@dataclass(frozen=True)
class ServerFacts:
    server_version: str
    server_version_num: int
    in_recovery: bool
    wal_level: str
    max_wal_senders: int
    wal_senders_in_use: int
    max_replication_slots: int
    role_can_replicate: bool
    replication_error: str | None
    archive_mode: str
    data_checksums: bool
    pg_wal_bytes: int | None
    slots: tuple[SlotFacts, ...] = ()
    # function signature -> may the role execute it; table -> "ok" | "missing" | "denied"
    functions: tuple[tuple[str, bool], ...] = ()
    tables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StandbyFacts:
    conn_id: str
    max_replay_lag: timedelta
    error: str | None = None
    in_recovery: bool = True
    replay_lag: timedelta | None = None


@dataclass(frozen=True)
class Requirements:
    """What the enabled concerns of one database need from its server."""

    backups: bool
    slot_name: str
    slot_warn_bytes: int
    max_pg_wal_bytes: int
    count_tables: tuple[QualifiedName, ...] = ()


# What WAL collection and full backups call besides the replication protocol.
BACKUP_FUNCTIONS = ("pg_create_restore_point(text)", "pg_switch_wal()",
                    "pg_logical_emit_message(boolean, text, text)")


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"[{self.status.upper():4}] {self.check}: {self.detail}"
        return f"{text}\n       fix: {self.fix}" if self.fix else text


@dataclass(frozen=True)
class HealthReport:
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "fail")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "warn")

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, object]:
        """Small and free of personal data: safe for XCom and logs."""
        return {
            "ok": self.ok,
            "failures": [f.check for f in self.failures],
            "warnings": [f.check for f in self.warnings],
            "checks": {f.check: f.status for f in self.findings},
        }

    def render(self) -> str:
        return "\n".join(f.line() for f in self.findings)


def evaluate_server(facts: ServerFacts, req: Requirements) -> list[Finding]:
    findings: list[Finding] = []
    add = findings.append

    if facts.server_version_num >= MIN_SERVER_VERSION:
        add(Finding("server_version", "ok", facts.server_version))
    else:
        add(Finding("server_version", "fail", f"{facts.server_version} is older than PostgreSQL 14",
                    "upgrade the server to PostgreSQL 14 or newer"))

    if facts.in_recovery:
        add(Finding("primary", "fail", "the connection points at a server in recovery (a standby)",
                    "point the database's conn_id at the primary; list standbys under healthcheck.standbys"))

    if facts.data_checksums:
        add(Finding("data_checksums", "ok", "on"))
    else:
        add(Finding("data_checksums", "warn", "off: pg_amcheck and pg_verifybackup cannot catch page corruption",
                    "enable with pg_checksums --enable on a stopped server at the next maintenance window"))

    add(Finding("archive_mode", "ok",
                f"{facts.archive_mode} (pgwarden collects WAL by streaming from a slot, not archive_command)"))

    if req.backups:
        _backup_requirements(facts, req, add)

    if facts.pg_wal_bytes is None:
        add(Finding("pg_wal_size", "warn", "not readable by this role",
                    "GRANT pg_monitor TO <role> so pg_wal size can be watched"))
    elif facts.pg_wal_bytes > req.max_pg_wal_bytes:
        add(Finding("pg_wal_size", "warn",
                    f"{format_size(facts.pg_wal_bytes)} exceeds {format_size(req.max_pg_wal_bytes)}",
                    "look for inactive replication slots or a stalled archiver holding WAL"))
    else:
        add(Finding("pg_wal_size", "ok", format_size(facts.pg_wal_bytes)))

    for slot in facts.slots:
        _slot_finding(slot, req, add)
    return findings


def _backup_requirements(facts: ServerFacts, req: Requirements, add) -> None:
    if facts.wal_level in ("replica", "logical"):
        add(Finding("wal_level", "ok", facts.wal_level))
    else:
        add(Finding("wal_level", "fail",
                    f"wal_level is {facts.wal_level!r}; backups and point-in-time recovery need 'replica'",
                    "ALTER SYSTEM SET wal_level = 'replica'; then restart PostgreSQL"))

    free_senders = facts.max_wal_senders - facts.wal_senders_in_use
    if free_senders >= BACKUP_WAL_SENDERS:
        add(Finding("max_wal_senders", "ok", f"{facts.max_wal_senders} ({free_senders} free)"))
    else:
        add(Finding("max_wal_senders", "fail",
                    f"{facts.max_wal_senders} configured, {facts.wal_senders_in_use} in use: "
                    f"backups need {BACKUP_WAL_SENDERS} free",
                    f"ALTER SYSTEM SET max_wal_senders = {facts.wal_senders_in_use + BACKUP_WAL_SENDERS + 2}; "
                    f"then restart PostgreSQL"))

    have_slot = any(s.name == req.slot_name for s in facts.slots)
    free_slots = facts.max_replication_slots - len(facts.slots)
    if have_slot or free_slots >= 1:
        detail = f"slot {req.slot_name} exists" if have_slot else f"{free_slots} free"
        add(Finding("replication_slots", "ok", detail))
    else:
        add(Finding("replication_slots", "fail",
                    f"all {facts.max_replication_slots} replication slots are taken and {req.slot_name} is not one",
                    f"ALTER SYSTEM SET max_replication_slots = {facts.max_replication_slots + 2}; then restart, "
                    f"or drop an unused slot"))

    if not facts.role_can_replicate:
        add(Finding("replication_role", "fail", "the connection's role has neither REPLICATION nor SUPERUSER",
                    "ALTER ROLE <role> WITH REPLICATION;"))
    else:
        add(Finding("replication_role", "ok", "role may replicate"))

    denied = [name for name, allowed in facts.functions if not allowed]
    if denied:
        add(Finding("backup_functions", "fail", f"the role may not execute {', '.join(denied)}",
                    "GRANT EXECUTE ON FUNCTION " + ", ".join(denied) + " TO <role>;"))
    elif facts.functions:
        add(Finding("backup_functions", "ok", "restore points, WAL switch and markers allowed"))
    for table, state in facts.tables:
        if state == "missing":
            add(Finding(f"count_rows:{table}", "fail", "table named in backup.count_rows does not exist",
                        "fix backup.count_rows in the config (schema.table)"))
        elif state == "no_schema_usage":
            add(Finding(f"count_rows:{table}", "fail", "the role may not use its schema to count rows",
                        f"GRANT USAGE ON SCHEMA {quote(QualifiedName.parse(table).schema)} TO <role>;"))
        elif state == "denied":
            add(Finding(f"count_rows:{table}", "fail", "the role may not SELECT from it to count rows",
                        f"GRANT SELECT ON {table} TO <role>;"))

    if facts.replication_error is None:
        add(Finding("replication_connection", "ok", "IDENTIFY_SYSTEM over a replication connection works"))
    else:
        add(Finding("replication_connection", "fail",
                    f"a replication connection was refused: {facts.replication_error}",
                    "add a line like 'host replication <role> <worker-ip>/32 scram-sha-256' to pg_hba.conf, "
                    "then SELECT pg_reload_conf();"))


def _slot_finding(slot: SlotFacts, req: Requirements, add) -> None:
    retained = format_size(slot.retained_bytes) if slot.retained_bytes is not None else "unknown"
    check = f"slot:{slot.name}"
    if slot.wal_status == "lost":
        fix = ("the slot lost WAL it needed: drop it and take a new full backup "
               f"(SELECT pg_drop_replication_slot('{slot.name}'))"
               if slot.name == req.slot_name else
               f"drop the unusable slot: SELECT pg_drop_replication_slot('{slot.name}')")
        add(Finding(check, "fail" if slot.name == req.slot_name else "warn", "invalidated (wal_status = lost)", fix))
        return
    if slot.name == req.slot_name:
        status: Status = "warn" if (slot.retained_bytes or 0) > req.slot_warn_bytes else "ok"
        add(Finding(check, status, f"pgwarden's WAL slot retains {retained}",
                    "WAL is not being collected: check the recent runs of <database>.backup_incremental"
                    if status == "warn" else None))
        return
    if not slot.active:
        add(Finding(check, "warn", f"inactive {slot.slot_type} slot retains {retained} of WAL",
                    f"if nothing uses it any more: SELECT pg_drop_replication_slot('{slot.name}')"))


def evaluate_standby(standby: StandbyFacts) -> Finding:
    check = f"standby:{standby.conn_id}"
    if standby.error is not None:
        return Finding(check, "fail", f"unreachable: {standby.error}",
                       f"check the standby server and the Airflow connection {standby.conn_id!r}")
    if not standby.in_recovery:
        return Finding(check, "fail", "not in recovery: it was promoted or is not a standby",
                       "rebuild it as a standby of the primary, or update healthcheck.standbys")
    lag = standby.replay_lag or timedelta(0)
    if lag > standby.max_replay_lag:
        return Finding(check, "fail",
                       f"replay lag {format_duration(lag)} exceeds {format_duration(standby.max_replay_lag)}",
                       "check the standby's replay (pg_stat_wal_receiver, recovery conflicts, disk I/O)")
    return Finding(check, "ok", f"replay lag {format_duration(lag)}")


def evaluate_repository(url: str, error: str | None) -> Finding:
    if error is None:
        return Finding("repository", "ok", f"{url} is reachable and writable")
    return Finding("repository", "fail", f"{url}: {error}",
                   "check the repository URL, bucket and the AWS connection's credentials")
