"""kill -9 in every mutating phase of a gated expand/contract migration, then the task again as a cleared task
runs it (same run id, next try): the end state is the one an uninterrupted run reaches.

Each phase runs in a child process (``tests/harness/gated_child.py``: what ``GatedPhaseOperator`` runs) and is
killed when the test SEES it inside its work: waiting for a lock or an old snapshot a test connection holds,
after it already did part of the phase (the first table's steps, some backfill batches, the restore point,
the full backup). The same phases run uninterrupted in a second database (the reference); afterwards the two
databases' ``pg_dump --schema-only`` and rows are equal, ``pgwarden.schema_history`` has one start for the
killed try and one start and end for the next, and no INVALID index or leftover trigger remains.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgwarden.engine.migrations import gated
from pgwarden.engine.migrations.history import RunInfo
from pgwarden.engine.pgtools import tool
from pgwarden.engine.postgres import connect
from tests.harness import gated_child
from tests.harness.engine_child import kill_group
from tests.harness.postgres import postgres_server

pytestmark = pytest.mark.integration

LABEL = "001_split"
MIGRATION = """operations:
  - rename_column: {table: public.accounts, from: email, to: email_address}
  - rename_column: {table: public.profiles, from: bio, to: about}
  - create_index: {table: public.profiles, name: profiles_handle_idx, columns: [handle]}
"""
SCHEMA = """
CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, nickname text);
INSERT INTO accounts SELECT g, 'u' || g || '@example.org', NULL FROM generate_series(1, 20000) g;
CREATE TABLE profiles (id bigint PRIMARY KEY, bio text, handle text);
INSERT INTO profiles SELECT g, 'bio ' || g, 'h' || g FROM generate_series(1, 2000) g;
"""
RUN_ID = "manual__faults"
ENDS = {"contract": "applied", "rollback": "rolled_back"}


@pytest.fixture(scope="module")
def server():
    # The servers' own setting as in production sessions: a dead client's backend ends within a second.
    with postgres_server() as pg:
        yield pg


class Phases:
    """One database going through the migration, phase by phase, in this process or in a killable child."""

    def __init__(self, server, dbname: str, folder, repo_url: str, workdir, safety_net: str) -> None:
        self.server, self.dbname, self.folder, self.repo_url, self.workdir = server, dbname, folder, repo_url, workdir
        self.safety_net = safety_net
        self.config = gated_child.database_config(repo_url, str(folder), safety_net)
        with connect(server.target()) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        with connect(self.target) as conn:
            conn.execute(SCHEMA)

    @property
    def target(self):
        return self.server.target(self.dbname)

    def run(self, phase: str, try_number: int = 1) -> dict:
        from pgwarden.engine.repository import open_repository

        run = RunInfo(dag_id=f"{self.dbname}.migrate.{LABEL}", run_id=RUN_ID, try_number=try_number)
        return gated.execute(self.target, lambda: open_repository(self.config.repository), self.dbname, self.config,
                             LABEL, phase, run, log=lambda _: None)

    def spawn(self, phase: str) -> subprocess.Popen:
        return gated_child.spawn(self.target, phase=phase, database=self.dbname, repo_url=self.repo_url,
                                 workdir=self.workdir, folder=self.folder, label=LABEL, run_id=RUN_ID, try_number=1,
                                 safety_net=self.safety_net)

    def scalar(self, query: str, params=None):
        with connect(self.target) as conn:
            return conn.execute(query, params).fetchone()[0]

    def dump(self, schemas: tuple[str, ...] = ("public", "pgwarden")) -> str:
        out = subprocess.run([tool("pg_dump"), "--schema-only", *(f"--schema={s}" for s in schemas), "-d", self.dbname],
                             env=self.target.tool_env(), capture_output=True, text=True, check=True).stdout
        return "\n".join(line for line in out.splitlines()
                         if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict")))

    def rows(self) -> tuple[str, str]:
        return (self.scalar("SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM accounts a"),
                self.scalar("SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM profiles p"))

    def history(self):
        with connect(self.target) as conn:
            return conn.execute("SELECT status, phase, finished_at IS NOT NULL, phases, restore_point, "
                                "(SELECT count(*) FROM pgwarden.schema_history_tables) FROM pgwarden.schema_history"
                                ).fetchone()


@pytest.fixture
def pair(server, tmp_path, request):
    """The database a child is killed in and the reference database, migration file and repository shared."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / f"{LABEL}.yaml").write_text(MIGRATION)
    (tmp_path / "repo").mkdir()
    safety_net = getattr(request, "param", "restore_point")
    name = request.node.name.split("[")[0].removeprefix("test_")[:20] + str(abs(hash(request.node.name)) % 1000)
    made = [Phases(server, f"{name}_{role}", folder, f"file://{tmp_path / 'repo'}", tmp_path / role, safety_net)
            for role in ("killed", "ref")]
    yield made
    with connect(server.target()) as conn:
        for phases in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{phases.dbname}" WITH (FORCE)')
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                         (phases.config.backup.slot_for(phases.dbname),))


