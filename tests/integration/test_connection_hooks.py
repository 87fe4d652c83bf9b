"""Airflow connections through pgwarden's hooks: the extras the providers document reach psycopg, the
PostgreSQL tools' environment and boto3. Connections are given as deployments give them
(``AIRFLOW_CONN_<ID>``); servers are real (PostgreSQL, moto's S3 and STS)."""

from __future__ import annotations

import json

import pytest

from pgwarden.airflow.hooks import open_repository, pg_target, s3_settings
from pgwarden.core.config import RepositoryConfig
from pgwarden.engine import pgtools
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.postgres import connect
from pgwarden.engine.s3.client import new_client


def set_conn(monkeypatch, conn_id: str, **conn) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.mark.integration
def test_postgres_extras_reach_psycopg_and_the_tools(pg, monkeypatch) -> None:
    set_conn(monkeypatch, "pg_opts", conn_type="postgres", host="127.0.0.1", port=pg.port, login="postgres",
             schema="postgres", extra={"options": "-c statement_timeout=4321 -c search_path=pgw_probe",
                                       "application_name": "probe-app", "connect_timeout": 7,
                                       "sslmode": "disable", "cursor": "dictcursor"})
    target = pg_target("pg_opts")
    query = "SELECT current_setting('statement_timeout'), current_setting('search_path'), " \
            "current_setting('application_name'), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
    with connect(target) as conn:
        assert conn.execute(query).fetchone() == ("4321ms", "pgw_probe", "probe-app", False)
    out = pgtools.run([pgtools.tool("psql"), "-AtF,", "-c", query], env=target.tool_env(), timeout=60).stdout
    assert out.strip() == "4321ms,pgw_probe,probe-app,f"
    assert target.tool_env()["PGCONNECT_TIMEOUT"] == "7"


@pytest.mark.integration
def test_a_service_file_entry_names_the_server(pg, tmp_path, monkeypatch) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[pgw]\nhost=127.0.0.1\nport={pg.port}\noptions=-c work_mem=7777kB\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    set_conn(monkeypatch, "pg_svc", conn_type="postgres", login="postgres", extra={"service": "pgw"})
    target = pg_target("pg_svc")
    with connect(target) as conn:
        assert conn.execute("SELECT current_setting('work_mem')").fetchone() == ("7777kB",)
    out = pgtools.run([pgtools.tool("psql"), "-Atc", "SELECT current_setting('work_mem')"],
                      env=target.tool_env(), timeout=60).stdout
    assert out.strip() == "7777kB"


def test_iam_auth_puts_a_signed_token_in_the_password_and_the_environment(monkeypatch) -> None:
    """``"iam": true`` asks the Amazon provider for an RDS token (signed locally, no request made)."""
    set_conn(monkeypatch, "aws_rds", conn_type="aws", login="AKIAEXAMPLEKEY", password="secret-example",
             extra={"region_name": "eu-west-1"})
    set_conn(monkeypatch, "pg_iam", conn_type="postgres", host="db.example.internal", port=5433, login="app",
             schema="appdb", extra={"iam": True, "aws_conn_id": "aws_rds", "sslmode": "verify-full"})
    target = pg_target("pg_iam")
    assert target.password and target.password.startswith("db.example.internal:5433/?Action=connect&DBUser=app")
    assert "X-Amz-Signature=" in target.password
    env = target.tool_env()
    assert env["PGPASSWORD"] == target.password and env["PGSSLMODE"] == "verify-full"
    assert "iam" not in target.conninfo_params() and "aws_conn_id" not in target.conninfo_params()


def test_extras_libpq_does_not_know_or_cannot_take_from_the_environment_are_refused(monkeypatch) -> None:
    set_conn(monkeypatch, "pg_typo", conn_type="postgres", host="h", extra={"sslmode": "require", "ssl_mode": "x"})
    with pytest.raises(PermanentError, match="not libpq connection parameters: ssl_mode"):
        pg_target("pg_typo")
    set_conn(monkeypatch, "pg_keep", conn_type="postgres", host="h", extra={"keepalives_idle": 30})
    target = pg_target("pg_keep")
    assert target.conninfo_params()["keepalives_idle"] == "30"  # psycopg takes it
    with pytest.raises(PermanentError, match="'keepalives_idle' only from a connection string.*service"):
        target.tool_env()  # the tools would need it in argv


def test_a_missing_connection_says_where_to_define_it() -> None:
    for lookup in (pg_target, s3_settings):
        with pytest.raises(PermanentError, match="AIRFLOW_CONN_PGW_NOT_THERE"):
            lookup("pgw_not_there")


@pytest.mark.integration
def test_botocore_config_from_the_connection_reaches_the_client_over_pgwarden_defaults(s3, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_S3_CFG", s3.airflow_conn_uri(config_kwargs={
        "retries": {"max_attempts": 3, "mode": "adaptive"}, "s3": {"addressing_style": "virtual"},
        "read_timeout": 17}))
    client = new_client(s3_settings("s3_cfg"))
    config = client.meta.config
    # botocore reports max_attempts (retries) as total_max_attempts (the first try included)
    assert config.retries == {"total_max_attempts": 4, "mode": "adaptive"}
    assert config.s3 == {"addressing_style": "virtual"} and config.read_timeout == 17
    assert config.connect_timeout == 10  # pgwarden's default where the connection says nothing

    monkeypatch.setenv("AIRFLOW_CONN_S3_PLAIN", s3.airflow_conn_uri())
    plain = new_client(s3_settings("s3_plain")).meta.config
    # pgwarden's own default: S3Settings.max_attempts counts every attempt, the first one included
    assert plain.retries == {"total_max_attempts": 5, "mode": "standard"} and plain.s3 == {"addressing_style": "path"}


@pytest.mark.integration
def test_role_arn_assumes_the_role_and_the_repository_works_with_its_credentials(s3, monkeypatch) -> None:
    """The provider's session factory calls STS (moto's) and the repository uses the role's credentials."""
    role = "arn:aws:iam::123456789012:role/pgwarden-backups"
    monkeypatch.setenv("AIRFLOW_CONN_S3_ROLE", s3.airflow_conn_uri(
        role_arn=role, service_config={"sts": {"endpoint_url": s3.endpoint_url}}))
    settings = s3_settings("s3_role")
    credentials = settings.session.get_credentials().get_frozen_credentials()
    assert credentials.access_key != "testing" and credentials.token  # temporary credentials from STS

    s3.client().create_bucket(Bucket="pgw-role")
    repo = open_repository(RepositoryConfig(url="s3://pgw-role/p", conn_id="s3_role"))
    repo.put_bytes("probe/hello", b"hello")
    assert repo.get_bytes("probe/hello") == b"hello"
    assert [o["Key"] for o in s3.client().list_objects_v2(Bucket="pgw-role")["Contents"]] == ["p/probe/hello"]
