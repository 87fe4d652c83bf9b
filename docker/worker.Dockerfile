# syntax=docker/dockerfile:1
# The image every Airflow service in docker-compose.yaml runs: the official Airflow image plus what
# pgwarden's tasks need on a worker:
#   * PostgreSQL client AND server binaries of one major version (PG_MAJOR) from the PostgreSQL apt
#     repository: pg_basebackup, pg_receivewal, pg_dump for backups; initdb, pg_ctl, pg_amcheck and the
#     server itself for restore drills and PITR. Client tools must be at least as new as the servers
#     they back up, so PG_MAJOR is the newest major you run.
#   * zstd, for backup compression and for restoring by hand (README's runbook).
#   * pgwarden itself (console script `pgwarden`), installed with apache-airflow pinned to the image's
#     version so pip cannot up- or downgrade Airflow underneath it.
#
#   docker compose build            (context: the repository root)
# The build context's ignore list is docker/worker.Dockerfile.dockerignore (BuildKit reads it).

ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}

ARG AIRFLOW_VERSION
ARG PG_MAJOR=17

USER root
# Debian's postgresql packages create and start a "main" cluster on install unless told not to.
RUN set -eux; \
    mkdir -p /etc/postgresql-common; \
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    . /etc/os-release; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" zstd; \
    apt-get autoremove -y; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*

# pgwarden finds the binaries here first (engine/pgtools.py); they are not on PATH by default on Debian.
ENV PGWARDEN_PG_BINDIR=/usr/lib/postgresql/${PG_MAJOR}/bin \
    PATH="/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}"

USER airflow
# Scratch space for backups in flight and restored drill servers; a named volume mounted here takes
# this ownership. Group 0 may write, as the official image expects for arbitrary AIRFLOW_UIDs.
RUN mkdir -p /opt/airflow/pgwarden-work && chmod 2775 /opt/airflow/pgwarden-work

COPY --chown=airflow:0 pyproject.toml README.md /opt/pgwarden/
COPY --chown=airflow:0 plugins/pgwarden /opt/pgwarden/plugins/pgwarden
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /opt/pgwarden \
    && pgwarden --help > /dev/null