def waiting(phases: Phases, wait_event: str, query_like: str, timeout: float = 60) -> int:
    """The pid of the database's backend that waits on ``wait_event`` running a statement like ``query_like``
    (observed, never assumed: the child is then really inside its phase)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(phases.server.target()) as conn:
            row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                               "AND wait_event = %s AND query ILIKE %s", (phases.dbname, wait_event, query_like)
                               ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"no backend of {phases.dbname} waited on {wait_event} running {query_like!r}")


def gone(phases: Phases, pid: int, timeout: float = 30) -> None:
    """Wait until the killed child's backend ended (the server notices the dead client within a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not phases.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)):
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} of the killed task is still there after {timeout}s")


@contextlib.contextmanager
def holding(phases: Phases, *statements: str, isolation: str = "READ COMMITTED") -> Iterator[psycopg.Connection]:
    """A test connection holding what ``statements`` took (locks, a snapshot) until the block ends."""
    conn = psycopg.connect(**phases.target.conninfo_params(), autocommit=True)
    try:
        conn.execute(f"BEGIN ISOLATION LEVEL {isolation}")
        for statement in statements:
            conn.execute(statement)
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def history_update_held(phases: Phases, condition: str) -> Iterator[None]:
    """Updates of ``pgwarden.schema_history`` where ``condition`` (on NEW/OLD) holds wait on an advisory lock
    the test holds: the phase stops right there, after everything it did before that update."""
    with connect(phases.target) as conn:
        conn.execute("CREATE SCHEMA faults")
        conn.execute(f"CREATE FUNCTION faults.hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF {condition} "
                     f"THEN PERFORM pg_advisory_xact_lock(4242); END IF; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER faults_hold BEFORE UPDATE ON pgwarden.schema_history FOR EACH ROW "
                     "EXECUTE FUNCTION faults.hold()")
    with holding(phases, "SELECT pg_advisory_lock(4242)"):
        yield
    with connect(phases.target) as conn:
        conn.execute("DROP SCHEMA faults CASCADE")


def kill_when(phases: Phases, phase: str, wait_event: str, query_like: str) -> None:
    child = phases.spawn(phase)
    try:
        pid = waiting(phases, wait_event, query_like)
    finally:
        kill_group(child)
    gone(phases, pid)


