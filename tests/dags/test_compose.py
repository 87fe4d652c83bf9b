"""docker-compose.yaml and the worker image, checked without Docker (none where the tests run).

What is checked is what would break the stack silently: a missing service or healthcheck, an Airflow
service that does not share the common settings, a mount or connection the DAGs rely on, a bucket
that differs from the one include/pgwarden.yaml names, a worker image without PostgreSQL binaries.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
LONG_RUNNING = ("postgres", "redis", "minio", *AIRFLOW_SERVICES[:-1])
MOUNTS = {"/opt/airflow/dags": "./dags", "/opt/airflow/plugins": "./plugins", "/opt/airflow/include": "./include"}


def _interpolate_defaults(value: str) -> str:
    """What compose makes of ``${VAR:-default}`` with VAR unset (``${VAR:?err}`` becomes ``<VAR>``)."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", value)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"<\1>", value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form for environment, so the anchor can be merged"
    return {key: str(value) for key, value in env.items()}


def test_has_every_service_of_the_production_shape(services: dict) -> None:
    expected = {"postgres", "redis", "minio", "minio-init", *AIRFLOW_SERVICES}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_share_the_common_settings(services: dict, compose: dict, name: str) -> None:
    common = compose["x-airflow-common"]
    service = services[name]
    assert service["image"] == common["image"], "every Airflow service runs the same image"
    env = _env(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    # Secrets that must agree across containers are required, never defaulted.
    assert ":?" in env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert ":?" in env["AIRFLOW__CORE__FERNET_KEY"]
    assert env["PGWARDEN_CONFIG"] == "/opt/airflow/include/pgwarden.yaml"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_mount_dags_plugins_and_include(services: dict, name: str) -> None:
    mounts = {}
    for volume in services[name]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    for target, source in MOUNTS.items():
        assert mounts.get(target) == source, f"{name} must mount {source} at {target}"


def test_image_is_built_from_the_worker_dockerfile(compose: dict) -> None:
    build = compose["x-airflow-common"]["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]) == DOCKERFILE and DOCKERFILE.exists()
    assert build["args"]["AIRFLOW_VERSION"] == "3.3.2"


def test_worker_image_has_postgres_server_and_client_binaries_zstd_and_pgwarden() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.2$", text, re.M)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}$", text, re.M)
    for package in ('"postgresql-${PG_MAJOR}"', '"postgresql-client-${PG_MAJOR}"', "zstd"):
        assert package in text
    assert "create_main_cluster = false" in text
    assert "PGWARDEN_PG_BINDIR=/usr/lib/postgresql/${PG_MAJOR}/bin" in text
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" /opt/pgwarden', text)
    # What the image copies must exist and be let through the build context's ignore list.
    ignore = (ROOT / "docker" / "worker.Dockerfile.dockerignore").read_text()
    for copied in ("pyproject.toml", "README.md", "plugins/pgwarden"):
        assert (ROOT / copied).exists()
        assert f"!{copied}" in ignore


def test_airflow_version_matches_the_project_pin() -> None:
    import re

    pyproject = (ROOT / "pyproject.toml").read_text()
    # Extras (``[statsd]``) do not change the version the image and the compose file must match.
    assert re.search(r'"apache-airflow(\[[a-z0-9,-]+\])?>=3\.3\.2,<3\.4"', pyproject)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(services: dict, name: str) -> None:
    check = services[name].get("healthcheck")
    assert check and check["test"], f"{name} needs a healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL")


def test_dependencies_point_at_services_that_exist_and_can_satisfy_them(services: dict) -> None:
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart", "no") == "no", f"{dependency} must run once"


def test_init_migrates_creates_the_admin_and_validates_the_config(services: dict) -> None:
    init = services["airflow-init"]
    env = _env(init)
    assert env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    script = "\n".join(init["command"])
    assert "/entrypoint airflow version" in script
    assert "pgwarden config validate" in script
    for name in AIRFLOW_SERVICES[:-1]:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_worker_has_scratch_space_and_warm_shutdown(services: dict) -> None:
    worker = services["airflow-worker"]
    env = _env(worker)
    assert env["DUMB_INIT_SETSID"] == "0"
    work_dir = env["PGWARDEN_WORK_DIR"]
    assert any(volume.split(":")[1] == work_dir for volume in worker["volumes"])
    assert worker["command"] == "celery worker"


def test_s3_connection_points_at_minio_and_the_configured_bucket_is_created(services: dict) -> None:
    env = _env(services["airflow-worker"])
    conn = json.loads(_interpolate_defaults(env["AIRFLOW_CONN_PGWARDEN_S3"]))
    assert conn["conn_type"] == "aws"
    assert conn["extra"]["endpoint_url"] == "http://minio:9000"
    minio_env = {k: _interpolate_defaults(v) for k, v in _env(services["minio"]).items()}
    assert conn["login"] == minio_env["MINIO_ROOT_USER"]
    assert conn["password"] == minio_env["MINIO_ROOT_PASSWORD"]

    config = yaml.safe_load((ROOT / "include" / "pgwarden.yaml").read_text())
    buckets = {
        urlparse(db["repository"]["url"]).netloc
        for db in config["databases"].values()
        if db["repository"]["url"].startswith("s3://")
    }
    init_env = {k: _interpolate_defaults(v) for k, v in _env(services["minio-init"]).items()}
    assert buckets == {init_env["PGWARDEN_BUCKET"]}
    script = "\n".join(services["minio-init"]["command"])
    assert 'mc mb --ignore-existing "local/$$PGWARDEN_BUCKET"' in script


def test_configured_connection_ids_are_all_given(services: dict) -> None:
    env = _env(services["airflow-worker"])
    config = yaml.safe_load((ROOT / "include" / "pgwarden.yaml").read_text())
    conn_ids = set()
    for db in config["databases"].values():
        conn_ids.add(db["conn_id"])
        conn_ids.add(db["repository"]["conn_id"])
    for conn_id in conn_ids:
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, f"no AIRFLOW_CONN_ variable for {conn_id}"


def test_demo_profile_database_loads_the_demo_schema_in_order(services: dict) -> None:
    appdb = services["appdb"]
    assert appdb["profiles"] == ["demo"]
    assert "wal_level=replica" in appdb["command"]
    scripts = sorted(
        (volume.split(":")[1].rsplit("/", 1)[1], volume.split(":")[0])
        for volume in appdb["volumes"]
        if "docker-entrypoint-initdb.d" in volume
    )
    assert [source for _, source in scripts] == [
        "./include/sql/demo/schema.sql",
        "./include/sql/demo/seed.sql",
        "./include/sql/demo/indexes.sql",
    ]
    for _, source in scripts:
        assert (ROOT / source).exists()


def test_named_volumes_are_declared(compose: dict, services: dict) -> None:
    declared = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
