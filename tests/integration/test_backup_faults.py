"""Backups under faults (issue 3, "Bad input and faults"): one test per fault, all parts real.

Real PostgreSQL servers, the real S3 endpoint (moto's server) reached through pgwarden's own
client code (as production reaches it: an Airflow AWS connection resolved by pgwarden's hooks, in
the killed children too), real child processes killed with SIGKILL. Nothing is mocked. What each test proves:

- a backup killed mid-upload leaves no ``pgwarden.json`` (so no backup), the next one succeeds,
  retention removes the orphan;
- an S3 endpoint that goes away mid-upload gives a ``TransientError`` naming endpoint and key after
  botocore's retries, and nothing counts as a backup;
- a WAL collection killed mid-run, or cut by a server restart, converges on the next run: every
  segment from the guard slot's old position to the new end is in the repository, the slot moved;
- a dropped or invalidated slot, a role without REPLICATION and a missing pg_hba replication line
  fail with a ``PermanentError`` that says what to do;
- a WAL segment deleted from the repository breaks the chain check, which names it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pgwarden.airflow import hooks
from pgwarden.core import layout
from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.core.lsn import Lsn
from pgwarden.core.walnames import is_segment_name, segments_between
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.errors import PermanentError, TransientError
from pgwarden.engine.postgres import connect
from pgwarden.engine.prune import prune
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from pgwarden.engine.wal import WalCollection, collect_wal, ensure_slot
from tests.harness.airflow_conns import aws_conn_env
from tests.harness.bulk import emit_wal, fill_table, slot_restart_lsn
from tests.harness.engine_child import child_env, kill_group, spawn, wait_for_line
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.tcp_relay import TcpRelay

DB = "appdb"
SLOT = f"pgwarden_{DB}"
BUCKET = "pgwarden-faults"
S3_CONN = "pgw_faults_s3"

pytestmark = pytest.mark.integration


def s3_repository(s3, monkeypatch):
    """The repository as production opens it: the AWS connection ``S3_CONN`` through the hooks."""
    s3.client().create_bucket(Bucket=BUCKET)
    for name, value in aws_conn_env(S3_CONN, s3).items():
        monkeypatch.setenv(name, value)
    config = RepositoryConfig(url=f"s3://{BUCKET}/prod", conn_id=S3_CONN)
    return config, hooks.open_repository(config)


def s3_child_env(s3) -> dict[str, str]:
    """A killed child's connection to ``s3``: the same AWS connection, resolved by its own hooks."""
    return {**aws_conn_env(S3_CONN, s3), "PGWARDEN_CHILD_REPO_CONN_ID": S3_CONN}


def backup_objects(repo, backup_id: str) -> set[str]:
    prefix = layout.backup_prefix(DB, backup_id)
    return {info.key[len(prefix):] for info in repo.list(prefix)}


