"""Erasure certificates and the backup-expiry forecast behind them (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pgwarden.core.lifecycle.backup_expiry import forecast_backup_drops
from pgwarden.core.lifecycle.certificate import Certificate
from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure, next_entry
from pgwarden.core.lsn import Lsn
from pgwarden.core.retention import BackupRef, RetentionPolicy, plan_retention

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def daily_backups(days: int) -> list[BackupRef]:
    """One backup at 02:00 on each of the last ``days`` days (today's included)."""
    refs = []
    for i in range(days):
        t = (NOW - timedelta(days=days - 1 - i)).replace(hour=2)
        refs.append(BackupRef(t.strftime("%Y%m%dT%H%M%SZ"), t, Lsn(i * 100), Lsn(i * 100 + 10), 1))
    return refs


def test_data_erased_before_every_kept_backup_is_already_gone() -> None:
    drops = forecast_backup_drops(daily_backups(10), RetentionPolicy(daily=30), NOW, "0 2 * * *")
    expiry = drops.for_erasure(NOW - timedelta(days=20))
    assert expiry.status == "gone" and expiry.holding == ()
    assert "no backup holds" in expiry.sentence()


def test_daily_only_retention_bounds_the_data_by_the_window_and_its_start_backup() -> None:
    policy = RetentionPolicy(daily=7, monthly=0, yearly=0)
    erased = NOW - timedelta(days=1)  # after yesterday's 02:00 backup, before today's
    drops = forecast_backup_drops(daily_backups(10), policy, NOW, "0 2 * * *")
    expiry = drops.for_erasure(erased)
    assert expiry.status == "bounded"
    assert expiry.last_backup == "20261129T020000Z" and len(expiry.holding) == 7
    # Checked against retention itself: one backup earlier it is still kept, at the forecast date it is not.
    future = [*daily_backups(10)]
    moment, n = NOW.replace(hour=2), 0
    while moment < expiry.expires_at:
        moment += timedelta(days=1)
        n += 1
        future.append(BackupRef(f"f{n}", moment, Lsn(10_000 + n * 100), Lsn(10_000 + n * 100 + 1), 1))
        kept = plan_retention(future, policy).keep
        assert ("20261129T020000Z" in kept) == (moment < expiry.expires_at)
    # Dec 6: the 7 daily days are Nov 30..Dec 6 and Nov 29 is the window start; Dec 7: gone.
    assert expiry.expires_at == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def test_a_yearly_backup_holds_the_data_for_years() -> None:
    drops = forecast_backup_drops(daily_backups(400), RetentionPolicy(daily=30, monthly=12, yearly=7), NOW,
                                  "0 2 * * *")
    expiry = drops.for_erasure(NOW - timedelta(hours=1))
    assert expiry.status == "bounded" and expiry.last_backup == "20251231T020000Z"
    assert expiry.expires_at == datetime(2032, 1, 1, 2, 0, tzinfo=UTC)
    assert "7 yearly" in expiry.sentence()


def test_without_scheduled_backups_the_expiry_cannot_be_bounded() -> None:
    drops = forecast_backup_drops(daily_backups(3), RetentionPolicy(), NOW, None)
    expiry = drops.for_erasure(NOW)
    assert expiry.status == "unbounded" and expiry.expires_at is None
    assert "cannot be bounded" in expiry.sentence() and "no full backups are scheduled" in expiry.reason


def test_past_twenty_years_the_expiry_cannot_be_bounded() -> None:
    drops = forecast_backup_drops(daily_backups(3), RetentionPolicy(daily=1, monthly=0, yearly=50), NOW,
                                  "0 2 1 1 *")
    expiry = drops.for_erasure(NOW)
    assert expiry.status == "unbounded" and "delete it by hand" in expiry.reason


def certificate(request_id: str = "req-1") -> Certificate:
    record = ErasureRecord(
        kind="erasure", request_id=request_id, subject_ref="ab" * 32, policy_version="v7",
        tables=(TableErasure('"public"."users"', "redact_email:email,null:phone", 1),
                TableErasure('"public"."sessions"', "delete_row", 12)),
        dag_id="appdb.gdpr_erasure", run_id="scheduled__2026-11-30T00:00:00+00:00", task_id="erase", try_number=2,
        erased_at=NOW - timedelta(hours=1))
    entry = next_entry(None, record)
    drops = forecast_backup_drops(daily_backups(10), RetentionPolicy(daily=7, monthly=0, yearly=0), NOW, "0 2 * * *")
    return Certificate("appdb", entry, 1, entry.entry_hash, 1, drops.for_erasure(record.erased_at), NOW)


def test_the_certificate_json_holds_every_field_an_auditor_asks_for() -> None:
    doc = json.loads(certificate().to_json())
    assert doc["request_id"] == "req-1" and doc["subject_ref"] == "ab" * 32 and doc["rows"] == 13
    assert doc["tables"][1] == {"table": '"public"."sessions"', "method": "delete_row", "rows": 12}
    assert doc["airflow"] == {"dag_id": "appdb.gdpr_erasure", "run_id": "scheduled__2026-11-30T00:00:00+00:00",
                              "task_id": "erase", "try_number": 2}
    assert doc["ledger"]["seq"] == 1 and len(doc["ledger"]["entry_hash"]) == 64
    assert doc["backups"]["status"] == "bounded" and doc["backups"]["expires_at"].startswith("2026-12-0")


def test_the_html_page_is_escaped_and_self_contained() -> None:
    page = certificate(request_id='<script>alert("x")</script>&').to_html().decode()
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "src=" not in page and "href=" not in page and "http" not in page.lower().replace("http-equiv", "")
    assert "&quot;public&quot;.&quot;sessions&quot;" in page and ">12<" in page
    assert "pgwarden ledger verify appdb" in page
