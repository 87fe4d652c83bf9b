"""Gathering the facts a healthcheck judges, over real connections."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from pgwarden.core.health import (
    BACKUP_FUNCTIONS,
    Finding,
    HealthReport,
    Requirements,
    ServerFacts,
    SlotFacts,
    StandbyFacts,
    evaluate_repository,
    evaluate_server,
    evaluate_standby,
)
from pgwarden.core.identifiers import QualifiedName
from pgwarden.engine.errors import PgwardenError
from pgwarden.engine.postgres import PgTarget, connect, replication_probe

_SETTINGS_SQL = """
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       pg_is_in_recovery(),
       current_setting('wal_level'),
       current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int,
       current_setting('max_replication_slots')::int,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
       current_setting('archive_mode'),
       current_setting('data_checksums') = 'on'
"""

_SLOTS_SQL = """
SELECT slot_name, slot_type, active, wal_status,
       pg_wal_lsn_diff(
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
           restart_lsn)::bigint
  FROM pg_replication_slots ORDER BY slot_name
"""


_FUNCTION_SQL = "SELECT has_function_privilege(current_user, %s, 'EXECUTE')"
# Schema and name as values, matched against the catalog exactly (no quoting, no search_path).
_TABLE_SQL = """
SELECT CASE WHEN t.oid IS NULL THEN 'missing'
            WHEN NOT has_schema_privilege(current_user, t.nsp, 'USAGE') THEN 'no_schema_usage'
            WHEN has_table_privilege(current_user, t.oid, 'SELECT') THEN 'ok'
            ELSE 'denied' END
  FROM (SELECT max(c.oid) AS oid, max(n.oid) AS nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relname = %s) t
"""


def gather_server_facts(target: PgTarget, *, probe_replication: bool,
                        count_tables: tuple[QualifiedName, ...] = ()) -> ServerFacts:
    with connect(target, statement_timeout="30s") as conn:
        row = conn.execute(_SETTINGS_SQL).fetchone()
        assert row is not None
        slots = tuple(SlotFacts(*r) for r in conn.execute(_SLOTS_SQL).fetchall())
        try:
            wal_bytes = conn.execute("SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir()").fetchone()[0]
        except psycopg.errors.InsufficientPrivilege:
            wal_bytes = None
        functions = tuple((f, bool(conn.execute(_FUNCTION_SQL, (f,)).fetchone()[0]))
                          for f in BACKUP_FUNCTIONS) if probe_replication else ()
        tables = tuple((str(t), conn.execute(_TABLE_SQL, (t.schema, t.name)).fetchone()[0]) for t in count_tables)
    replication_error = None
    if probe_replication:
        try:
            replication_probe(target)
        except (psycopg.Error, PgwardenError) as exc:
            # The server's own message says whether pg_hba or the role refused us; no secrets in it.
            replication_error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return ServerFacts(
        server_version=row[0], server_version_num=row[1], in_recovery=row[2], wal_level=row[3],
        max_wal_senders=row[4], wal_senders_in_use=row[5], max_replication_slots=row[6],
        role_can_replicate=bool(row[7]), replication_error=replication_error, archive_mode=row[8],
        data_checksums=row[9], pg_wal_bytes=wal_bytes, slots=slots, functions=functions, tables=tables,
    )


_STANDBY_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            -- Behind, and nothing replayed since start: behind at least since the server started.
            ELSE extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))
       END
"""


def gather_standby_facts(conn_id: str, target: PgTarget | None, max_replay_lag: timedelta,
                         error: str | None = None) -> StandbyFacts:
    if target is None:
        return StandbyFacts(conn_id, max_replay_lag, error=error or "no connection")
    try:
        with connect(target, statement_timeout="10s") as conn:
            in_recovery, lag_seconds = conn.execute(_STANDBY_SQL).fetchone()
    except PgwardenError as exc:
        return StandbyFacts(conn_id, max_replay_lag, error=str(exc).splitlines()[0])
    lag = timedelta(seconds=float(lag_seconds)) if lag_seconds is not None else None
    return StandbyFacts(conn_id, max_replay_lag, in_recovery=in_recovery, replay_lag=lag)


def run_healthcheck(
    target: PgTarget,
    requirements: Requirements,
    *,
    repository_url: str,
    repository_probe,
    standbys: list[StandbyFacts] | None = None,
) -> HealthReport:
    """Gather everything, judge it, return the report. Connection failures are findings too."""
    findings: list[Finding] = []
    try:
        facts = gather_server_facts(target, probe_replication=requirements.backups,
                                    count_tables=requirements.count_tables if requirements.backups else ())
        findings.extend(evaluate_server(facts, requirements))
    except PgwardenError as exc:
        findings.append(Finding("connection", "fail", str(exc).splitlines()[0],
                                "check that the server is up and the Airflow connection's host, port, "
                                "user and password are right"))
    try:
        repository_probe()
        findings.append(evaluate_repository(repository_url, None))
    except PgwardenError as exc:
        findings.append(evaluate_repository(repository_url, str(exc)))
    for standby in standbys or []:
        findings.append(evaluate_standby(standby))
    return HealthReport(tuple(findings))


def check_database(database: str, db_config, resolve_target, repository) -> HealthReport:
    """The healthcheck of one configured database; ``resolve_target(conn_id) -> PgTarget``.

    The Airflow operator and ``pgwarden healthcheck`` both call this, resolving connections the
    same way; only where the report goes differs.
    """
    standbys = []
    for standby in db_config.healthcheck.standbys:
        try:
            standbys.append(gather_standby_facts(standby.conn_id, resolve_target(standby.conn_id),
                                                 standby.max_replay_lag))
        except PgwardenError as exc:
            standbys.append(gather_standby_facts(standby.conn_id, None, standby.max_replay_lag, str(exc)))
    requirements = Requirements(
        backups=db_config.backup.enabled,
        slot_name=db_config.backup.slot_for(database),
        slot_warn_bytes=db_config.backup.slot_warn_size,
        max_pg_wal_bytes=db_config.healthcheck.max_pg_wal_size,
        count_tables=tuple(db_config.backup.count_rows),
    )
    return run_healthcheck(resolve_target(db_config.conn_id), requirements,
                           repository_url=db_config.repository.url,
                           repository_probe=lambda: repository().probe(), standbys=standbys)