def multipart_upload_started(s3) -> bool:
    """Asked of moto directly: has a multipart upload (the base tar's) begun?"""
    return bool(s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads"))


def gave_up_after(caplog) -> set[int]:
    """The attempt counts at which botocore's retry handler gave up on a request (logged at DEBUG)."""
    return {int(m.group(1)) for r in caplog.records if (m := re.fullmatch(r"Max attempts of (\d+) reached\.",
                                                                          r.getMessage()))}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stored_segments(repo) -> set[str]:
    """Names of the WAL segments in the repository, as the test reads them from its listing."""
    names = (layout.wal_file_name(info.key) for info in repo.list(layout.wal_prefix(DB)))
    return {name for name in names if is_segment_name(name)}


def collect(pg, repo, workdir: Path, restore_point: str) -> WalCollection:
    return collect_wal(pg.target(), repo, DB, slot=SLOT, workdir=workdir, compression="zstd",
                       restore_point=restore_point, warn_bytes=2**40)


def assert_wal_converged(pg, repo, guard_before: Lsn, result: WalCollection) -> None:
    """Every segment from the guard's old position to the run's end is stored; the guard moved there."""
    with connect(pg.target()) as conn:
        seg_size = int(conn.execute("SELECT pg_size_bytes(current_setting('wal_segment_size'))").fetchone()[0])
    end = Lsn.parse(result.end_lsn)
    needed = segments_between(result.timeline, guard_before, end, seg_size)
    stored = stored_segments(repo)
    assert len(needed) > 3
    assert [name for name in needed if name not in stored] == []
    restart, status = slot_restart_lsn(pg, SLOT)
    assert restart == end and status in ("reserved", "extended")


# -- full backups ---------------------------------------------------------------------------------


def test_kill_9_mid_upload_leaves_an_orphan_that_is_never_a_backup(pg, s3, tmp_path, monkeypatch) -> None:
    repo_config, repo = s3_repository(s3, monkeypatch)
    fill_table(pg, 150)

    child = spawn(child_env(pg.target(), repo_config.url, DB, tmp_path / "killed", "full", s3_child_env(s3)))
    try:
        lines = wait_for_line(child, "uploaded backup_manifest", timeout=120)
        wait_until(lambda: multipart_upload_started(s3), timeout=60, what="the base tar's upload")
        assert child.poll() is None, "the backup finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        kill_group(child)
    killed_id = next(m.group(1) for line in lines if (m := re.search(r"backup (\w+): pg_basebackup", line)))

    left = backup_objects(repo, killed_id)
    assert "backup_manifest" in left and layout.MANIFEST_NAME not in left
    catalog = read_catalog(repo, DB)
    assert catalog.backups == () and [o.backup_id for o in catalog.orphans] == [killed_id]

    manifest = take_full_backup(pg.target(), repo, DB, BackupConfig(), repo_config, workdir=tmp_path / "next")
    assert manifest.backup_id != killed_id
    assert layout.MANIFEST_NAME in backup_objects(repo, manifest.backup_id)

    young = prune(repo, DB, dry_run=True)  # default orphan age (a day): might still be running
    assert killed_id in young.young_orphans and young.deleted_orphans == ()
    result = prune(repo, DB, orphan_age=timedelta(0), now=datetime.now(timezone.utc) + timedelta(seconds=2))
    assert result.deleted_orphans == (killed_id,) and result.deleted_backups == ()
    assert backup_objects(repo, killed_id) == set()
    catalog = read_catalog(repo, DB)
    assert [b.id for b in catalog.valid_backups] == [manifest.backup_id] and catalog.orphans == ()


def test_s3_endpoint_down_mid_upload_fails_transient_and_counts_nothing(pg, s3, tmp_path, caplog) -> None:
    # A relay in front of moto is the endpoint: killing it cuts every connection and refuses new
    # ones, while moto keeps what was stored so the test can look at what the outage left behind.
    relay = TcpRelay(target_port=s3.port)
    relay.start()
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        repo_config = RepositoryConfig(url=f"s3://{BUCKET}/prod", conn_id="aws")
        repo = open_repository(repo_config, S3Settings(
            endpoint_url=relay.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, max_attempts=2, connect_timeout=1, read_timeout=5))
        fill_table(pg, 150)
        caplog.set_level(logging.DEBUG, logger="botocore.retries.standard")

        lines: list[str] = []
        uploading = threading.Event()
        outcome: dict[str, object] = {}

        def log(message: str) -> None:
            lines.append(message)
            if message.startswith("uploaded backup_manifest"):
                uploading.set()

        def run() -> None:
            try:
                outcome["manifest"] = take_full_backup(pg.target(), repo, DB, BackupConfig(), repo_config,
                                                       workdir=tmp_path / "w", log=log)
            except BaseException as exc:  # handed to the test thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="backup-under-outage")
        worker.start()
        assert uploading.wait(timeout=120), f"uploads never began: {lines}"
        wait_until(lambda: multipart_upload_started(s3), timeout=60, what="the base tar's upload")
        relay.stop()
        worker.join(timeout=120)
        assert not worker.is_alive()
    finally:
        relay.stop()

    error = outcome.get("error")
    assert isinstance(error, TransientError), f"expected TransientError, got {outcome!r}"
    backup_id = next(m.group(1) for line in lines if (m := re.search(r"backup (\w+): pg_basebackup", line)))
    message = str(error)
    assert relay.url in message, message
    assert f"s3://{BUCKET}/prod/{DB}/base/{backup_id}/base.tar" in message, message
    assert "after 2 attempts" in message and "check that the endpoint is up" in message, message
    assert ACCESS_KEY not in message and SECRET_KEY not in message
    # It gave up because the configured attempts (2) ran out, not on a timeout or a longer default.
    assert gave_up_after(caplog) == {2}

    # The endpoint is back: the outage left at most an orphan, never a backup.
    relay.start()
    try:
        left = backup_objects(repo, backup_id)
        assert layout.MANIFEST_NAME not in left and "backup_manifest" in left
        assert not repo.exists(layout.manifest_key(DB, backup_id))
        catalog = read_catalog(repo, DB)
        assert catalog.backups == () and [o.backup_id for o in catalog.orphans] == [backup_id]
    finally:
        relay.stop()


# -- WAL collection -------------------------------------------------------------------------------


def test_kill_9_mid_wal_collection_converges_on_the_next_run(pg, s3, tmp_path, monkeypatch) -> None:
    repo_config, repo = s3_repository(s3, monkeypatch)
    guard = ensure_slot(pg.target(), SLOT, DB, create=True).restart_lsn
    fill_table(pg, 120)  # ~8 segments of text that compress 2x: each upload takes a moment

    env = child_env(pg.target(), repo_config.url, DB, tmp_path / "killed", "wal", s3_child_env(s3),
                    restore_point="killed_run", compression="zstd")
    child = spawn(env)
    try:
        first = wait_until(lambda: stored_segments(repo), timeout=120, what="the first uploaded segment")
        assert child.poll() is None, "the collection finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        kill_group(child)
    assert first
    assert slot_restart_lsn(pg, SLOT)[0] == guard, "the guard moved although the run never finished"

    result = collect(pg, repo, tmp_path / "retry", "after_the_kill")
    assert result.segments_skipped >= len(first)  # what the killed run stored is not sent again
    assert_wal_converged(pg, repo, guard, result)


def test_concurrent_wal_collections_take_turns_and_both_succeed(pg, file_repo, tmp_path) -> None:
    # backup_incremental and a gated migration's safety net (or two safety nets) may collect at once.
    # Unserialized, a run that started first but finishes last moves the guard backwards, which the
    # server refuses ("cannot advance replication slot to ..., minimum is ..."). The first run is frozen
    # (SIGSTOP) after its first upload, so the second, started meanwhile, would finish first.
    repo_url = file_repo
    repo = open_repository(RepositoryConfig(url=repo_url))
    guard = ensure_slot(pg.target(), SLOT, DB, create=True).restart_lsn
    emit_wal(pg, 160)  # ~10 segments: each run streams and uploads for a while

    first = spawn(child_env(pg.target(), repo_url, DB, tmp_path / "first", "wal", restore_point="first",
                            compression="zstd"))
    outcome: dict[str, object] = {}
    try:
        wait_until(lambda: stored_segments(repo), timeout=120, what="the first run's first upload")
        os.killpg(first.pid, signal.SIGSTOP)
        emit_wal(pg, 16)  # the second run's end lies past the first's

        def second() -> None:
            try:
                outcome["second"] = collect(pg, repo, tmp_path / "second", "second")
            except BaseException as exc:  # handed to the test thread
                outcome["second"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        with connect(pg.target()) as conn:  # the second run waits for the lock, or (unserialized) finishes
            wait_until(lambda: "second" in outcome or conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0],
                timeout=120, what="the second run to finish or wait")
        os.killpg(first.pid, signal.SIGCONT)
        lines = wait_for_line(first, "CHILD DONE", timeout=180)
        assert first.wait(timeout=60) == 0, lines
        thread.join(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGCONT)
        kill_group(first)
    assert isinstance(outcome["second"], WalCollection), outcome
    assert_wal_converged(pg, repo, guard, outcome["second"])


def test_dropped_slot_says_to_take_a_full_backup(pg, file_repo, tmp_path) -> None:
    config = RepositoryConfig(url=file_repo)
    repo = open_repository(config)
    take_full_backup(pg.target(), repo, DB, BackupConfig(slot_name=SLOT), config, workdir=tmp_path / "full")
    with connect(pg.target()) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))

    with pytest.raises(PermanentError) as caught:
        collect(pg, repo, tmp_path / "w", "rp")
    message = str(caught.value)
    assert f"{SLOT!r} does not exist" in message and f"Trigger {DB}.backup_full" in message
    assert list(repo.list(layout.wal_prefix(DB))) == []  # nothing collected from a chain with a hole


