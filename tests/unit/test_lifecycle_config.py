"""The ``lifecycle`` section: what users write, and the key path + expectation they get when it is wrong."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from pgwarden.core.config import parse_config
from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.units import parse_duration

HEAD = """\
databases:
  appdb:
    conn_id: pg_app
    repository: {url: "file:///var/backups/pg"}
    lifecycle:
"""


def parse(section: str):
    return parse_config(HEAD + textwrap.indent(textwrap.dedent(section), "      "), "cfg.yaml")


def issues(section: str) -> list[str]:
    return [str(i) for i in parse(section).issues]


def test_full_policy_parses_with_defaults() -> None:
    config = parse("""
        policies:
          - name: expired_sessions
            table: public.sessions
            expire: {column: expires_at}
            where: "kind <> 'pinned'"
          - name: purge_deleted
            table: '"User Data".Audit'
            expire: {column: '"Deleted At"', after: 90d}
            soft_delete: {column: '"Deleted At"', active_view: true}
            key: [id]
            children: [public.audit_notes]
            batch: {time_budget: 50ms, lock_timeout: 1s, pause: 10ms, max_run_time: 5m}
            vacuum_after: null
    """)
    assert not config.broken
    lifecycle = config.databases["appdb"].lifecycle
    assert lifecycle.schedule == "@hourly"
    sessions, audit = lifecycle.policies
    assert sessions.batch.time_budget == timedelta(milliseconds=100)
    assert sessions.batch.lock_timeout == timedelta(seconds=2)
    assert sessions.key is None and sessions.children == "auto" and sessions.vacuum_after == 100_000
    assert audit.table == QualifiedName("User Data", "audit")
    assert audit.expire.column == "Deleted At"
    assert audit.children == [QualifiedName("public", "audit_notes")]
    assert audit.batch.pause == timedelta(milliseconds=10)
    cutoff = datetime(2026, 11, 30, 19, tzinfo=UTC)
    assert audit.expire.threshold(cutoff) == cutoff - timedelta(days=90)
    assert sessions.expire.threshold(cutoff) == cutoff


def test_database_without_lifecycle_has_no_policies() -> None:
    config = parse_config("databases:\n  appdb:\n    conn_id: a\n    repository: {url: 'file:///x'}\n", "c")
    assert config.databases["appdb"].lifecycle.policies == []


@pytest.mark.parametrize(("section", "path", "expected"), [
    ("policies: [{name: a, table: t, expire: {colum: x}}]", "lifecycle.policies.0.expire.colum",
     "did you mean `column`"),
    ("policies: [{name: A-b, table: t, expire: {column: x}}]", "lifecycle.policies.0.name", "a-z, 0-9"),
    ("policies: [{name: a, table: 'a.b.c', expire: {column: x}}]", "lifecycle.policies.0.table", "schema.table"),
    ("policies: [{name: a, table: t, expire: {column: x, after: soon}}]", "lifecycle.policies.0.expire.after",
     "duration like"),
    ("policies: [{name: a, table: t, expire: {column: x, after: 0s}}]", "lifecycle.policies.0.expire.after",
     "positive duration"),
    ("policies: [{name: a, table: t, expire: {column: x}, mode: truncate}]", "lifecycle.policies.0.mode",
     "'delete', 'archive_then_delete' or 'partition_drop'"),
    ("policies: [{name: a, table: t, expire: {column: x}}, {name: a, table: u, expire: {column: x}}]",
     "lifecycle.policies", "used twice"),
    ("policies: [{name: a, table: t, expire: {column: x}, where: ' '}]", "lifecycle.policies.0.where", "empty"),
    ("policies: [{name: a, table: t, expire: {column: x}, key: []}]", "lifecycle.policies.0.key", "distinct"),
    ("policies: [{name: a, table: t, expire: {column: x}, mode: partition_drop, where: 'a > 1'}]",
     "lifecycle.policies.0", "partition_drop"),
    ("policies: [{name: a, table: t, expire: {column: x}, archive: {storage_class: GLACIER_IR}}]",
     "lifecycle.policies.0", "archive_then_delete"),
    ("policies: [{name: a, table: t, expire: {column: x}, mode: archive_then_delete, personal_data: [email]}]",
     "lifecycle.policies.0", "personal_data columns ['email']"),
    ("policies: [{name: a, table: t, expire: {column: x}, children: some}]", "lifecycle.policies.0.children",
     "auto"),
    ("schedule: 'every hour'", "lifecycle.schedule", "cron"),
])
def test_bad_lifecycle_config_names_key_path_and_expectation(section: str, path: str, expected: str) -> None:
    found = issues(section)
    assert any(f"databases.appdb.{path}" in issue and expected in issue for issue in found), found


def test_personal_data_archived_when_dropped_anonymized_or_expiring() -> None:
    for archive in ("{drop_columns: [email]}", "{anonymize_columns: [email]}", "{expire_after: 365d}"):
        assert not issues(f"policies: [{{name: a, table: t, expire: {{column: x}}, mode: archive_then_delete, "
                          f"personal_data: [email], archive: {archive}}}]")


def test_milliseconds_are_a_duration_unit() -> None:
    assert parse_duration("100ms") == timedelta(milliseconds=100)
    assert parse_duration("1m500ms") == timedelta(seconds=60.5)


def test_a_policy_survives_a_json_round_trip() -> None:
    """Durations dump as seconds, which the config reads back (pydantic's ISO form, PT0.1S, it refused)."""
    from pgwarden.core.lifecycle.config import PolicyConfig

    policy = PolicyConfig.model_validate({
        "name": "s", "table": '"User Data".sessions', "expire": {"column": "created_at", "after": "30d"},
        "batch": {"time_budget": "100ms", "lock_timeout": "2s", "pause": "20ms", "max_run_time": "50m"}})
    again = PolicyConfig.model_validate_json(policy.model_dump_json())
    assert again == policy
    assert again.batch.time_budget.total_seconds() == 0.1
