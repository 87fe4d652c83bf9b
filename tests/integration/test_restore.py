"""Restore and PITR from a real repository, and every way a restore can be asked for wrongly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pgwarden.core import layout
from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.retention import RetentionPolicy
from pgwarden.core.units import format_duration
from pgwarden.core.walnames import segment_name, segment_start
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.cluster import free_port
from pgwarden.engine.drill import clean_stale_scratch
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.prune import prune
from pgwarden.engine.repository import ChecksumMismatch, open_repository
from pgwarden.engine.restore import list_restore_points, remove_restore, restore, restored_server
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import scratch_base
from tests.harness.workload import add_items, count_items, create_items


@pytest.fixture
def history(pg, tmp_path):
    """A backup of 1000 rows, then 'rp_1500' after 500 more, then 'rp_1700' after 200 more."""
    root = tmp_path / "repo"
    root.mkdir()
    config = RepositoryConfig(url=f"file://{root}")
    repo = open_repository(config)
    create_items(pg, 1000)
    manifest = take_full_backup(pg.target(), repo, "db", BackupConfig(count_rows=["public.items"]), config,
                                workdir=tmp_path / "w0")
    for name, rows in (("rp_1500", 500), ("rp_1700", 200)):
        add_items(pg, rows)
        collect_wal(pg.target(), repo, "db", slot="pgwarden_db", workdir=tmp_path / name, compression="zstd",
                    restore_point=name, warn_bytes=2**30)
    base = scratch_base()
    yield repo, root, manifest, base
    # Every server a test started under base, at whatever depth it restored to.
    for pid_file in [*base.glob("*/postmaster.pid"), *base.glob("*/*/postmaster.pid"),
                     *base.glob("*/*/*/postmaster.pid")]:
        remove_restore(pid_file.parent)
    import shutil

    shutil.rmtree(base, ignore_errors=True)


def restored_count(result) -> int:
    return count_items(restored_server(Path(result.datadir), result.port))


@pytest.mark.integration
def test_pitr_to_a_named_restore_point_has_exactly_the_rows_before_it(history) -> None:
    repo, _, manifest, base = history
    result = restore(repo, "db", base / "a", RecoveryTarget("name", name="rp_1500"), start=True)
    assert result.backup_id == manifest.backup_id
    assert restored_count(result) == 1500
    assert not result.in_recovery and result.timeline == 2
    assert set(result.steps) == {"plan", "fetch_and_unpack", "fetch_wal", "replay"}
    # The restored server must never archive anywhere.
    with open(Path(result.datadir) / "postgresql.auto.conf") as conf:
        assert "archive_mode = 'off'" in conf.read()


@pytest.mark.integration
def test_pitr_to_lsn_time_and_latest(history) -> None:
    repo, _, _, base = history
    points = {p.name: p for p in list_restore_points(repo, "db")}
    by_lsn = restore(repo, "db", base / "l", RecoveryTarget("lsn", lsn=points["rp_1500"].lsn), start=True)
    assert restored_count(by_lsn) == 1500
    latest = restore(repo, "db", base / "n", RecoveryTarget("latest"), start=True)
    assert restored_count(latest) == 1700
    paused = restore(repo, "db", base / "t", RecoveryTarget("time", time=points["rp_1700"].created_at),
                     start=True, action="pause")
    assert paused.in_recovery and restored_count(paused) == 1700


@pytest.mark.integration
def test_target_before_the_oldest_backup(history) -> None:
    repo, _, manifest, base = history
    with pytest.raises(PermanentError, match=f"before the oldest backup {manifest.backup_id}"):
        restore(repo, "db", base / "x", RecoveryTarget("time", time=manifest.started_at - timedelta(hours=1)))


@pytest.mark.integration
def test_target_beyond_the_newest_wal_names_the_newest_reachable_point(history) -> None:
    repo, _, _, base = history
    points = list_restore_points(repo, "db")
    with pytest.raises(PermanentError, match="beyond the newest WAL.*newest reachable point.*'rp_1700'"):
        restore(repo, "db", base / "x", RecoveryTarget("time", time=points[-1].created_at + timedelta(hours=1)))
    with pytest.raises(PermanentError, match="no restore point named 'nope'.*rp_1700"):
        restore(repo, "db", base / "x", RecoveryTarget("name", name="nope"))


@pytest.mark.integration
def test_missing_wal_segment_is_named(history) -> None:
    repo, root, _, base = history
    segments = sorted(p for p in (root / "db" / "wal").glob("*.zst"))
    victim = segments[len(segments) // 2]
    victim.unlink()
    with pytest.raises(PermanentError) as info:
        restore(repo, "db", base / "x", RecoveryTarget("latest"))
    assert victim.name.removesuffix(".zst") in str(info.value)
    assert "the WAL replays without a gap up to" in str(info.value)


@pytest.mark.integration
def test_after_a_wal_gap_the_advised_point_is_before_it_and_restores(history, pg, tmp_path) -> None:
    """The advice after a gap names the newest restore point *before* the gap, and following it works."""
    repo, root, manifest, base = history
    add_items(pg, 200)  # WAL after the gap: rp_1900
    collect_wal(pg.target(), repo, "db", slot="pgwarden_db", workdir=tmp_path / "rp_1900", compression="zstd",
                restore_point="rp_1900", warn_bytes=2**30)
    points = {p.name: p for p in list_restore_points(repo, "db")}
    victim = segment_name(manifest.timeline, points["rp_1700"].lsn)  # rp_1500 is in an earlier segment
    assert segment_name(manifest.timeline, points["rp_1500"].lsn) < victim
    assert segment_name(manifest.timeline, points["rp_1900"].lsn) > victim
    (root / "db" / "wal" / f"{victim}.zst").unlink()

    for target in (RecoveryTarget("latest"), RecoveryTarget("name", name="rp_1700"),
                   RecoveryTarget("name", name="rp_1900"), RecoveryTarget("time", time=points["rp_1900"].created_at)):
        with pytest.raises(PermanentError) as info:
            restore(repo, "db", base / "x", target)
        message = str(info.value)
        assert f"{victim} missing" in message, message
        assert f"without a gap up to {segment_start(points['rp_1700'].lsn)}" in message
        assert "the newest reachable point is restore point 'rp_1500'" in message
        assert "'rp_1700'" not in message.split("newest reachable")[1]

    chain = read_catalog(repo, "db").check_chain()  # what the check_chain task logs
    assert not chain.ok and chain.reachable_point.name == "rp_1500" and "'rp_1500'" in chain.message

    advised = re.search(r"--target-name ([^\s;]+)", message).group(1)
    result = restore(repo, "db", base / "a", RecoveryTarget("name", name=advised), start=True)
    assert restored_count(result) == 1500
    by_time = restore(repo, "db", base / "t", RecoveryTarget("time", time=points["rp_1500"].created_at),
                      start=True)
    assert restored_count(by_time) == 1500


@pytest.mark.integration
def test_more_full_backups_on_one_day_leave_no_hole_in_the_pitr_window(history, pg, tmp_path) -> None:
    """A second and third full backup on the same day, then retention: every restore point between
    them still restores, and the log says in plain words why the middle backup goes."""
    repo, _, first, base = history  # first backup (1000 rows), rp_1500, rp_1700
    config = RepositoryConfig(url=repo.url)
    second = take_full_backup(pg.target(), repo, "db", BackupConfig(), config, workdir=tmp_path / "b2")
    add_items(pg, 100)
    collect_wal(pg.target(), repo, "db", slot="pgwarden_db", workdir=tmp_path / "rp_1800", compression="zstd",
                restore_point="rp_1800", warn_bytes=2**30)
    third = take_full_backup(pg.target(), repo, "db", BackupConfig(), config, workdir=tmp_path / "b3")
    add_items(pg, 100)
    collect_wal(pg.target(), repo, "db", slot="pgwarden_db", workdir=tmp_path / "rp_1900", compression="zstd",
                restore_point="rp_1900", warn_bytes=2**30)

    said: list[str] = []
    result = prune(repo, "db", RetentionPolicy(), log=said.append)

    assert result.deleted_backups == (second.backup_id,)
    reason = f"a newer backup of the same day ({third.backup_id}) is the daily one"
    assert any(line.startswith(f"deleting backup db/{second.backup_id}: {reason}") for line in said), said
    assert reason in result.summary()
    assert result.kept[first.backup_id] == ["window_start"]
    assert result.deleted_restore_points == ()
    names = {p.name for p in list_restore_points(repo, "db")}
    assert {"rp_1500", "rp_1700", "rp_1800", "rp_1900"} <= names
    assert restored_count(restore(repo, "db", base / "a", RecoveryTarget("name", name="rp_1500"), start=True)) == 1500
    assert restored_count(restore(repo, "db", base / "b", RecoveryTarget("name", name="rp_1800"), start=True)) == 1800


@pytest.mark.integration
def test_corrupt_object_is_named(history) -> None:
    repo, root, manifest, base = history
    tar = root / "db" / "base" / manifest.backup_id / "base.tar.zst"
    data = bytearray(tar.read_bytes())
    data[1000] ^= 0xFF
    tar.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=f"db/base/{manifest.backup_id}/base.tar.zst"):
        restore(repo, "db", base / "x", RecoveryTarget("latest"))


@pytest.mark.integration
def test_destination_not_empty_and_port_busy(history) -> None:
    repo, _, _, base = history
    busy = base / "busy"
    busy.mkdir()
    (busy / "something").write_text("keep me")
    with pytest.raises(PermanentError, match="is not empty"):
        restore(repo, "db", busy, RecoveryTarget("latest"))
    assert (busy / "something").read_text() == "keep me"
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PermanentError, match=f"port {port} is busy"):
            restore(repo, "db", base / "p", RecoveryTarget("latest"), port=port, start=True)


@pytest.mark.integration
def test_kill_9_mid_restore_then_stale_scratch_is_removed(history) -> None:
    """A restore killed while its server replays leaves a running postgres; the next setup stops it."""
    repo, root, _, base = history
    drills = base / "drills"
    scratch = drills / "drill-20260101T000000Z" / "newest"  # the DAG's layout: <drill dir>/<kind>/data
    scratch.mkdir(parents=True)
    script = (
        "import sys; from pathlib import Path\n"
        "from pgwarden.core.config import RepositoryConfig\n"
        "from pgwarden.core.recovery import RecoveryTarget\n"
        "from pgwarden.engine.repository import open_repository\n"
        "from pgwarden.engine.restore import restore\n"
        f"repo = open_repository(RepositoryConfig(url='file://{root}'))\n"
        f"restore(repo, 'db', Path('{scratch}/data'), RecoveryTarget('latest'), start=True, port={free_port()})\n"
        "import time; time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not (scratch / "data" / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert (scratch / "data" / "postmaster.pid").exists()  # the orphaned server is still up

    assert clean_stale_scratch(drills, print) == 1
    assert not scratch.parent.exists()
    leftover = subprocess.run(["pgrep", "-f", str(scratch)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


@pytest.mark.integration
def test_restore_command_fetches_only_from_its_own_wal_directory(history) -> None:
    repo, _, _, base = history
    result = restore(repo, "db", base / "c", RecoveryTarget("latest"))
    conf = (Path(result.datadir) / "postgresql.auto.conf").read_text()
    assert f"restore_command = 'cp ''{base}/c.wal/%f'' ''%p'''" in conf
    assert layout.wal_prefix("db") not in conf  # no repository access (or credentials) during replay


@pytest.mark.integration
def test_disk_full_during_restore_is_clear_and_leaves_nothing(history) -> None:
    repo, _, _, base = history
    tiny = base / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(tiny)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(PermanentError, match="No space left on device") as info:
            restore(repo, "db", tiny / "data", RecoveryTarget("latest"))
        message = str(info.value)
        assert "the partial restore was removed" in message and "free space or choose another destination" in message
        assert sorted(p.name for p in tiny.iterdir()) == []  # no data dir, .wal, or .download left
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def drill_config(**verify):
    from pgwarden.core.config import DatabaseConfig

    return DatabaseConfig.model_validate({
        "conn_id": "unused", "repository": {"url": "file:///unused"},
        "backup": {"count_rows": ["public.items"], "incremental_schedule": "*/5 * * * *"},
        "verify": {"rpo_target": "1h", **verify},
    })


@pytest.mark.integration
def test_drill_checks_smoke_queries_and_targets(history, tmp_path) -> None:
    from pgwarden.engine.drill import run_drill

    repo, _, manifest, base = history
    smoke = tmp_path / "verify"
    smoke.mkdir()
    (smoke / "all_items_back.sql").write_text("SELECT count(*) = 1700 FROM items")
    (smoke / "impossible.sql").write_text("SELECT count(*) = 0 FROM items")
    scratch = base / "drill-a"
    scratch.mkdir()
    lines: list[str] = []
    evidence = run_drill(repo, "db", drill_config(rto_target="0s"), scratch=scratch, dbname="postgres",
                         smoke_dir=smoke, log=lines.append)
    checks = {c.name: c for c in evidence.checks}
    assert checks["row_counts"].ok and checks["pg_verifybackup"].ok and checks["amcheck"].ok
    assert checks["smoke:all_items_back"].ok and not checks["smoke:impossible"].ok
    assert not checks["rto"].ok and "target 0:00:00" in checks["rto"].detail
    assert not evidence.passed and evidence.target == "restore point 'rp_1700'"
    assert json.loads(repo.get_bytes(f"db/drills/{evidence.drill_id}.json"))["checks"]
    assert not (scratch / "data").exists()  # the drill removes its server and data
    # The summary line names each failed check with its measured value, and the measured RTO/RPO.
    [summary] = [line for line in lines if line.startswith(f"drill {evidence.drill_id} FAILED: ")]
    assert f"rto: {checks['rto'].detail}" in summary and "smoke:impossible: returned False" in summary
    assert "smoke:all_items_back" not in summary
    assert f"RTO {format_duration(evidence.rto_seconds)} (target 0.0s, MISSED)" in summary
    assert f"RPO {format_duration(evidence.rpo_seconds)} (target " in summary


@pytest.mark.integration
def test_old_backup_drill_restores_it_to_its_own_end(history, tmp_path) -> None:
    from pgwarden.engine.drill import run_drill

    repo, _, first, base = history
    scratch = base / "drill-old"
    scratch.mkdir()
    evidence = run_drill(repo, "db", drill_config(), scratch=scratch, dbname="postgres", kind="old",
                         backup_id=first.backup_id)
    assert evidence.passed, evidence.failures()
    assert evidence.backup_id == first.backup_id and evidence.target == "the end of the backup"
    assert {c.name for c in evidence.checks} >= {"pg_verifybackup", "amcheck"}


@pytest.mark.integration
def test_restore_killed_midway_then_run_again_converges(history) -> None:
    """kill -9 at an arbitrary moment, run the same restore again: it starts over and succeeds."""
    repo, root, _, base = history
    dest = base / "again" / "data"
    script = (
        "from pathlib import Path\n"
        "from pgwarden.core.config import RepositoryConfig\n"
        "from pgwarden.core.recovery import RecoveryTarget\n"
        "from pgwarden.engine.repository import open_repository\n"
        "from pgwarden.engine.restore import restore\n"
        f"repo = open_repository(RepositoryConfig(url='file://{root}'))\n"
        f"restore(repo, 'db', Path('{dest}'), RecoveryTarget('name', name='rp_1500'), start=True)\n"
        "import time; time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not (dest / "PG_VERSION").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # kill as soon as the unpack has begun
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert dest.exists() and any(dest.iterdir())

    result = restore(repo, "db", dest, RecoveryTarget("name", name="rp_1500"), start=True)
    assert restored_count(result) == 1500

    foreign = base / "foreign"
    foreign.mkdir()
    (foreign / "PG_VERSION").write_text("15\n")  # somebody else's directory: never touched
    with pytest.raises(PermanentError, match="is not empty"):
        restore(repo, "db", foreign, RecoveryTarget("latest"))
    assert (foreign / "PG_VERSION").read_text() == "15\n"
