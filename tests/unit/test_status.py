"""The pgwarden page's model (core/status.py), its HTML (airflow/ui/render.py) and who sees what (access.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

from pgwarden.airflow.ui.access import visible_databases
from pgwarden.airflow.ui.render import page_html
from pgwarden.core.catalog import WalObject
from pgwarden.core.drill import DrillEvidence
from pgwarden.core.migrations.gates import WAITING, approval_entry
from pgwarden.core.status import (
    ErasureFacts,
    MigrationRow,
    PurgeDay,
    StatusFacts,
    Unreachable,
    database_status,
    exposure_colour,
    rto_chart_svg,
)
from tests.unit.catalog_factory import DAY0, backup, catalog, seg

NOW = DAY0 + timedelta(days=3, hours=1)


def _catalog_with_wal(minutes_ago: int):
    cat = catalog([backup(0, 2), backup(1, 5), backup(2, 8, valid=False)], [seg(1, n) for n in range(2, 10)])
    last = len(cat.wal) - 1
    wal = tuple(replace(w, modified=NOW - timedelta(minutes=minutes_ago + 10 * (last - i)))
                for i, w in enumerate(cat.wal))
    return replace(cat, wal=wal)


def _drill(day: int, rto: float, passed: bool = True) -> DrillEvidence:
    d = DrillEvidence(database="shop", drill_id=f"2026112{day}T040000Z", started_at=DAY0 + timedelta(days=day),
                      rto_seconds=rto, rpo_seconds=600, rto_target_seconds=3600, rpo_target_seconds=5400,
                      pgwarden_version="test")
    d.add("restore", passed, "ok")
    return d


def _facts(**overrides) -> StatusFacts:
    base = dict(database="shop", now=NOW, rpo_target=timedelta(minutes=90), rto_target=timedelta(hours=1),
                catalog=_catalog_with_wal(20), drills=[_drill(1, 300), _drill(2, 4000, passed=False)])
    return StatusFacts(**{**base, **overrides})


def test_backups_show_the_newest_valid_full_the_newest_wal_and_the_rpo_exposure() -> None:
    status = database_status(_facts())
    b = status["backups"]
    assert b["last_full"]["backup_id"] == "20261121T020000Z"  # day 2's backup is invalid
    assert b["last_full"]["stored_bytes"] == 0  # the factory's entries list no stored objects
    assert b["last_incremental"]["wal_file"] == seg(1, 9)
    assert b["rpo"]["exposure_seconds"] == 20 * 60 and b["rpo"]["colour"] == "green"
    assert b["kept"]["valid"] == 2 and b["kept"]["backups"] == 3 and b["kept"]["by_class"]["daily"] >= 2
    assert b["problems"] == 1


def test_rpo_colour_follows_the_target() -> None:
    target = timedelta(minutes=90)
    assert exposure_colour(timedelta(minutes=90), target) == "green"
    assert exposure_colour(timedelta(minutes=91), target) == "amber"
    assert exposure_colour(timedelta(minutes=181), target) == "red"
    assert exposure_colour(None, target) == "red"
    late = database_status(_facts(catalog=_catalog_with_wal(200)))
    assert late["backups"]["rpo"]["colour"] == "red"


def test_drills_newest_first_with_targets_and_a_chart() -> None:
    drills = database_status(_facts())["drills"]
    assert [d["rto_ok"] for d in drills["last"]] == [False, True]
    assert drills["last"][0]["passed"] is False
    svg = rto_chart_svg(drills["rto_chart"], drills["rto_target_seconds"])
    root = ET.fromstring(svg)  # well-formed, self-contained
    assert root.tag.endswith("svg") and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert len([e for e in root.iter() if e.tag.endswith("circle")]) == 2
    assert rto_chart_svg([], 3600) == ""


def test_an_unreachable_source_marks_only_its_parts() -> None:
    gone = Unreachable("repository s3://b/p did not answer within 5s")
    status = database_status(_facts(catalog=gone, drills=gone, migrations=[]))
    assert status["backups"] == {"unreachable": gone.reason} and status["drills"] == {"unreachable": gone.reason}
    assert status["migrations"] == []
    html = page_html([status], "alice")
    assert "unreachable: repository s3://b/p did not answer within 5s" in html


def test_lifecycle_erasure_and_migrations() -> None:
    facts = _facts(
        purges=[PurgeDay(date(2026, 11, 22), "a", 10), PurgeDay(date(2026, 11, 22), "b", 5),
                PurgeDay(date(2026, 10, 1), "a", 99)],  # outside the window
        archived_bytes=3 * 2**20,
        erasure=ErasureFacts(erased=7, last_erased_at=NOW, in_grace=3, held=2, db_head_seq=9, db_head_hash="ab" * 32,
                             exported_head_seq=8, exported_head_hash="cd" * 32, exported_at=NOW),
        migrations=[
            MigrationRow(1, "prefs", "plain", "apply", "applied", NOW, NOW),
            MigrationRow(2, "rename", "expand_contract", "backfill", "running", NOW, None,
                         phases=[{"phase": "expand", "status": "running", "at": "2026-11-23T01:00:00Z"},
                                 {"phase": "backfill", "status": "running", "at": "2026-11-23T02:00:00Z"}]),
        ])
    status = database_status(facts)
    assert status["lifecycle"]["purged"]["total"] == 15
    assert status["lifecycle"]["archived"]["size"].startswith("3")
    assert status["erasure"]["export_behind"] == 1 and status["erasure"]["on_legal_hold"] == 2
    rename = status["migrations"][-1]
    assert rename["phase"] == "backfill" and rename["gate_waiting"] is None  # between phases, no gate asked yet


def _gated(*events, approvals=()) -> dict:
    """The page's entry of a gated migration whose timeline and approvals are what the DAG's tasks wrote."""
    run = {"dag_id": "shop.migrate.002_rename", "run_id": "manual__1", "try_number": 1}
    phases = [{"phase": "expand", "status": "running", "at": "2026-11-23T01:00:00+00:00", **run},
              {"phase": "backfill", "status": "running", "at": "2026-11-23T01:05:00+00:00", **run}]
    for gate, started in events:
        phases.append({"phase": gate, "status": WAITING, "started_at": started, "at": started[:-6] + ".4+00:00",
                       **run})
    row = MigrationRow(2, "rename", "expand_contract", "backfill", "running", NOW, None, phases=phases,
                       approvals=[{**a, **run} for a in approvals])
    return database_status(_facts(migrations=[row]))["migrations"][-1]


def test_a_gate_waits_from_its_start_until_its_approval_and_the_page_names_who_answered() -> None:
    switch_asked = ("gate_switch_reads", "2026-11-23T01:06:00+00:00")
    waiting = _gated(switch_asked)
    assert waiting["gate_waiting"] == {"gate": "gate_switch_reads", "after_phase": "backfill",
                                       "since": "2026-11-23T01:06:00+00:00"}
    approved = approval_entry("gate_switch_reads", ["Approve"], {"id": "carol", "name": "carol"},
                              "2026-11-23T01:30:00.5+00:00", False)
    after = _gated(switch_asked, approvals=[approved])
    assert after["gate_waiting"] is None
    assert after["approvals"] == ["gate_switch_reads: Approve by carol at 2026-11-23T01:30:00.5+00:00"]
    contract = _gated(switch_asked, ("gate_contract", "2026-11-23T02:00:00+00:00"), approvals=[approved])
    assert contract["gate_waiting"]["gate"] == "gate_contract"
    assert contract["gate_waiting"]["since"] == "2026-11-23T02:00:00+00:00"
    timed_out = approval_entry("gate_contract", ["Roll back"], None, "2026-11-24T02:00:00+00:00", True)
    assert _gated(switch_asked, ("gate_contract", "2026-11-23T02:00:00+00:00"), approvals=[approved, timed_out]
                  )["approvals"][-1] == "gate_contract: Roll back (timed out) at 2026-11-24T02:00:00+00:00"
    # A cleared gate asks again: the answer to its first asking does not answer the second one.
    again = _gated(switch_asked, ("gate_switch_reads", "2026-11-23T01:40:00+00:00"), approvals=[approved])
    assert again["gate_waiting"]["since"] == "2026-11-23T01:40:00+00:00"
    html = page_html([database_status(_facts(migrations=[MigrationRow(
        2, "rename", "expand_contract", "backfill", "running", NOW, None,
        phases=[{"phase": "gate_switch_reads", "status": WAITING, "started_at": "2026-11-23T01:06:00+00:00"}])]))],
        "alice")
    assert "gate_switch_reads waiting" in html and "2026-11-23T01:06:00+00:00" in html


def test_the_page_escapes_what_it_shows() -> None:
    facts = _facts(migrations=[MigrationRow(3, "<script>alert(1)</script>", "plain", "apply", "failed", NOW, None)])
    html = page_html([database_status(facts)], "<b>mallory</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;mallory" in html


def test_a_database_is_visible_only_when_all_its_dags_are_readable() -> None:
    known = {"appdb.backup_full", "appdb.ttl_purge", "shop.backup_full", "other_dag"}
    assert visible_databases(["appdb", "shop", "ghost"], known, known) == ["appdb", "shop"]
    assert visible_databases(["appdb", "shop"], known, {"appdb.backup_full", "shop.backup_full"}) == ["shop"]
    assert visible_databases(["appdb"], known, set()) == []


def test_the_newest_wal_ignores_timeline_history_files() -> None:
    cat = _catalog_with_wal(30)
    history = WalObject("00000002.history", "shop/wal/00000002.history", 40, NOW)
    status = database_status(_facts(catalog=replace(cat, wal=(*cat.wal, history))))
    assert status["backups"]["last_incremental"]["age_seconds"] == 30 * 60
    assert status["generated_at"] == NOW.isoformat() and NOW.tzinfo is timezone.utc
    assert isinstance(datetime.fromisoformat(status["generated_at"]), datetime)


def test_the_cache_serves_a_stale_status_while_one_thread_refreshes_it() -> None:
    import threading

    from pgwarden.engine.status import StatusCache

    now = [0.0]
    release = threading.Event()
    calls: list[int] = []

    def load(name: str) -> dict:
        calls.append(1)
        if len(calls) > 1:
            release.wait(10)  # the refresh is slow; requests meanwhile get the old status at once
        return {"database": name, "n": len(calls)}

    cache = StatusCache(load, ttl=60, clock=lambda: now[0])
    assert cache.get("a")["n"] == 1 and cache.get("a")["n"] == 1 and len(calls) == 1
    now[0] = 61.0
    assert cache.get("a")["n"] == 1 and cache.get("a")["n"] == 1  # stale, one refresh started
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "pgwarden-status-a"]:
        thread.join(10)
    assert len(calls) == 2 and cache.get("a")["n"] == 2


def test_a_failing_or_late_source_becomes_unreachable() -> None:
    import threading

    from pgwarden.engine.status import StatusCache, _bounded

    never = threading.Event()
    late = _bounded(lambda: never.wait(5), 0.05, "repository s3://b/p")
    assert late == Unreachable("repository s3://b/p did not answer within 0.05s")
    never.set()
    assert _bounded(lambda: 1 / 0, 1, "database").reason == "database: division by zero"
    broken = StatusCache(lambda name: 1 / 0).get("x")
    assert broken == {"database": "x", "error": "status could not be built: division by zero"}


def test_many_databases_load_side_by_side_without_starving_their_sources() -> None:
    from pgwarden.engine.status import StatusCache, _bounded

    cache = StatusCache(lambda name: {"database": name, "source": _bounded(lambda: "ok", 5, "repository")})
    statuses = cache.get_many([f"db{i:03d}" for i in range(60)])
    assert [s["source"] for s in statuses] == ["ok"] * 60
