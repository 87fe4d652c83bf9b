"""A source server set up the way production ones are: every login, local or TCP, needs a password."""

from __future__ import annotations

from psycopg import sql

from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.postgres import PgTarget, connect

PASSWORD = "s3cret-for-tests"
SCRAM_ONLY_HBA = (
    "local all all scram-sha-256",
    "host all all 127.0.0.1/32 scram-sha-256",
    "local replication all scram-sha-256",
    "host replication all 127.0.0.1/32 scram-sha-256",
)


def require_passwords(server: LocalCluster) -> PgTarget:
    """Give ``postgres`` a password, switch the server to ``SCRAM_ONLY_HBA`` and return how to log in now:
    over TCP with the password, as pgwarden gets it from an Airflow connection."""
    with connect(server.target()) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(PASSWORD)))
        server.write_hba(SCRAM_ONLY_HBA)
        conn.execute("SELECT pg_reload_conf()")
    return PgTarget(host="127.0.0.1", port=server.port, user="postgres", password=PASSWORD)
