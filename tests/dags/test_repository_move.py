"""Moving the repository (README "Moving the repository"): copy the objects, change repository.url.

The backups asset is named after the database, not the repository, so the DAG keeps producing the
same asset after the move and the catalog at the new place holds the backups from before it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgwarden.airflow.pipelines.backup import backups_asset
from pgwarden.core.config import RepositoryConfig
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import set_postgres_conn
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.workload import add_items, create_items

OLD, NEW = "pgwarden-before-move", "pgwarden-after-move"


def config_for(bucket: str) -> str:
    return f"""
        shop:
          conn_id: pg_shop
          repository: {{url: "s3://{bucket}/pg", conn_id: pgw_s3}}
          # Retention as a dry run: two backups on one day are this test's history, not retention's.
          backup: {{count_rows: [public.items], retention: {{dry_run: true}}}}
          verify: {{enabled: false}}
    """


def copy_bucket(s3, source: str, dest: str) -> None:
    """What ``aws s3 sync s3://old s3://new`` does: every object, metadata included."""
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=source):
        for obj in page.get("Contents", []):
            client.copy_object(Bucket=dest, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]})


@pytest.mark.integration
def test_backup_full_after_moving_the_repository(pg, s3, pgwarden_config, monkeypatch) -> None:
    for bucket in (OLD, NEW):
        s3.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AIRFLOW_CONN_PGW_S3", s3.airflow_conn_uri())
    set_postgres_conn(monkeypatch, "pg_shop", pg)
    create_items(pg, 300)

    pgwarden_config(config_for(OLD))
    states, _ = run_dag("shop.backup_full")
    assert states == {"base_backup": "success", "retention": "success"}

    copy_bucket(s3, OLD, NEW)
    pgwarden_config(config_for(NEW))
    add_items(pg, 50)
    # `airflow dags test` in a fresh process, as an operator would run it: in this process,
    # dag.test() would run the task as serialized by the first run and not see the new outlets.
    cli = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "test", "shop.backup_full"],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=1200)
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]

    settings = S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    moved = read_catalog(open_repository(RepositoryConfig(url=f"s3://{NEW}/pg"), settings), "shop")
    assert len(moved.valid_backups) == 2
    counts = [b.manifest.row_counts.counts["public.items"] for b in moved.valid_backups]
    assert counts == [300, 350]
    # Nothing the second run did went to the old place.
    old = read_catalog(open_repository(RepositoryConfig(url=f"s3://{OLD}/pg"), settings), "shop")
    assert len(old.valid_backups) == 1


def test_backups_asset_is_named_after_the_database() -> None:
    assert backups_asset("shop").name == "pgwarden.shop.backups"
    assert backups_asset("shop").uri == "x-pgwarden://shop/backups"
    assert backups_asset("shop") != backups_asset("cart")
