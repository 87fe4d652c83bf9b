"""Restores of a source whose pg_hba.conf wants a password for every login (production's usual setup).

The restored data directory carries that pg_hba.conf. pgwarden must still reach the servers it starts
(through its own socket and hba file), leave that file as it was, keep drill servers off the network,
give instructions that work as they are printed, and write nothing outside the destination.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgwarden.core.config import BackupConfig, DatabaseConfig, RepositoryConfig, VerifyConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.drill import run_drill
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.postgres import PgTarget
from pgwarden.engine.repository import open_repository
from pgwarden.engine.restore import remove_restore, restored_server, wait_for_target
from pgwarden.engine.wal import collect_wal
from tests.harness.password_only import PASSWORD, SCRAM_ONLY_HBA, require_passwords
from tests.harness.postgres import scratch_base
from tests.harness.workload import add_items, count_items, create_items


@pytest.fixture
def password_only(pg, tmp_path):
    """A scram-only source with a backup of 1000 rows and restore point 'rp_1500' after 500 more."""
    root = tmp_path / "repo"
    root.mkdir()
    config = RepositoryConfig(url=f"file://{root}")
    repo = open_repository(config)
    create_items(pg, 1000)
    source = require_passwords(pg)
    take_full_backup(source, repo, "db", BackupConfig(count_rows=["public.items"]), config, workdir=tmp_path / "w0")
    add_items(source, 500)
    collect_wal(source, repo, "db", slot="pgwarden_db", workdir=tmp_path / "w1", compression="zstd",
                restore_point="rp_1500", warn_bytes=2**30)
    base = scratch_base()
    yield repo, root, pg, base
    for pid_file in [*base.glob("*/postmaster.pid"), *base.glob("*/*/postmaster.pid"),
                     *base.glob("*/*/*/postmaster.pid")]:
        remove_restore(pid_file.parent)
    shutil.rmtree(base, ignore_errors=True)


def tcp_login(port: int, password: str | None) -> PgTarget:
    return PgTarget(host="127.0.0.1", port=port, user="postgres", password=password, connect_timeout=5)


@pytest.mark.integration
def test_cli_restore_of_a_password_only_source_starts_and_can_be_stopped_as_told(password_only) -> None:
    _, root, _, base = password_only
    cfg = base / "pgwarden.yaml"
    cfg.write_text(f"databases:\n  db:\n    conn_id: pg_db\n    repository: {{url: 'file://{root}'}}\n")
    dest = base / "restores" / "db"
    pgwarden = str(Path(sys.executable).with_name("pgwarden"))
    # Before the fix this waited (silently) for the password it was never going to get.
    run = subprocess.run([pgwarden, "--config", str(cfg), "restore", "db", "--to", str(dest), "--target-name",
                          "rp_1500", "--start"], env=os.environ, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["started"] and result["in_recovery"] is False

    # The data directory's own pg_hba.conf is the source's, untouched: it is what TCP clients get.
    assert (dest / "pg_hba.conf").read_text().split("\n")[:4] == list(SCRAM_ONLY_HBA)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(**tcp_login(result["port"], None).conninfo_params()).close()
    assert count_items(tcp_login(result["port"], PASSWORD)) == 1500
    assert count_items(restored_server(dest, result["port"])) == 1500  # pgwarden's own way in

    # Log, socket and hba file live inside the destination; beside it only the documented DIR.wal/.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["db", "db.wal"]
    assert (dest / "pgwarden" / f"postgres-{result['port']}.log").stat().st_size > 0

    # The printed stop command works for whoever runs pgwarden (root included, via runuser).
    [stop] = [line.removeprefix("Stop it with: ") for line in run.stderr.splitlines()
              if line.startswith("Stop it with: ")]
    assert "pg_ctl" in stop and str(dest) in stop
    subprocess.run(shlex.split(stop), check=True, capture_output=True, timeout=120)
    assert not LocalCluster(datadir=dest, port=result["port"]).is_running()


@pytest.mark.integration
def test_an_answer_other_than_starting_up_fails_at_once_with_the_servers_words(password_only) -> None:
    _, _, source, _ = password_only
    # The source itself is up and wants a password even on its socket: nothing to wait for.
    with pytest.raises(PermanentError, match="no password supplied"):
        wait_for_target(LocalCluster(datadir=source.datadir, port=source.port), "promote", timeout=120)


@pytest.mark.integration
def test_drill_of_a_password_only_source_passes_off_the_network(password_only, tmp_path) -> None:
    repo, root, _, base = password_only
    smoke = tmp_path / "smoke"
    smoke.mkdir()
    # Run inside the drill's own server: it has no TCP listener at all.
    (smoke / "no_tcp.sql").write_text("SELECT current_setting('listen_addresses') = ''")
    db_config = DatabaseConfig(conn_id="pg_db", repository=RepositoryConfig(url=f"file://{root}"),
                               backup=BackupConfig(count_rows=["public.items"]),
                               verify=VerifyConfig(rto_target="1h", rpo_target="1h", old_backup_every=0))
    scratch = base / "drill"
    scratch.mkdir()
    evidence = run_drill(repo, "db", db_config, scratch=scratch, dbname="postgres", smoke_dir=smoke)
    assert evidence.error is None and evidence.passed, evidence.failures()
    assert {c.name: c.ok for c in evidence.checks} == {
        "pg_verifybackup": True, "row_counts": True, "amcheck": True, "smoke:no_tcp": True, "rto": True,
        "rpo": True}
    assert list(scratch.iterdir()) == []  # the drill removed its server and everything beside it