def test_invalidated_slot_fails_with_instructions(pg_factory, file_repo, tmp_path) -> None:
    pg = pg_factory(settings={"max_slot_wal_keep_size": "1MB", "wal_keep_size": "0",
                              "max_wal_size": "32MB", "min_wal_size": "32MB"})
    ensure_slot(pg.target(), SLOT, DB, create=True)
    for _ in range(10):
        emit_wal(pg, 64)
        with connect(pg.target()) as conn:
            conn.execute("CHECKPOINT")
            conn.execute("CHECKPOINT")
        if slot_restart_lsn(pg, SLOT)[1] == "lost":
            break
    assert slot_restart_lsn(pg, SLOT) == (None, "lost")
    repo = open_repository(RepositoryConfig(url=file_repo))

    with pytest.raises(PermanentError) as caught:
        collect(pg, repo, tmp_path / "w", "rp")
    message = str(caught.value)
    assert "invalidated (wal_status = lost)" in message
    assert f"SELECT pg_drop_replication_slot('{SLOT}')" in message and f"{DB}.backup_full" in message
    assert not isinstance(caught.value, TransientError)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_restart_during_wal_streaming_converges_on_retry(pg, file_repo, tmp_path, mode) -> None:
    # A fast shutdown lets walsenders drain, so pg_receivewal usually reaches its end position and
    # the run succeeds (or its slot advance meets the restarting server: TransientError). An
    # immediate one cuts the stream: "pg_receivewal stopped before ...", a TransientError. Either
    # way the guard only moves once everything before it is stored, so the next run converges.
    repo = open_repository(RepositoryConfig(url=file_repo))
    guard = ensure_slot(pg.target(), SLOT, DB, create=True).restart_lsn
    emit_wal(pg, 480)  # ~30 segments for pg_receivewal to stream

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = collect(pg, repo, tmp_path / "cut", "cut_run")
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="wal-under-restart")
    worker.start()
    spool = tmp_path / "cut" / "wal"
    wait_until(lambda: spool.exists() and sum(is_segment_name(p.name) for p in spool.iterdir()) >= 2,
               timeout=120, what="pg_receivewal to write its first segments", interval=0.005)
    pg.stop(mode=mode)
    pg.start()
    worker.join(timeout=180)
    assert not worker.is_alive()

    error = outcome.get("error")
    assert error is None or isinstance(error, TransientError), f"expected success or TransientError: {error!r}"
    if error is not None:
        # It says what stopped: the stream (with the position it was to reach) or the connection to the server.
        message = str(error)
        assert message.startswith("pg_receivewal stopped before ") or pg.target().describe() in message, message
        assert slot_restart_lsn(pg, SLOT)[0] == guard, "the guard moved although the run failed"

    pg.wait_ready()
    result = collect(pg, repo, tmp_path / "retry", "after_the_restart")
    assert_wal_converged(pg, repo, guard, result)


