"""Connections whose extras matter: a server that requires verified SSL, an S3 endpoint with its own CA.

The certificates come from a CA the test makes; the server has ``hostssl`` lines only, so nothing
reaches it without SSL, and ``sslmode=verify-full`` with ``sslrootcert`` in the connection's extra
is what makes libpq trust it. The S3 endpoint (moto over HTTPS) is trusted only through the AWS
connection's ``verify``. Every step (pg_basebackup, pg_receivewal, the restore drill) goes through
the Airflow connections, as in production.
"""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest
from psycopg import sql

from pgwarden.engine import pgtools
from pgwarden.engine.postgres import connect
from tests.dags.conftest import run_dag
from tests.harness.postgres import scratch_base
from tests.harness.s3 import start_moto
from tests.harness.tls import make_ca, make_server_cert
from tests.harness.workload import add_items, create_items

BUCKET = "pgwarden-tls"
# Over TCP only SSL gets in. The Unix socket (no SSL there) stays open for the fixtures' own setup,
# which reaches the server through LocalCluster.target(), a socket connection.
SSL_ONLY_HBA = (
    "local all all trust",
    "hostssl all all 127.0.0.1/32 trust",
    "hostssl replication all 127.0.0.1/32 trust",
)


@pytest.fixture(scope="module")
def certs():
    base = scratch_base()
    server = make_server_cert(base / "tls")
    other_ca, _ = make_ca(base / "other", name="a CA nobody trusts")
    pgtools.give_to_server_user(base / "tls")  # the server refuses a key file it does not own
    yield server, other_ca
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def https_s3(certs):
    server = start_moto(tls=certs[0])
    yield server
    server.stop()


@pytest.fixture
def ssl_pg(pg_factory, certs):
    """SSL set in the configuration files as in production (so base backups carry it too: the drill's
    restored copy keeps the hostssl-only pg_hba.conf and needs SSL on to take pgwarden's connections)."""
    server_cert, _ = certs
    ssl_settings = {"ssl": "on", "ssl_cert_file": str(server_cert.cert), "ssl_key_file": str(server_cert.key)}
    server = pg_factory(settings=ssl_settings, hba=SSL_ONLY_HBA)
    with connect(server.target()) as conn:
        for name, value in ssl_settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    return server


def postgres_conn(server, **extra) -> str:
    return json.dumps({"conn_type": "postgres", "host": "localhost", "port": server.port, "login": "postgres",
                       "schema": "postgres", "extra": extra})


@pytest.mark.integration
def test_backup_wal_and_drill_through_verified_ssl_and_a_custom_ca(ssl_pg, https_s3, certs, pgwarden_config,
                                                                     monkeypatch) -> None:
    server_cert, _ = certs
    https_s3.client().create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AIRFLOW_CONN_PG_TLS", postgres_conn(ssl_pg, sslmode="verify-full",
                                                            sslrootcert=str(server_cert.ca)))
    monkeypatch.setenv("AIRFLOW_CONN_S3_TLS", https_s3.airflow_conn_uri(verify=str(server_cert.ca)))
    pgwarden_config(f"""
        tlsdb:
          conn_id: pg_tls
          repository: {{url: "s3://{BUCKET}/pg", conn_id: s3_tls}}
          backup: {{count_rows: [public.items], incremental_schedule: "*/15 * * * *"}}
          verify: {{rto_target: 1h, rpo_target: 1h, old_backup_every: 0}}
    """)
    create_items(ssl_pg, 500)

    assert run_dag("tlsdb.backup_full")[0]["base_backup"] == "success"
    add_items(ssl_pg, 100)
    states, _ = run_dag("tlsdb.backup_incremental")
    assert states["collect_wal"] == "success"
    listing = https_s3.client().list_objects_v2(Bucket=BUCKET, Prefix="pg/tlsdb/wal/")
    assert any(o["Key"].endswith(".zst") for o in listing.get("Contents", []))

    states, _ = run_dag("tlsdb.verify_restore")
    assert states["restore_and_check"] == "success"
    [key] = [o["Key"] for o in https_s3.client().list_objects_v2(Bucket=BUCKET, Prefix="pg/tlsdb/drills/")["Contents"]]
    evidence = json.loads(https_s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert {c["name"]: c["ok"] for c in evidence["checks"]}["row_counts"] is True


@pytest.mark.integration
def test_the_ca_in_the_connection_is_what_makes_it_trusted(ssl_pg, https_s3, certs, monkeypatch) -> None:
    """The same connections with a CA that did not sign the servers' certificates fail: the extras
    reach libpq, the tools' environment and botocore, and verification is not silently skipped."""
    from pgwarden.airflow.hooks import pg_target, s3_settings

    server_cert, other_ca = certs
    for ca, trusted in ((server_cert.ca, True), (other_ca, False)):
        monkeypatch.setenv("AIRFLOW_CONN_PG_TLS", postgres_conn(ssl_pg, sslmode="verify-full", sslrootcert=str(ca)))
        monkeypatch.setenv("AIRFLOW_CONN_S3_TLS", https_s3.airflow_conn_uri(verify=str(ca)))
        target = pg_target("pg_tls")
        attempts = {
            "psycopg": lambda t=target: psycopg.connect(**t.conninfo_params()).close(),
            "replication": lambda t=target: psycopg.connect(**t.conninfo_params(replication=True)).close(),
            "psql": lambda t=target: pgtools.run(
                [pgtools.tool("psql"), "-Atc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                env=t.tool_env(), timeout=60).stdout.strip(),
            "s3": lambda: s3_settings("s3_tls").client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"],
        }
        for name, attempt in attempts.items():
            if trusted:
                assert attempt() in (None, "t", 200), name
            else:
                with pytest.raises(Exception) as failure:  # psycopg, pgtools and botocore each raise their own
                    attempt()
                assert "certificate verify failed" in str(failure.value).lower(), (name, failure.value)


@pytest.mark.integration
def test_the_server_takes_no_connection_without_ssl(ssl_pg, monkeypatch) -> None:
    """The hba above really is SSL-only: the same connection with sslmode=disable is refused."""
    from pgwarden.airflow.hooks import pg_target

    monkeypatch.setenv("AIRFLOW_CONN_PG_PLAIN", postgres_conn(ssl_pg, sslmode="disable"))
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
        psycopg.connect(**pg_target("pg_plain").conninfo_params()).close()
