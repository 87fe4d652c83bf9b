"""`pgwarden restore` and `pgwarden catalog` from a shell, with no Airflow running at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.repository import open_repository
from pgwarden.engine.restore import remove_restore, restored_server
from pgwarden.engine.s3.settings import S3Settings
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import scratch_base
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.workload import add_items, count_items, create_items


@pytest.mark.integration
def test_cli_restore_from_s3_without_airflow(pg, s3, tmp_path) -> None:
    s3.client().create_bucket(Bucket="cli")
    config = RepositoryConfig(url="s3://cli/backups", conn_id="offline_s3")
    repo = open_repository(config, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    create_items(pg, 100)
    take_full_backup(pg.target(), repo, "ops", BackupConfig(), config, workdir=tmp_path / "w")
    add_items(pg, 50)
    collect_wal(pg.target(), repo, "ops", slot="pgwarden_ops", workdir=tmp_path / "w2", compression="zstd",
                restore_point="after_150", warn_bytes=2**30)
    add_items(pg, 25)
    collect_wal(pg.target(), repo, "ops", slot="pgwarden_ops", workdir=tmp_path / "w3", compression="zstd",
                restore_point="after_175", warn_bytes=2**30)

    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text("databases:\n  ops:\n    conn_id: pg_ops\n"
                   "    repository: {url: 's3://cli/backups', conn_id: offline_s3}\n")
    env = {
        **os.environ,
        "AIRFLOW_CONN_OFFLINE_S3": s3.airflow_conn_uri(),
        # No metadata database: anything that needed a running Airflow would fail here.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://nobody@127.0.0.1:1/none",
    }
    pgwarden = str(Path(sys.executable).with_name("pgwarden"))
    listing = subprocess.run([pgwarden, "--config", str(cfg), "catalog", "ops", "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)["backups"]) == 1

    base = scratch_base()
    dest = base / "restored"
    try:
        run = subprocess.run([pgwarden, "--config", str(cfg), "restore", "ops", "--to", str(dest),
                              "--target-name", "after_150", "--start"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["started"] and result["target"] == "restore point 'after_150'"
        assert count_items(restored_server(dest, result["port"])) == 150
        assert "pg_ctl stop -D" in run.stderr

        again = subprocess.run([pgwarden, "--config", str(cfg), "restore", "ops", "--to", str(dest)],
                               env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and "is not empty" in again.stderr
        bad = subprocess.run([pgwarden, "--config", str(cfg), "restore", "ops", "--to", str(base / "x"),
                              "--target-time", "yesterday"], env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and "is not ISO 8601" in bad.stderr
    finally:
        remove_restore(dest)
        import shutil

        shutil.rmtree(base, ignore_errors=True)
