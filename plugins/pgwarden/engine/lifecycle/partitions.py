"""Partition mode: detach the partitions entirely older than the threshold, drop them in a later task.

Each partition is marked (its table comment names the parent and the policy) before it is detached,
so a run killed between any two steps is recognised on the next: a marked partition still attached is
detached again (``FINALIZE`` when a concurrent detach was interrupted), and the drop task drops only
marked tables that are no longer attached. Partitions straddling the threshold stay attached; the
batched delete handles their expired rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.engine.errors import TransientError
from pgwarden.engine.lifecycle.plan import TIME_TYPES, PolicyPlan
from pgwarden.engine.postgres import table_identifier

_UPPER_BOUND = re.compile(r"^FOR VALUES FROM \(.*\) TO \((.*)\)$", re.DOTALL)


def marker(policy: PolicyConfig) -> str:
    """The comment a partition carries once pgwarden has decided to detach (and later drop) it."""
    return f"pgwarden lifecycle: detached from {policy.table} by policy {policy.name}; dropped by the next drop task"


def _upper_literal(bound: str) -> str | None:
    """The text of a range partition's upper bound (``None`` for MAXVALUE or a default partition)."""
    match = _UPPER_BOUND.match(bound)
    if not match or not match.group(1).startswith("'"):
        return None
    return match.group(1)[1:-1].replace("''", "'")


def expired_partitions(conn: psycopg.Connection, plan: PolicyPlan, threshold: datetime) -> list[tuple[QualifiedName, bool]]:
    """Partitions whose upper bound is at or before the threshold: (name, detach pending)."""
    column_type = plan.main.column_types[plan.policy.expire.column]
    assert column_type in TIME_TYPES  # checked by the plan step; also what makes the cast below safe
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.inhparent = (SELECT c2.oid FROM pg_class c2 JOIN pg_namespace n2 ON n2.oid = c2.relnamespace "
        "                     WHERE n2.nspname = %s AND c2.relname = %s) ORDER BY c.relname",
        (plan.policy.table.schema, plan.policy.table.name)).fetchall()
    found = []
    compare = sql.SQL("SELECT CAST(%s AS {}) <= %s").format(sql.SQL(column_type))
    for schema, name, bound, pending in rows:
        upper = _upper_literal(str(bound))
        if upper is None:
            continue
        if conn.execute(compare, (upper, threshold)).fetchone()[0]:  # type: ignore[index]
            found.append((QualifiedName(str(schema), str(name)), bool(pending)))
    return found


def detach_expired_partitions(conn: psycopg.Connection, plan: PolicyPlan, threshold: datetime, *,
                              log: Callable[[str], None]) -> list[str]:
    """Mark and ``DETACH ... CONCURRENTLY`` each expired partition. ``conn`` must be in autocommit."""
    policy = plan.policy
    detached = []
    lock_ms = f"{int(policy.batch.lock_timeout.total_seconds() * 1000)}ms"
    for partition, pending in expired_partitions(conn, plan, threshold):
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            table_identifier(partition), sql.Literal(marker(policy))))
        how = sql.SQL("FINALIZE" if pending else "CONCURRENTLY")
        log(f"detach {partition} from {policy.table} ({'finishing an interrupted detach' if pending else 'concurrently'})")
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_ms,))
        _notice_a_dead_client(conn)
        try:
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(
                table_identifier(policy.table), table_identifier(partition), how))
        except psycopg.errors.LockNotAvailable as exc:
            raise TransientError(f"detaching {partition}: lock timeout ({lock_ms}); the retry continues") from exc
        finally:
            conn.execute("SELECT set_config('lock_timeout', '0', false)")
        detached.append(str(partition))
    return detached


# How often a waiting DETACH checks that pgwarden is still connected.
CLIENT_CHECK = "1s"


def _notice_a_dead_client(conn: psycopg.Connection) -> None:
    """Have the server end the DETACH if this process dies (kill -9 of the worker) while it waits.

    ``DETACH ... CONCURRENTLY`` waits for every transaction using the parent to end; a backend whose
    client is gone would otherwise wait on, then finish the detach unseen, or hold its lock for hours.
    Ended, it leaves the partition "detach pending", which the next run finishes with ``FINALIZE``.
    (PostgreSQL 14+, on platforms that can report a closed socket; elsewhere the server refuses it and
    the wait is only bounded by ``lock_timeout``.)
    """
    try:
        conn.execute("SELECT set_config('client_connection_check_interval', %s, false)", (CLIENT_CHECK,))
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject):
        pass


def drop_detached_partitions(conn: psycopg.Connection, policy: PolicyConfig, *,
                             log: Callable[[str], None]) -> list[str]:
    """Drop the tables this policy marked and detached (attached ones wait for their detach to finish)."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0 "
        "WHERE c.relkind = 'r' AND d.description = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) ORDER BY c.relname",
        (marker(policy),)).fetchall()
    dropped = []
    for schema, name in rows:
        partition = QualifiedName(str(schema), str(name))
        log(f"drop detached partition {partition}")
        conn.execute(sql.SQL("DROP TABLE {}").format(table_identifier(partition)))
        dropped.append(str(partition))
    return dropped
