"""`pgwarden catalog` lists the restore points `restore --target-name` takes: name, time and LSN,
newest first, in the text listing and in `--json`, read from a real backup and WAL runs on S3."""

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
from pgwarden.engine.s3.settings import S3Settings
from pgwarden.engine.wal import collect_wal
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.workload import add_items, create_items


def _catalog(cfg: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    pgwarden = str(Path(sys.executable).with_name("pgwarden"))
    return subprocess.run([pgwarden, "--config", str(cfg), "catalog", "ops", *extra], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_catalog_lists_restore_points_newest_first(pg, s3, tmp_path) -> None:
    s3.client().create_bucket(Bucket="points")
    config = RepositoryConfig(url="s3://points/backups", conn_id="points_s3")
    repo = open_repository(config, S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION,
                                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY))
    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text("databases:\n  ops:\n    conn_id: pg_ops\n"
                   "    repository: {url: 's3://points/backups', conn_id: points_s3}\n")
    env = {**os.environ, "AIRFLOW_CONN_POINTS_S3": s3.airflow_conn_uri()}

    create_items(pg, 100)
    empty = _catalog(cfg, env)
    assert empty.returncode == 0, empty.stderr
    assert "restore points: none yet" in empty.stdout

    manifest = take_full_backup(pg.target(), repo, "ops", BackupConfig(count_rows=["public.items"]), config,
                                workdir=tmp_path / "w")
    lsns = {}
    for i, name in enumerate(("before_the_change", "after_the_change")):
        add_items(pg, 10)
        run = collect_wal(pg.target(), repo, "ops", slot="pgwarden_ops", workdir=tmp_path / f"w{i}",
                          compression=manifest.compression, restore_point=name, warn_bytes=2**30)
        lsns[name] = str(run.restore_point_lsn)

    listing = _catalog(cfg, env, "--json")
    assert listing.returncode == 0, listing.stderr
    points = json.loads(listing.stdout)["restore_points"]
    names = [p["name"] for p in points]
    # Newest first; the full backup's row-count restore point is the oldest.
    assert names[:2] == ["after_the_change", "before_the_change"]
    assert len(names) == 3 and names[2].startswith("pgwarden_ops_") and manifest.backup_id in names[2]
    assert {p["name"]: p["lsn"] for p in points[:2]} == lsns
    assert points[0]["created_at"] > points[1]["created_at"] > points[2]["created_at"]

    text = _catalog(cfg, env)
    assert text.returncode == 0, text.stderr
    section = text.stdout[text.stdout.index("restore points (3, newest first"):]
    rows = [line.split() for line in section.splitlines()[2:]]
    assert [row[0] for row in rows] == names
    assert [row[-1] for row in rows[:2]] == [lsns["after_the_change"], lsns["before_the_change"]]
    assert [f"{row[1]}T{row[2]}" for row in rows] == [p["created_at"][:19] for p in points]
