"""dag.test() of the backup and drill DAGs against a real server and the real S3 endpoint."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from pgwarden.core.units import format_duration
from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import set_postgres_conn
from tests.harness.workload import add_items, create_items

BUCKET = "pgwarden-dags"
OFFSITE = "pgwarden-dags-offsite"


@pytest.fixture
def appdb(pg, s3, pgwarden_config, monkeypatch):
    """A database entry 'shop' backed up to S3, with a restore-drill config that checks items."""
    return shop(pg, s3, pgwarden_config, monkeypatch, old_backup_every=0)


def shop(pg, s3, pgwarden_config, monkeypatch, *, old_backup_every: int):
    s3.client().create_bucket(Bucket=BUCKET)
    s3.client().create_bucket(Bucket=OFFSITE)
    monkeypatch.setenv("AIRFLOW_CONN_PGW_S3", s3.airflow_conn_uri())
    set_postgres_conn(monkeypatch, "pg_shop", pg)
    pgwarden_config(f"""
        shop:
          conn_id: pg_shop
          repository: {{url: "s3://{BUCKET}/pg", conn_id: pgw_s3}}
          backup:
            count_rows: [public.items]
            incremental_schedule: "*/15 * * * *"
            offsite: {{url: "s3://{OFFSITE}/copy", conn_id: pgw_s3}}
          verify: {{rto_target: 1h, rpo_target: 1h, old_backup_every: {old_backup_every}}}
    """)
    create_items(pg, 2000)
    return pg


def objects(s3, prefix: str, bucket: str = BUCKET) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def ends_before(wal_key: str, manifest: dict) -> bool:
    """Does this archived segment end at or before the backup's start LSN (on its timeline or older)?

    Worked out here from the file name and the manifest, not with pgwarden's WAL name or retention code.
    """
    name = wal_key.rsplit("/", 1)[1].removesuffix(".zst")
    if len(name) != 24:  # a .history or .backup file
        return False
    seg_size = manifest["wal_segment_size"]
    timeline, high, low = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    segment_end = (high * (2**32 // seg_size) + low + 1) * seg_size
    start_high, start_low = manifest["start_lsn"].split("/")
    return timeline <= manifest["timeline"] and segment_end <= (int(start_high, 16) << 32) + int(start_low, 16)


def drill_evidence(s3) -> list[dict]:
    return [json.loads(s3.client().get_object(Bucket=BUCKET, Key=k)["Body"].read())
            for k in sorted(objects(s3, "pg/shop/drills/"))]


@pytest.mark.integration
def test_full_incremental_and_drill(appdb, s3, capfd) -> None:
    states, _ = run_dag("shop.backup_full")
    assert states == {"base_backup": "success", "retention": "success", "offsite_copy": "success"}
    [manifest_key] = [k for k in objects(s3, "pg/shop/base/") if k.endswith("pgwarden.json")]
    backup_id = manifest_key.split("/")[3]
    assert f"copy/shop/base/{backup_id}/pgwarden.json" in objects(s3, "copy/shop/base/", OFFSITE)

    add_items(appdb, 300)
    states, _ = run_dag("shop.backup_incremental")
    assert states == {"collect_wal": "success", "check_chain": "success", "offsite_copy": "success"}
    wal = [k for k in objects(s3, "pg/shop/wal/") if k.endswith(".zst")]
    assert wal and objects(s3, "pg/shop/restore_points/")
    # Off-site gets every WAL file retention keeps and every restore point record. With one backup,
    # retention keeps every WAL file except the segments that end at or before the backup's start.
    copied = objects(s3, "copy/shop/", OFFSITE)
    manifest = json.loads(s3.client().get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    kept = [k for k in wal if not ends_before(k, manifest)]
    wanted = kept + objects(s3, "pg/shop/restore_points/")
    assert kept and all(k.replace("pg/", "copy/", 1) in copied for k in wanted)

    states, _ = run_dag("shop.verify_restore")
    assert states == {"prepare_scratch": "success", "restore_and_check": "success", "remove_scratch": "success"}
    [evidence] = drill_evidence(s3)
    checks = {c["name"]: c["ok"] for c in evidence["checks"]}
    assert checks == {"pg_verifybackup": True, "row_counts": True, "amcheck": True, "rto": True, "rpo": True}
    assert evidence["backup_id"] == backup_id
    assert evidence["rto_seconds"] > 0 and evidence["rpo_seconds"] >= 0
    assert evidence["target"].startswith("restore point 'pgwarden_shop_")
    # The task log carries the numbers: RTO/RPO against their targets, the reached position, the evidence.
    output = "".join(capfd.readouterr())
    drill = evidence["drill_id"]
    assert (f"drill {drill} PASSED: RTO {format_duration(evidence['rto_seconds'])} (target 1h, met), "
            f"RPO {format_duration(evidence['rpo_seconds'])} (target 1h, met)") in output
    assert evidence["reached_lsn"] and evidence["timeline"]
    assert f"reached LSN {evidence['reached_lsn']} (" in output and f"timeline {evidence['timeline']})" in output
    assert f"evidence: s3://{BUCKET}/pg/shop/drills/{drill}.json" in output
    assert "LSN None" not in output


@pytest.mark.integration
def test_drill_right_after_the_first_backup_restores_to_its_end(appdb, s3) -> None:
    assert run_dag("shop.backup_full")[0]["base_backup"] == "success"
    states, _ = run_dag("shop.verify_restore")
    assert states["restore_and_check"] == "success"
    [evidence] = drill_evidence(s3)
    assert evidence["target"] == "the end of the backup"
    assert "not compared" in next(c["detail"] for c in evidence["checks"] if c["name"] == "row_counts")


@pytest.mark.integration
def test_the_run_date_not_the_clock_decides_whether_the_drill_also_restores_the_oldest(pg, s3, pgwarden_config,
                                                                                     monkeypatch) -> None:
    """With ``old_backup_every: 2`` the months 2, 4, ... also drill the oldest backup, judged by the run's date: a
    scheduled or backfilled run's logical date, a manual run's run_after. Whichever month the test runs in, a
    decision by the clock gets one of the first two runs wrong."""
    shop(pg, s3, pgwarden_config, monkeypatch, old_backup_every=2)
    assert run_dag("shop.backup_full")[0]["base_backup"] == "success"

    def drills(**test_kwargs) -> list[str]:
        before = {e["drill_id"] for e in drill_evidence(s3)}
        states, _ = run_dag("shop.verify_restore", **test_kwargs)
        assert states["restore_and_check"] == "success"
        return sorted(e["kind"] for e in drill_evidence(s3) if e["drill_id"] not in before)

    assert drills(logical_date=datetime(2026, 2, 1, 4, tzinfo=timezone.utc)) == ["newest", "old"]
    assert drills(logical_date=datetime(2026, 3, 1, 4, tzinfo=timezone.utc)) == ["newest"]
    # A manual run without a logical date: the moment it was triggered (its run_after) decides.
    assert drills(logical_date=None, run_after=datetime(2026, 4, 30, 23, tzinfo=timezone.utc)) == ["newest", "old"]


@pytest.mark.integration
def test_drill_of_a_corrupted_backup_fails_naming_the_object(appdb, s3, capfd) -> None:
    assert run_dag("shop.backup_full")[0]["base_backup"] == "success"
    [base_key] = [k for k in objects(s3, "pg/shop/base/") if "/base.tar" in k]
    client = s3.client()
    body = bytearray(client.get_object(Bucket=BUCKET, Key=base_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, metadata (recorded SHA-256) left as it was
    head = client.head_object(Bucket=BUCKET, Key=base_key)
    client.put_object(Bucket=BUCKET, Key=base_key, Body=bytes(body), Metadata=head["Metadata"])
    assert run_dag("shop.backup_incremental")[0]["collect_wal"] == "success"

    states, _ = run_dag("shop.verify_restore")
    assert states["restore_and_check"] == "failed"
    assert states["remove_scratch"] == "success"  # teardown runs even after the failure
    [evidence] = drill_evidence(s3)
    assert evidence["error"] and base_key.split("/", 1)[1] in evidence["error"]
    assert base_key.split("/", 1)[1] in "".join(capfd.readouterr())


@pytest.mark.integration
def test_deleted_wal_segment_fails_the_chain_check_naming_it(appdb, s3, capfd) -> None:
    assert run_dag("shop.backup_full")[0]["base_backup"] == "success"
    for _ in range(2):
        add_items(appdb, 500)
        assert run_dag("shop.backup_incremental")[0]["check_chain"] == "success"
    segments = sorted(k for k in objects(s3, "pg/shop/wal/") if k.endswith(".zst"))
    victim = segments[len(segments) // 2]
    s3.client().delete_object(Bucket=BUCKET, Key=victim)

    states, _ = run_dag("shop.backup_incremental")
    assert states["collect_wal"] == "success" and states["check_chain"] == "failed"
    output = "".join(capfd.readouterr())
    name = victim.rsplit("/", 1)[1].removesuffix(".zst")
    assert f"has a gap: {name}" in output and "trigger shop.backup_full" in output


@pytest.mark.integration
def test_before_the_first_full_backup_wal_and_drill_skip_saying_what_runs_first(appdb, s3, capfd) -> None:
    states, _ = run_dag("shop.backup_incremental")
    assert states["collect_wal"] == "skipped"
    states, _ = run_dag("shop.verify_restore")
    assert states["restore_and_check"] == "skipped"
    output = "".join(capfd.readouterr())
    assert "the first run of shop.backup_full creates the replication slot" in output
    assert "no backup to drill yet: run shop.backup_full first" in output
    assert not objects(s3, "pg/shop/drills/")
