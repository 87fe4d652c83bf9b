"""core/alerts.py: deadline windows per concern, database deadlines over the defaults, the alert text."""

from __future__ import annotations

from datetime import timedelta

from pgwarden.core.alerts import DeadlinesConfig, deadline_missed, deadline_window, task_failed


def test_built_in_windows_follow_the_concern_and_its_schedule() -> None:
    hour = timedelta(hours=1)
    assert deadline_window("backup_full", "0 2 * * *", None) == 4 * hour
    assert deadline_window("backup_incremental", "*/15 * * * *", None) == timedelta(minutes=15)
    assert deadline_window("verify_restore", "0 4 1 * *", None, rto_target=90 * timedelta(minutes=1)) == 1.5 * hour
    assert deadline_window("migrate.003_rename_email", "@daily", None) == 24 * hour  # a concern of its own
    assert deadline_window("pitr_restore", None, 2 * hour) is None  # manual DAGs are never late
    assert deadline_window("backup_full", "0 2 * * *", "off") is None
    assert deadline_window("backup_full", "0 2 * * *", 6 * hour) == 6 * hour


def test_a_databases_deadlines_override_the_defaults_key_by_key() -> None:
    defaults = DeadlinesConfig.model_validate({"backup_full": "3h", "ttl_purge": "2h"})
    mine = DeadlinesConfig.model_validate({"backup_full": False, "healthcheck": "10m"})  # YAML's bare off
    merged = mine.merged_over(defaults)
    assert (merged.backup_full, merged.ttl_purge, merged.healthcheck) == ("off", timedelta(hours=2),
                                                                            timedelta(minutes=10))
    assert merged.configured("migrate.001_init") is None


def test_alerts_carry_ids_and_a_class_name_only() -> None:
    alert = task_failed(dag_id="appdb.backup_full", task_id="base_backup", run_id="scheduled__x", try_number=3,
                        error_class="ChecksumMismatch", log_url=None)
    assert alert.subject == "[pgwarden] appdb.backup_full.base_backup failed (ChecksumMismatch)"
    assert "Try: 3" in alert.text and "Logs" in alert.text
    body = alert.to_json_dict()
    assert body["text"].startswith(alert.subject) and body["error_class"] == "ChecksumMismatch"
    late = deadline_missed(dag_id="appdb.backup_full", run_id="r", logical_date="2026-01-01T02:00:00+00:00",
                           deadline_time="2026-01-01T06:00:00+00:00", window=timedelta(hours=4))
    assert late.facts["window_seconds"] == 14400 and "4:00:00" in late.subject