def events(phases: Phases, phase: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for event in phases.history()[3]:
        if event["phase"] == phase and event["run_id"] == RUN_ID:
            found.setdefault(event["try_number"], []).append(event["status"])
    return found


def assert_converged(killed: Phases, ref: Phases, phase: str, status: str, *, killed_in: str | None = None) -> None:
    assert killed.dump() == ref.dump()
    assert killed.rows() == ref.rows()
    assert killed.scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready") == 0
    row, ref_row = killed.history(), ref.history()
    assert row[:3] == (status, phase, True) == ref_row[:3]
    assert row[5] == ref_row[5] == (0 if status != "running" else 2)  # both tables claimed while active
    if (killed_in or phase) == phase:
        # The killed try started and never ended; the cleared try started and ended; nothing else.
        assert events(killed, phase) == {1: ["running"], 2: ["running", ENDS.get(phase, "running")]}
    failed = [e for e in row[3] if e["status"] == "failed"]
    assert not failed, failed


def test_kill_9_in_restore_point_after_the_point_was_made(pair) -> None:
    killed, ref = pair
    ref.run("restore_point")
    gated.guard(killed.target, killed.config.migrations, LABEL)  # what `plan` leaves: the history table
    with history_update_held(killed, "NEW.restore_point IS DISTINCT FROM OLD.restore_point"):
        kill_when(killed, "restore_point", "advisory", "UPDATE%schema_history%restore_point%")
        assert killed.history()[:3] == ("running", "restore_point", False)
    out = killed.run("restore_point", try_number=2)
    assert_converged(killed, ref, "restore_point", "running")
    from pgwarden.engine.catalog import read_restore_points
    from pgwarden.engine.repository import open_repository

    points, problems = read_restore_points(open_repository(killed.config.repository), killed.dbname)
    assert not problems and killed.history()[4] == out["restore_point"] in [p.name for p in points]
    assert len(points) == 2  # the killed try's point is in the repository too, harmless; the row names the new
    # Cleared again after expand ran: the point before expand stays the target, no point after it is made.
    killed.run("expand")
    again = killed.run("restore_point", try_number=3)
    assert again["kept"] and again["restore_point"] == out["restore_point"] == killed.history()[4]
    assert len(read_restore_points(open_repository(killed.config.repository), killed.dbname)[0]) == 2


def test_kill_9_in_expand_while_the_index_build_waits_leaves_no_invalid_index(pair) -> None:
    killed, ref = pair
    for phases in pair:
        phases.run("restore_point")
    ref.run("expand")
    # A transaction with a snapshot older than the index build: CREATE INDEX CONCURRENTLY waits for it with
    # its index already in the catalog, INVALID; both rename steps before it are done.
    with holding(killed, "SELECT 1", isolation="REPEATABLE READ"):
        kill_when(killed, "expand", "virtualxid", "CREATE INDEX CONCURRENTLY%")
        assert killed.scalar("SELECT count(*) FROM pg_index WHERE indexrelid = 'profiles_handle_idx'::regclass "
                             "AND NOT indisvalid") == 1
        assert killed.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgw001_%'") == 2
    killed.run("expand", try_number=2)
    assert_converged(killed, ref, "expand", "running")


def test_kill_9_mid_backfill_resumes_where_the_batches_stopped(pair) -> None:
    killed, ref = pair
    for phases in pair:
        phases.run("restore_point")
        phases.run("expand")
    ref.run("backfill")
    with holding(killed, "SELECT 1 FROM accounts WHERE id BETWEEN 12000 AND 12010 FOR UPDATE"):
        kill_when(killed, "backfill", "transactionid", "UPDATE%accounts%")
        walked = killed.scalar("SELECT rows_walked FROM pgwarden.backfill_checkpoints WHERE op_index = 0")
        assert 0 < walked < 20000, walked  # batches committed before the held rows, none after them
    out = killed.run("backfill", try_number=2)
    assert out["backfills"][0]["resumed"] and out["backfills"][0]["rows_walked"] == 20000
    assert sum(b["inconsistent_rows"] for b in out["backfills"]) == 0
    assert_converged(killed, ref, "backfill", "running")


@pytest.mark.parametrize("pair", ["full_backup"], indirect=True)
def test_kill_9_in_safety_net_after_its_full_backup_takes_no_second_one(pair) -> None:
    from pgwarden.engine.catalog import read_catalog
    from pgwarden.engine.repository import open_repository

    killed, ref = pair
    for phases in pair:
        for phase in ("restore_point", "expand", "backfill"):
            phases.run(phase)
    done = "NEW.phases @> '[{\"phase\": \"safety_net\", \"status\": \"done\"}]'"
    with history_update_held(killed, done):
        kill_when(killed, "safety_net", "advisory", "UPDATE%schema_history%")
    repo = open_repository(killed.config.repository)
    assert len(read_catalog(repo, killed.dbname).backups) == 1  # taken before the kill
    out = killed.run("safety_net", try_number=2)
    assert out["backup_reused"] and len(read_catalog(repo, killed.dbname).backups) == 1
    assert events(killed, "safety_net") == {1: ["backup_taken"], 2: ["done"]}
    report = read_catalog(repo, killed.dbname).check_chain()
    assert report.ok and report.reachable_point.name == out["restore_point"]
    # safety_net changes neither the schema nor the status
    assert_converged(killed, ref, "backfill", "running", killed_in="safety_net")


def test_kill_9_in_contract_after_the_first_table(pair) -> None:
    killed, ref = pair
    for phases in pair:
        for phase in ("restore_point", "expand", "backfill"):
            phases.run(phase)
    ref.run("contract")
    with holding(killed, "SELECT 1 FROM profiles LIMIT 1"):
        kill_when(killed, "contract", "relation", "%profiles%")
        assert killed.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgw001_%'") == 1  # accounts done
    killed.run("contract", try_number=2)
    assert_converged(killed, ref, "contract", "applied")
    assert killed.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgw%'") == 0
    assert killed.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgw%'") == 0


@pytest.mark.parametrize("gate", ["gate_switch_reads", "gate_contract"])
def test_kill_9_in_rollback_after_the_first_table_restores_the_schema(pair, gate) -> None:
    killed, ref = pair
    before = killed.dump(("public",)), killed.rows()
    for phases in pair:
        for phase in ("restore_point", "expand", "backfill"):
            phases.run(phase)
        if gate == "gate_contract":  # the switch gate approved: rollback then comes from the contract gate
            gated.record_approval(phases.target, 1, {"gate": "gate_switch_reads", "chosen": ["Approve"],
                                                     "run_id": RUN_ID})
    ref.run("rollback")
    with holding(killed, "SELECT 1 FROM accounts LIMIT 1"):
        kill_when(killed, "rollback", "relation", "%accounts%")
        assert killed.scalar("SELECT to_regclass('profiles_handle_idx') IS NULL")  # profiles' part undone
    killed.run("rollback", try_number=2)
    assert_converged(killed, ref, "rollback", "rolled_back")
    assert (killed.dump(("public",)), killed.rows()) == before  # the application's schema and rows as before
    assert killed.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgw%'") == 0
    assert killed.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgw%'") == 0


@pytest.mark.parametrize("pair", ["wal"], indirect=True)
def test_safety_net_wal_collects_up_to_its_restore_point_and_runs_again_cleanly(pair) -> None:
    """``safety_net: wal``: a restore point and the WAL up to it (after the database's own full backup), so the
    state before contract is one PITR away; run again (cleared) it makes a newer point, collects again and
    takes no backup."""
    from pgwarden.core.lsn import Lsn
    from pgwarden.engine.backup_full import take_full_backup
    from pgwarden.engine.catalog import read_catalog
    from pgwarden.engine.repository import open_repository

    phases = pair[0]
    repo = open_repository(phases.config.repository)
    take_full_backup(phases.target, repo, phases.dbname, phases.config.backup, phases.config.repository,
                     workdir=phases.workdir / "full", log=lambda _: None)
    for phase in ("restore_point", "expand", "backfill"):
        phases.run(phase)
    targets = []
    for try_number in (1, 2):
        out = phases.run("safety_net", try_number=try_number)
        assert out["mode"] == "wal" and "backup_id" not in out and out["wal_segments_uploaded"] >= 1
        catalog = read_catalog(repo, phases.dbname)
        report = catalog.check_chain()
        assert report.ok and report.reachable_point.name == out["restore_point"]
        assert report.replayable_to >= Lsn.parse(out["lsn"])  # the WAL reaches past the point
        assert len(catalog.backups) == 1
        targets.append((out["restore_point"], out["lsn"]))
    assert [(e["restore_point"], e["lsn"]) for e in phases.history()[3]
            if e["phase"] == "safety_net" and e["status"] == "done"] == targets
    assert phases.history()[:2] == ("running", "backfill")  # the net changes no phase or status