# -- permissions ----------------------------------------------------------------------------------


def _assert_replication_refusal(error: PermanentError, fix: str) -> None:
    message = str(error)
    assert not isinstance(error, TransientError)
    assert fix in message and "healthcheck" in message, message
    assert "psycopg" not in message, message


def test_role_without_replication_is_refused_with_instructions(pg, file_repo, tmp_path) -> None:
    with connect(pg.target()) as conn:
        conn.execute("CREATE ROLE pgwarden_norepl LOGIN NOREPLICATION")
    repo_config = RepositoryConfig(url=file_repo)
    repo = open_repository(repo_config)
    target = pg.target(user="pgwarden_norepl")

    with pytest.raises(PermanentError) as caught:
        take_full_backup(target, repo, DB, BackupConfig(), repo_config, workdir=tmp_path / "w")
    _assert_replication_refusal(caught.value, "ALTER ROLE pgwarden_norepl WITH REPLICATION")
    assert list(repo.list()) == []


def test_no_pg_hba_replication_line_is_refused_with_instructions(pg_factory, file_repo, tmp_path) -> None:
    pg = pg_factory(hba=("local all all trust", "host all all 127.0.0.1/32 trust"))
    repo_config = RepositoryConfig(url=file_repo)
    repo = open_repository(repo_config)

    with pytest.raises(PermanentError) as caught:
        take_full_backup(pg.target(), repo, DB, BackupConfig(), repo_config, workdir=tmp_path / "w")
    _assert_replication_refusal(caught.value, "host replication postgres")

    ensure_slot(pg.target(), SLOT, DB, create=True)  # a slot made by hand: WAL collection is refused too
    with pytest.raises(PermanentError) as caught:
        collect(pg, repo, tmp_path / "w2", "rp")
    _assert_replication_refusal(caught.value, "host replication postgres")


# -- continuity -----------------------------------------------------------------------------------


def test_deleted_wal_segment_breaks_the_chain_check_naming_it(pg, file_repo, tmp_path) -> None:
    repo_config = RepositoryConfig(url=file_repo)
    repo = open_repository(repo_config)
    manifest = take_full_backup(pg.target(), repo, DB, BackupConfig(), repo_config, workdir=tmp_path / "w1")
    emit_wal(pg, 64)
    collect(pg, repo, tmp_path / "w2", "first")
    emit_wal(pg, 32)
    collect(pg, repo, tmp_path / "w3", "second")

    report = read_catalog(repo, DB).check_chain()
    assert report is not None and report.ok, report
    stored = sorted(stored_segments(repo))
    after_start = [name for name in stored
                   if name > segments_between(manifest.timeline, Lsn.parse(manifest.start_lsn),
                                              Lsn.parse(manifest.stop_lsn))[0]]
    victim = after_start[len(after_start) // 2]
    repo.delete([layout.wal_key(DB, victim, manifest.compression)])

    report = read_catalog(repo, DB).check_chain()
    assert report is not None and not report.ok
    assert report.missing == (victim,) and report.missing_count == 1
    assert victim in report.message and f"{DB}.backup_full" in report.message
