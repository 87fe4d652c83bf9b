"""Acceptance: a pgwarden backup plus its WAL restores with stock tools only (README's runbook).

Backup and WAL go to the real S3 endpoint; the restore downloads with a plain S3 client, unpacks
with tar and zstd, and replays WAL with a shell restore_command to a named restore point.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.cluster import LocalCluster, free_port
from pgwarden.engine.pgtools import give_to_server_user
from pgwarden.engine.repository import S3Settings, open_repository
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import scratch_base
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.workload import add_items, count_items, create_items

BUCKET = "pgwarden-acceptance"


def s3_repository(s3):
    s3.client().create_bucket(Bucket=BUCKET)
    config = RepositoryConfig(url=f"s3://{BUCKET}/prod", conn_id="aws")
    settings = S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    return config, open_repository(config, settings)


def mirror(s3, prefix: str, dest: Path) -> None:
    """What `aws s3 cp --recursive s3://bucket/prefix dest` does."""
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, obj["Key"], str(target))


def sh(command: str, cwd: Path | None = None) -> None:
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], check=True, cwd=cwd)


@pytest.mark.integration
def test_backup_and_wal_restore_by_hand_to_a_named_restore_point(pg, s3, tmp_path) -> None:
    repo_config, repo = s3_repository(s3)
    backup = BackupConfig(count_rows=["public.items"])
    create_items(pg, 1000)

    manifest = take_full_backup(pg.target(), repo, "appdb", backup, repo_config, workdir=tmp_path / "w1")
    assert manifest.row_counts and manifest.row_counts.counts == {"public.items": 1000}
    assert manifest.verification.ok and manifest.verification.files_checked > 100

    add_items(pg, 500)
    first = collect_wal(pg.target(), repo, "appdb", slot="pgwarden_appdb", workdir=tmp_path / "w2",
                        compression=manifest.compression, restore_point="before_the_mistake", warn_bytes=2**30)
    assert first.segments_uploaded
    add_items(pg, 200)  # committed after the restore point: must not be in the restore
    collect_wal(pg.target(), repo, "appdb", slot="pgwarden_appdb", workdir=tmp_path / "w3",
                compression=manifest.compression, restore_point="later", warn_bytes=2**30)
    assert count_items(pg) == 1700

    # --- README runbook, stock tools only ---
    base = scratch_base()
    restored = LocalCluster(datadir=base / "data", port=free_port())
    try:
        local = base / "repo"
        mirror(s3, f"prod/appdb/base/{manifest.backup_id}/", local / "base")
        mirror(s3, "prod/appdb/wal/", local / "wal")
        data = base / "data"
        (data / "pg_wal").mkdir(parents=True)
        ext = ".zst" if manifest.compression == "zstd" else ".gz"
        unpack = "zstd -dcq" if ext == ".zst" else "gzip -dc"
        sh(f"{unpack} {local}/base/base.tar{ext} | tar -xf - -C {data}")
        sh(f"{unpack} {local}/base/pg_wal.tar{ext} | tar -xf - -C {data}/pg_wal")
        wal = local / "wal"
        restore_command = (f"test -f {wal}/%f && cp {wal}/%f %p || {unpack} {wal}/%f{ext} > %p")
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"restore_command = '{restore_command}'\n"
                       "recovery_target_name = 'before_the_mistake'\n"
                       "recovery_target_action = 'promote'\n"
                       "archive_mode = 'off'\n")
        (data / "recovery.signal").touch()
        give_to_server_user(base)
        restored.start()
        restored.wait_ready()
        assert count_items(restored) == 1500
    finally:
        restored.remove()
        shutil.rmtree(base, ignore_errors=True)
