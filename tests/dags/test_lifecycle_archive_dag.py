"""dag.test() of <database>.ttl_purge with an archive_then_delete policy: real server, real S3 (moto)."""

from __future__ import annotations

import pytest

from pgwarden.core.lifecycle.archive import ArchiveManifest
from pgwarden.engine.postgres import connect
from tests.dags.conftest import run_dag
from tests.harness.airflow_conns import set_postgres_conn


@pytest.mark.integration
def test_ttl_purge_dag_archives_then_deletes(pg, s3, pgwarden_config, monkeypatch, tmp_path) -> None:
    s3.client().create_bucket(Bucket="lcarchdag")
    monkeypatch.setenv("AIRFLOW_CONN_LCARCH_S3", s3.airflow_conn_uri())
    monkeypatch.setenv("PGWARDEN_WORK_DIR", str(tmp_path / "work"))
    set_postgres_conn(monkeypatch, "pg_lcarchdag", pg)
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, closed_at timestamptz, total numeric(10,2), "
                     "email text)")
        conn.execute("""INSERT INTO public.orders SELECT g, CASE WHEN g <= 700 THEN '2001-01-01'::timestamptz
                        ELSE '2999-01-01'::timestamptz END, g / 4.0, 'u' || g || '@example.com'
                        FROM generate_series(1, 1000) g""")
    pgwarden_config("""
        lcarchdag:
          conn_id: pg_lcarchdag
          repository: {url: "s3://lcarchdag/pgw", conn_id: lcarch_s3}
          lifecycle:
            policies:
              - name: old_orders
                table: public.orders
                expire: {column: closed_at, after: 30d}
                mode: archive_then_delete
                personal_data: [email]
                archive: {storage_class: GLACIER_IR, drop_columns: [email]}
    """)
    states, run = run_dag("lcarchdag.ttl_purge")
    assert states == {"plan": "success", "purge_old_orders": "success"}
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*), min(id) FROM public.orders").fetchone() == (300, 701)
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lcarchdag", Prefix="pgw/lcarchdag/archive/")["Contents"]]
    manifest_key = next(k for k in keys if k.endswith("/manifest.json"))
    manifest = ArchiveManifest.model_validate_json(client.get_object(Bucket="lcarchdag", Key=manifest_key)["Body"].read())
    assert manifest.complete and manifest.rows_archived == manifest.rows_deleted == 700
    assert manifest.dropped_columns == ["email"] and manifest.run_id == run.run_id
    assert manifest_key.startswith("pgw/lcarchdag/archive/public.orders/")
