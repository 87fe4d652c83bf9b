"""The benchmark harness itself: results shape, merging a subset run, BENCHMARKS.md markers.

Real scenarios are not run here (they take seconds and measure the machine); fake ones are.
Nothing here asserts on time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import report
from bench.harness import BenchmarkError, Context, Result, measure_process
from bench.run import discover, run_scenarios
from bench.scenarios import dag_parse

MACHINE = {"cpu": "test cpu", "cores": 2, "memory_gib": 4.0, "python": "3.11", "postgres": None,
           "airflow": "3.3.2", "os": "test os"}
ISSUE_KEYS = {"name", "value", "unit", "baseline_name", "baseline_value", "ratio", "target", "ok"}


def fake(name: str, value: float, baseline: float = 1.0, target: float = 2.0, kind: str = "value_max"):
    def scenario(ctx: Context) -> list[Result]:
        assert ctx.scratch.is_dir()
        return [Result(name=name, value=value, unit="s", baseline_name="base", baseline_value=baseline,
                       target=target, target_kind=kind)]

    return scenario


def run(tmp_path: Path, scenarios, commit: str = "abc123"):
    return run_scenarios(scenarios, repeats=1, results_path=tmp_path / "results" / "latest.json",
                         benchmarks_md=tmp_path / "BENCHMARKS.md", commit=commit, machine=MACHINE)


def test_result_computes_ratio_and_ok_against_either_kind_of_target():
    by_value = Result(name="x", value=3.0, unit="s", baseline_value=1.5, target=2.0, target_kind="value_max")
    assert by_value.ratio == 2.0 and by_value.ok is False
    by_ratio = Result(name="x", value=3.0, unit="s", baseline_value=1.5, target=2.0, target_kind="ratio_max")
    assert by_ratio.ok is True
    # A floor (throughput): 0.4x the baseline misses "at least 0.5x", 0.6x meets it.
    floor = {"unit": "rows/s", "baseline_value": 100.0, "target": 0.5, "target_kind": "ratio_min"}
    assert Result(name="x", value=40.0, **floor).ok is False
    assert Result(name="x", value=60.0, **floor).ok is True
    # A floor on the figure itself (subjects/s at least 500).
    assert Result(name="x", value=499.0, unit="subjects/s", target=500, target_kind="value_min").ok is False
    assert Result(name="x", value=501.0, unit="subjects/s", target=500, target_kind="value_min").ok is True
    assert Result(name="x", value=9.0, unit="s").ok is True  # no target: informational
    with pytest.raises(ValueError, match="target_kind"):
        Result(name="x", value=1.0, unit="s", target=1.0)
    with pytest.raises(ValueError, match="baseline"):
        Result(name="x", value=1.0, unit="s", target=1.0, target_kind="ratio_max")


def test_results_file_has_the_documented_shape(tmp_path: Path):
    document, failed = run(tmp_path, {"alpha": fake("alpha", 1.0)})
    assert failed == []
    on_disk = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert on_disk == document
    assert set(on_disk) == {"commit", "machine", "benchmarks"}
    assert on_disk["commit"] == "abc123" and on_disk["machine"] == MACHINE
    [entry] = on_disk["benchmarks"]
    assert ISSUE_KEYS <= set(entry)
    assert entry["target_kind"] == "value_max" and entry["scenario"] == "alpha"
    assert entry["commit"] == "abc123" and entry["measured_at"]
    assert entry["ratio"] == 1.0 and entry["ok"] is True


def test_a_subset_run_replaces_only_its_scenarios_entries(tmp_path: Path):
    run(tmp_path, {"alpha": fake("alpha", 1.0), "beta": fake("beta", 1.0)}, commit="first")
    document, _ = run(tmp_path, {"beta": fake("beta", 5.0)}, commit="second")
    entries = {e["name"]: e for e in document["benchmarks"]}
    assert set(entries) == {"alpha", "beta"}
    assert entries["alpha"]["value"] == 1.0 and entries["alpha"]["commit"] == "first"
    assert entries["beta"]["value"] == 5.0 and entries["beta"]["commit"] == "second"
    assert entries["beta"]["ok"] is False  # a missed target is recorded, not raised
    assert document["commit"] == "second"


def test_a_scenario_that_cannot_measure_keeps_its_previous_figures(tmp_path: Path):
    run(tmp_path, {"alpha": fake("alpha", 1.0)}, commit="first")

    def broken(ctx: Context) -> list[Result]:
        raise BenchmarkError("the parse being timed is broken")

    document, failed = run(tmp_path, {"alpha": broken, "beta": fake("beta", 1.0)}, commit="second")
    assert failed == ["alpha"]
    entries = {e["name"]: e for e in document["benchmarks"]}
    assert entries["alpha"]["commit"] == "first" and entries["beta"]["commit"] == "second"


def test_benchmarks_md_is_created_with_intro_and_markers(tmp_path: Path):
    run(tmp_path, {"alpha": fake("alpha", 3.0, target=2.0)})
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.startswith("# Benchmarks") and "ratio" in text
    table = text.split(report.START, 1)[1].split(report.END, 1)[0]
    assert "| `alpha` | 3 s | base | 1 s | 3.00× | ≤ 2 s | ❌ missed |" in table
    assert "test cpu" in table


def test_benchmarks_md_only_the_text_between_markers_is_replaced(tmp_path: Path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"# Mine\n\nhand-written intro\n\n{report.START}\nold table\n{report.END}\n\n## Notes\nkept\n")
    run(tmp_path, {"alpha": fake("alpha", 1.0)})
    text = md.read_text()
    assert text.startswith("# Mine\n\nhand-written intro\n\n")
    assert text.endswith(f"{report.END}\n\n## Notes\nkept\n")
    assert "old table" not in text and "`alpha`" in text
    run(tmp_path, {"alpha": fake("alpha", 1.5)})
    again = md.read_text()
    assert again.count(report.START) == 1 and again.count(report.END) == 1 and "1.5 s" in again


def test_benchmarks_md_without_markers_gets_them_appended(tmp_path: Path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Someone's notes\n")
    run(tmp_path, {"alpha": fake("alpha", 1.0)})
    text = md.read_text()
    assert text.startswith("# Someone's notes\n") and "`alpha`" in text.split(report.START)[1]


def test_short_commit_keeps_the_dirty_mark():
    assert report.short_commit("0123456789abcdef0123-dirty") == "0123456789ab-dirty"
    assert report.short_commit("0123456789abcdef0123") == "0123456789ab"


def test_measure_process_reports_exit_status_and_peak_rss(tmp_path: Path):
    ok = measure_process([sys.executable, "-c", "b = bytearray(32 * 2**20); print('hi')"], tree_rss=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "hi"
    assert ok.peak_rss_bytes >= 32 * 2**20 and ok.peak_tree_rss_bytes is not None
    failed = measure_process([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert failed.returncode == 3
    with pytest.raises(BenchmarkError, match="exited with 3"):
        failed.check()


def test_scenarios_are_discovered_and_helpers_skipped():
    names = discover()
    assert "dag_parse" in names
    assert not any(name.startswith("_") for name in names)


def test_dag_parse_fleet_config_is_valid_with_every_concern_and_gated_files(tmp_path: Path):
    path = dag_parse.write_config(tmp_path, databases=3)
    from pgwarden.core.config import parse_config

    config = parse_config(path.read_text(), str(path))
    assert sorted(config.databases) == ["db000", "db001", "db002"] and not config.broken
    db = config.databases["db001"]
    assert db.backup.offsite and db.backup.logical_dump.enabled and db.verify.enabled and db.healthcheck.enabled
    assert [p.mode for p in db.lifecycle.policies].count("archive_then_delete") == 1 and db.lifecycle.erasure
    folder = Path(db.migrations.path)
    assert folder == tmp_path / "sql" / "migrations" / "db001"
    assert sorted(p.name for p in folder.glob("*.yaml")) == [f"{name}.yaml" for name in dag_parse.GATED_MIGRATIONS]


def test_dag_parse_refuses_a_broken_bag(tmp_path: Path):
    (tmp_path / "pgwarden_dags.py").write_text("")
    every = sorted(f"db000.{concern}" for concern in dag_parse.CONCERNS)
    healthy = {"import_errors": {}, "files": [str(tmp_path / "pgwarden_dags.py")], "databases": ["db000"],
               "broken_databases": [], "expected_dag_ids": every, "dag_ids": every}
    dag_parse.check_pgwarden_bag(healthy, tmp_path, databases=1)
    with pytest.raises(BenchmarkError, match="import errors"):
        dag_parse.check_pgwarden_bag({**healthy, "import_errors": {"x.py": "boom"}}, tmp_path, databases=1)
    with pytest.raises(BenchmarkError, match="bag lacks"):
        dag_parse.check_pgwarden_bag({**healthy, "dag_ids": []}, tmp_path, databases=1)
    with pytest.raises(BenchmarkError, match="did not parse"):
        dag_parse.check_pgwarden_bag({**healthy, "files": []}, tmp_path, databases=1)
    # A fleet whose factory quietly stopped building a concern would parse faster: refused, naming it.
    no_drill = [d for d in every if d != "db000.verify_restore"]
    with pytest.raises(BenchmarkError, match=r"missing concerns\): \{'db000': \['verify_restore'\]\}"):
        dag_parse.check_pgwarden_bag({**healthy, "dag_ids": no_drill, "expected_dag_ids": no_drill}, tmp_path,
                                     databases=1)


def test_phases_refuse_a_name_the_engine_does_not_have():
    from types import SimpleNamespace

    from bench.scenarios._backup_child import Phases

    with pytest.raises(AttributeError, match=r"cannot time 'unpack_tar': namespace._unpack does not exist"):
        Phases().wrap(SimpleNamespace(__name__="namespace"), "_unpack", "unpack_tar")


def test_phases_refuse_to_report_a_wrapped_step_the_run_never_called():
    import io
    from contextlib import contextmanager
    from types import SimpleNamespace

    from bench.scenarios._backup_child import Phases

    @contextmanager
    def open_object(key):
        yield io.BytesIO(b"x" * 10)

    engine = SimpleNamespace(__name__="engine", used=lambda: 1, unused=lambda: 2, conditional=lambda: 3,
                             open_object=open_object)
    phases = Phases()
    for name in ("used", "unused"):
        phases.wrap(engine, name, name)
    phases.wrap(engine, "conditional", "conditional", optional=True)
    phases.wrap_reads(engine, "open_object", lambda key: f"read_{key}")
    phases.expect("read_base", "read_wal")
    assert engine.used() == 1
    with engine.open_object("base") as stream:
        assert stream.read(4) == b"xxxx" and stream.read() == b"x" * 6
    with pytest.raises(RuntimeError, match=r"never went through: unused \(engine.unused\), read_wal \(read_wal\)"):
        phases.report()

    engine.unused()
    with engine.open_object("wal") as stream:
        stream.read()
    report = phases.report()  # the optional step was never called: that is allowed
    assert report["calls"] == {"used": 1, "unused": 1, "read_base": 1, "read_wal": 1}
    assert set(report["seconds"]) == {"used", "unused", "read_base", "read_wal"}


def test_a_value_floor_target() -> None:
    from bench.harness import Result

    assert Result(name="x", value=60_000.0, unit="rows/s", target=50_000, target_kind="value_min").ok
    assert not Result(name="x", value=40_000.0, unit="rows/s", target=50_000, target_kind="value_min").ok
