"""kill -9 of the off-site copy at an arbitrary moment, then run it again: it converges.

The off-site bucket is reached as production reaches it, in the killed child too: an Airflow AWS
connection (``AIRFLOW_CONN_<ID>``) resolved by pgwarden's hooks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from pgwarden.airflow import hooks
from pgwarden.core import layout
from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.offsite import copy_offsite
from pgwarden.engine.repository import open_repository
from tests.harness.airflow_conns import aws_conn_env
from tests.harness.bulk import fill_table

BUCKET = "offsite-kill"
OFFSITE_CONN = "pgw_offsite_kill"


@pytest.mark.integration
def test_offsite_copy_killed_midway_converges(pg, s3, file_repo, tmp_path, monkeypatch) -> None:
    src_config = RepositoryConfig(url=file_repo)
    src = open_repository(src_config)
    fill_table(pg, 150)  # a base backup big enough that its upload takes a moment
    manifest = take_full_backup(pg.target(), src, "db", BackupConfig(compression="none"), src_config,
                                workdir=tmp_path / "w")
    s3.client().create_bucket(Bucket=BUCKET)
    for name, value in aws_conn_env(OFFSITE_CONN, s3).items():
        monkeypatch.setenv(name, value)
    dst_config = RepositoryConfig(url=f"s3://{BUCKET}/dr", conn_id=OFFSITE_CONN)
    dst = hooks.open_repository(dst_config)

    script = (
        "from pathlib import Path\n"
        "from pgwarden.airflow.hooks import open_repository\n"
        "from pgwarden.core.config import RepositoryConfig\n"
        "from pgwarden.engine.offsite import copy_offsite\n"
        f"src = open_repository(RepositoryConfig(url={file_repo!r}))\n"
        f"dst = open_repository(RepositoryConfig(url={dst_config.url!r}, conn_id={OFFSITE_CONN!r}))\n"
        f"copy_offsite(src, dst, 'db', workdir=Path({str(tmp_path / 'copy1')!r}))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])  # inherits the connection's variable
    manifest_key = layout.manifest_key("db", manifest.backup_id)
    deadline = time.monotonic() + 120
    # Kill while the backup's files are going over: some object is there, its pgwarden.json is not.
    while time.monotonic() < deadline and child.poll() is None:
        present = {o.key for o in dst.list("db/base/")}
        if present and manifest_key not in present:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert dst.head(manifest_key) is None, "killed before pgwarden.json: the backup must not exist off-site"
    assert read_catalog(dst, "db").valid_backups == []

    result = copy_offsite(src, dst, "db", workdir=tmp_path / "copy2", now=datetime.now(timezone.utc))
    [copied] = read_catalog(dst, "db").valid_backups
    assert copied.id == manifest.backup_id and not result.failures
    again = copy_offsite(src, dst, "db", workdir=tmp_path / "copy3", now=datetime.now(timezone.utc))
    assert again.objects_copied == 0
