"""Archive-verify-delete against a real PostgreSQL server and the real (moto) S3 endpoint."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time as clock
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pgwarden.core.config import RepositoryConfig
from pgwarden.core.lifecycle.archive import ROW_VERSION_COLUMN, ArchiveManifest
from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.lifecycle.archive import ArchiveRequest, archive_then_delete
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import S3Settings, open_repository
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY

BUCKET = "lcarch"
DB = "lcarch"
END = datetime(2026, 11, 30, 19, 0, tzinfo=timezone.utc)
EXPIRED = END - timedelta(days=1)
LIVE = END + timedelta(days=1)


def s3_repo(s3):
    s3.client().create_bucket(Bucket=BUCKET)
    settings = S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    return open_repository(RepositoryConfig(url=f"s3://{BUCKET}/pgw"), settings)


def policy(name: str, table: str, column: str, **fields) -> PolicyConfig:
    return PolicyConfig.model_validate({"name": name, "table": table, "expire": {"column": column},
                                        "mode": "archive_then_delete", **fields})


def request(p: PolicyConfig, run_id: str = "manual__1") -> ArchiveRequest:
    return ArchiveRequest(database=DB, policy=p, data_interval_end=END, run_id=run_id)


ALL_TYPES = """
CREATE TABLE public.events (
    id bigint PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    i2 smallint, i4 integer, f4 real, f8 double precision, flag boolean,
    note text, code varchar(12), fixed char(4), blob bytea,
    happened timestamp, day date, at_time time,
    price numeric(12, 4), wide numeric(50, 10), free numeric,
    uid uuid, doc jsonb, raw json, tags text[], scores int[],
    span interval, addr inet
)"""


def fill_all_types(conn, n_expired: int, n_live: int) -> None:
    conn.execute(ALL_TYPES)
    conn.execute(
        """INSERT INTO public.events
           SELECT g, CASE WHEN g <= %(n)s THEN %(old)s::timestamptz ELSE %(new)s::timestamptz END
                     - g * interval '1 second',
                  (g %% 30000)::smallint, g, g / 7.0, g / 3.0, g %% 2 = 0,
                  CASE WHEN g %% 5 = 0 THEN NULL ELSE 'note ' || g || ' é✓' END, 'c' || g, 'ab',
                  decode(md5(g::text), 'hex'),
                  '2020-02-29 23:59:59.123456'::timestamp + g * interval '1 minute', '1999-12-31'::date + g,
                  '13:14:15.654321'::time, g * 1.2345, 12345678901234567890123456789.0123456789 + g,
                  CASE WHEN g %% 3 = 0 THEN 'NaN'::numeric ELSE 1e-30 * g END,
                  md5(g::text)::uuid, jsonb_build_object('g', g, 'n', NULL, 'a', jsonb_build_array(1.50, 'x')),
                  '{ "b" : 1,  "a":2 }', ARRAY['a' || g, NULL, 'q"uote'], ARRAY[g, -g],
                  make_interval(days => g, secs => 1.5), ('10.0.' || (g %% 250) || '.1')::inet
           FROM generate_series(1, %(total)s) g""",
        {"n": n_expired, "old": EXPIRED, "new": LIVE, "total": n_expired + n_live})


def source_rows(conn, ids_max: int) -> list[dict]:
    """The expired rows as psycopg reads them, in the form the archive promises."""
    cur = conn.execute(
        """SELECT id, expires_at, i2, i4, f4, f8, flag, note, code, fixed, blob, happened, day, at_time,
                  price, wide, free::text, uid::text, doc::text, raw::text, tags, scores, span::text,
                  addr::text
           FROM public.events WHERE id <= %s ORDER BY id""", (ids_max,))
    names = [d.name for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for row in rows:  # psycopg shows a real as its shortest decimal; the archive holds the float32 itself
        row["f4"] = struct.unpack("f", struct.pack("f", row["f4"]))[0]
    return rows


@pytest.mark.integration
def test_every_type_round_trips_and_only_expired_rows_are_deleted(pg, s3, tmp_path) -> None:
    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")  # the archive is UTC whatever the session says
        fill_all_types(conn, n_expired=2500, n_live=500)
        expected = source_rows(conn, 2500)
    p = policy("old_events", "public.events", "expires_at",
               archive={"storage_class": "GLACIER_IR", "max_part_size": "1MiB"})
    summary = archive_then_delete(pg.target(), repo, request(p), workdir=tmp_path / "w", read_batch_rows=700)

    assert summary.rows_archived == summary.rows_deleted == 2500
    assert summary.rows_changed_kept == 0
    with connect(pg.target()) as conn:
        remaining = conn.execute("SELECT count(*), min(id) FROM public.events").fetchone()
    assert remaining == (500, 2501)

    manifest = ArchiveManifest.model_validate_json(repo.get_bytes(summary.manifest_key))
    assert manifest.complete and [p.number for p in manifest.parts] == list(range(len(manifest.parts)))
    assert all(p.state == "deleted" for p in manifest.parts)
    columns = {c.name: c for c in manifest.columns}
    assert columns["free"].arrow_type == "string" and "unconstrained" in columns["free"].note
    assert columns["price"].arrow_type == "decimal(12, 4)"
    assert columns["expires_at"].arrow_type == "timestamp[us, UTC]"

    tables = []
    for part in manifest.parts:
        local = tmp_path / f"{part.number}.parquet"
        repo.get_file(part.key, local, expected_sha256=part.sha256)
        tables.append(pq.read_table(local))
        head = s3.client().head_object(Bucket=BUCKET, Key=f"pgw/{part.key}")
        assert head["StorageClass"] == "GLACIER_IR"
    archived = pa.concat_tables(tables)
    schema = archived.schema
    assert schema.field("expires_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("happened").type == pa.timestamp("us")
    assert schema.field("price").type == pa.decimal128(12, 4)
    assert schema.field("wide").type == pa.decimal256(50, 10)
    assert schema.field("blob").type == pa.binary()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("i2").type == pa.int16() and schema.field("f4").type == pa.float32()
    rows = archived.drop_columns([ROW_VERSION_COLUMN]).to_pylist()
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got == want, (got["id"], {k: (got[k], want[k]) for k in want if got[k] != want[k]})
    assert json.loads(rows[0]["doc"]) == {"g": 1, "n": None, "a": [1.50, "x"]}
    assert rows[2]["free"] == "NaN" and rows[0]["span"] == "1 day 00:00:01.5"
    assert rows[0]["at_time"] == time(13, 14, 15, 654321) and rows[0]["day"] == date(2000, 1, 1)
    assert rows[0]["price"] == Decimal("1.2345")


@pytest.mark.integration
def test_rows_changed_after_archival_are_kept_and_reported(pg, s3, tmp_path) -> None:
    """A session extended (or edited) between upload and delete keeps its newer version."""
    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE public.sessions (id int PRIMARY KEY, expires_at timestamptz, data text)")
        conn.execute("INSERT INTO public.sessions SELECT g, %s, 'v1' FROM generate_series(1, 300) g", (EXPIRED,))
    p = policy("sessions", "public.sessions", "expires_at")

    def on_upload(message: str) -> None:
        # Runs after the part's rows were read and while it is uploaded: the application writes.
        if message.startswith("uploading part 0"):
            with connect(pg.target()) as app:
                app.execute("UPDATE public.sessions SET expires_at = %s WHERE id <= 10", (LIVE,))
                app.execute("UPDATE public.sessions SET data = 'v2' WHERE id BETWEEN 11 AND 15")

    summary = archive_then_delete(pg.target(), repo, request(p), workdir=tmp_path / "w", log=on_upload)
    assert summary.rows_archived == 300
    assert summary.rows_deleted == 285
    assert summary.rows_changed_kept == 15
    with connect(pg.target()) as conn:
        kept = conn.execute("SELECT id, data FROM public.sessions ORDER BY id").fetchall()
    assert kept == [(i, "v1") for i in range(1, 11)] + [(i, "v2") for i in range(11, 16)]


@pytest.mark.integration
def test_quoted_identifiers_and_dropped_personal_data(pg, s3, tmp_path) -> None:
    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        conn.execute('CREATE SCHEMA "User Data"')
        conn.execute('CREATE TABLE "User Data"."e-mail" ("Id" int PRIMARY KEY, "Expires At" timestamptz, '
                     '"e-mail" text, "Full Name" text)')
        conn.execute("""INSERT INTO "User Data"."e-mail" SELECT g, %s, 'u' || g || '@example.com', 'N' || g
                        FROM generate_series(1, 50) g""", (EXPIRED,))
    fields = dict(table='"User Data"."e-mail"', personal_data=['"e-mail"', '"Full Name"'])
    with pytest.raises(ValidationError, match="archive.drop_columns"):
        policy("mail", column='"Expires At"', **fields)
    with pytest.raises(PermanentError, match=r"archive.drop_columns names \['phone'\], which"):
        archive_then_delete(pg.target(), repo, request(policy(
            "mail", column='"Expires At"', **fields,
            archive={"drop_columns": ['"e-mail"', "phone"], "anonymize_columns": ['"Full Name"']})),
            workdir=tmp_path / "w", hmac_key=b"secret")
    with connect(pg.target()) as conn:
        assert conn.execute('SELECT count(*) FROM "User Data"."e-mail"').fetchone()[0] == 50

    p = policy("mail", column='"Expires At"', **fields,
               archive={"drop_columns": ['"e-mail"'], "anonymize_columns": ['"Full Name"']})
    summary = archive_then_delete(pg.target(), repo, request(p), workdir=tmp_path / "w", hmac_key=b"secret")
    assert summary.rows_deleted == 50
    assert summary.manifest_key == "lcarch/archive/User%20Data.e-mail/20261130T190000Z/manifest.json"
    manifest = ArchiveManifest.model_validate_json(repo.get_bytes(summary.manifest_key))
    local = tmp_path / "p.parquet"
    repo.get_file(manifest.parts[0].key, local)
    archived = pq.read_table(local)
    assert archived.column_names == ["Id", "Expires At", "Full Name", ROW_VERSION_COLUMN]
    names = archived.column("Full Name").to_pylist()
    assert "N1" not in names and len(set(names)) == 50 and all(len(n) == 64 for n in names)
    assert manifest.dropped_columns == ["e-mail"]


@pytest.mark.integration
def test_personal_data_with_an_expiry_is_archived_with_the_expiry_tag(pg, s3, tmp_path) -> None:
    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE public.users (id int PRIMARY KEY, gone_at timestamptz, email text)")
        conn.execute("INSERT INTO public.users SELECT g, %s, 'x' FROM generate_series(1, 5) g", (EXPIRED,))
    p = policy("users", "public.users", "gone_at", personal_data=["email"],
               archive={"expire_after": "365d", "storage_class": "STANDARD_IA"})
    summary = archive_then_delete(pg.target(), repo, request(p), workdir=tmp_path / "w")
    assert summary.rows_deleted == 5
    manifest = ArchiveManifest.model_validate_json(repo.get_bytes(summary.manifest_key))
    tags = s3.client().get_object_tagging(Bucket=BUCKET, Key=f"pgw/{manifest.parts[0].key}")["TagSet"]
    assert tags == [{"Key": "pgwarden-archive-expire-days", "Value": "365"}]


# -- kill -9 ------------------------------------------------------------------------------------------

def fill_sessions(conn, n_expired: int, n_live: int) -> None:
    conn.execute("CREATE TABLE public.sessions (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL, "
                 "token text NOT NULL, data text)")
    conn.execute("""INSERT INTO public.sessions
                    SELECT g, CASE WHEN g <= %s THEN %s ELSE %s END, md5(g::text), repeat(md5((-g)::text), 6)
                    FROM generate_series(1, %s) g""", (n_expired, EXPIRED, LIVE, n_expired + n_live))


def sessions_snapshot(conn) -> list[tuple]:
    return conn.execute("SELECT id, token, data FROM public.sessions WHERE expires_at < %s ORDER BY id",
                        (END,)).fetchall()


def archived_rows(repo, manifest: ArchiveManifest, tmp_path) -> list[tuple]:
    rows = []
    for part in manifest.parts:
        local = tmp_path / "read.parquet"
        repo.get_file(part.key, local, expected_sha256=part.sha256)
        rows += [(r["id"], r["token"], r["data"]) for r in pq.read_table(local).to_pylist()]
    return rows


SESSIONS_FIELDS = {"name": "sessions", "table": "public.sessions", "expire": {"column": "expires_at"},
                   "mode": "archive_then_delete", "archive": {"max_part_size": "1MiB"},
                   "batch": {"lock_timeout": "200ms"}}
SESSIONS = PolicyConfig.model_validate(SESSIONS_FIELDS)


def spawn_archive(pg, s3, tmp_path, endpoint_url: str | None = None):
    """The archive run in a child that reaches S3 as production does: an Airflow AWS connection
    (``endpoint_url`` overrides its endpoint, e.g. with a relay that can be frozen)."""
    from tests.harness.airflow_conns import conn_var
    from tests.harness.archive_child import spawn
    from tests.harness.engine_child import child_env

    conn = s3.airflow_conn_uri(endpoint_url=endpoint_url or s3.endpoint_url)
    env = child_env(pg.target(), f"s3://{BUCKET}/pgw", DB, tmp_path / "child", "archive",
                    {conn_var("pgw_archive_s3"): conn, "PGWARDEN_CHILD_REPO_CONN_ID": "pgw_archive_s3"},
                    policy=json.dumps(SESSIONS_FIELDS), interval_end=END.isoformat(), read_batch_rows="2000")
    return spawn(env)


def assert_converged(pg, repo, tmp_path, before: list[tuple], s3) -> None:
    """After a rerun: every expired row archived exactly once, deleted once, nothing else touched."""
    with connect(pg.target()) as conn:
        # The killed worker's server session ends once the server notices; until then it holds the
        # table's advisory lock and a rerun would (rightly) refuse to start.
        for _ in range(300):
            if not conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]:
                break
            clock.sleep(0.1)
    summary = archive_then_delete(pg.target(), repo, request(SESSIONS, "rerun"), workdir=tmp_path / "rerun",
                                  read_batch_rows=2000)
    manifest = ArchiveManifest.model_validate_json(repo.get_bytes(summary.manifest_key))
    assert manifest.complete and all(p.state == "deleted" for p in manifest.parts)
    assert [p.number for p in manifest.parts] == list(range(len(manifest.parts)))
    archived = archived_rows(repo, manifest, tmp_path)
    assert len(archived) == len(before)  # count: nothing archived twice, nothing lost
    assert sorted(archived) == before  # content: every archived row is the row that was expired
    stored = {o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="pgw/")["Contents"]}
    assert stored == {f"pgw/{p.key}" for p in manifest.parts} | {f"pgw/{summary.manifest_key}"}
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM public.sessions WHERE expires_at < %s", (END,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM public.sessions").fetchone()[0] == 500


@pytest.mark.integration
def test_kill_between_upload_and_delete_deletes_once_on_the_rerun(pg, s3, tmp_path) -> None:
    from tests.harness.engine_child import kill_group, wait_for_line

    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        fill_sessions(conn, 12000, 500)
        before = sessions_snapshot(conn)
    # The application holds row locks the delete needs: the child uploads and verifies part 0,
    # records it, and then waits on the locks (lock timeouts, retries), where it is killed.
    with connect(pg.target(), autocommit=False) as app:
        app.execute("SELECT id FROM public.sessions WHERE id <= 10 FOR UPDATE")
        child = spawn_archive(pg, s3, tmp_path)
        try:
            wait_for_line(child, "uploading part 0", timeout=120)
            key = f"{DB}/archive/public.sessions/20261130T190000Z/manifest.json"
            for _ in range(600):
                if repo.exists(key) and ArchiveManifest.model_validate_json(repo.get_bytes(key)).parts:
                    break
                clock.sleep(0.1)
            parts = ArchiveManifest.model_validate_json(repo.get_bytes(key)).parts
            assert [(p.number, p.state) for p in parts] == [(0, "uploaded")]
        finally:
            kill_group(child)
        app.rollback()
    with connect(pg.target()) as conn:
        assert sessions_snapshot(conn) == before  # nothing was deleted before the kill
    assert_converged(pg, repo, tmp_path, before, s3)


@pytest.mark.integration
def test_kill_mid_upload_rewrites_the_same_part_on_the_rerun(pg, s3, tmp_path) -> None:
    from tests.harness.engine_child import kill_group, wait_for_line
    from tests.harness.tcp_relay import TcpRelay

    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        fill_sessions(conn, 12000, 500)
        before = sessions_snapshot(conn)
    relay = TcpRelay(target_port=s3.port)
    relay.start()
    try:
        child = spawn_archive(pg, s3, tmp_path, endpoint_url=relay.url)
        try:
            wait_for_line(child, "uploading part 1", timeout=120)
            # Freeze the endpoint: the upload in flight hangs, and the worker dies in it.
            os.kill(relay.process.pid, signal.SIGSTOP)
            clock.sleep(0.5)
        finally:
            kill_group(child)
            os.kill(relay.process.pid, signal.SIGCONT)
    finally:
        relay.stop()
    key = f"{DB}/archive/public.sessions/20261130T190000Z/manifest.json"
    parts = ArchiveManifest.model_validate_json(repo.get_bytes(key)).parts
    assert [(p.number, p.state) for p in parts] == [(0, "deleted")]
    with connect(pg.target()) as conn:
        left = conn.execute("SELECT count(*) FROM public.sessions WHERE expires_at < %s", (END,)).fetchone()[0]
    assert left == len(before) - parts[0].rows_deleted
    assert_converged(pg, repo, tmp_path, before, s3)


@pytest.mark.integration
def test_cli_archive_restore_brings_rows_back_into_an_audit_table(pg, s3, tmp_path) -> None:
    from tests.harness.airflow_conns import postgres_conn

    repo = s3_repo(s3)
    with connect(pg.target()) as conn:
        fill_all_types(conn, n_expired=400, n_live=10)
        before = conn.execute("SELECT e::text FROM public.events e WHERE id <= 400 ORDER BY id").fetchall()
        conn.execute('CREATE SCHEMA "Audit Trail"')
        conn.execute('CREATE TABLE "Audit Trail".events (LIKE public.events)')
    archive_then_delete(pg.target(), repo, request(policy("old_events", "public.events", "expires_at")),
                        workdir=tmp_path / "w")

    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text(f"databases:\n  {DB}:\n    conn_id: pg_lcarch\n"
                   f"    repository: {{url: 's3://{BUCKET}/pgw', conn_id: lcarch_s3}}\n")
    env = {**os.environ, "AIRFLOW_CONN_LCARCH_S3": s3.airflow_conn_uri(), "AIRFLOW_CONN_PG_LCARCH": postgres_conn(pg),
           "PGWARDEN_WORK_DIR": str(tmp_path / "work")}
    pgwarden = str(Path(sys.executable).with_name("pgwarden"))
    run = subprocess.run([pgwarden, "--config", str(cfg), "archive", "restore", DB, "public.events",
                          "--interval", "20261130T190000Z", "--into", '"Audit Trail".events'],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"rows": 400}
    with connect(pg.target()) as conn:
        after = conn.execute('SELECT e::text FROM "Audit Trail".events e ORDER BY id').fetchall()
    assert after == before  # every column of every row, as PostgreSQL prints it

    missing = subprocess.run([pgwarden, "--config", str(cfg), "archive", "restore", DB, "public.events",
                              "--interval", "20250101T000000Z"], env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "no archive of public.events for interval 20250101T000000Z" in missing.stderr
