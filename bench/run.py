"""``python -m bench.run [scenario ...]``: run benchmark scenarios and publish their figures.

Runs every module in ``bench/scenarios/`` (or only the named ones), merges their results into
``bench/results/latest.json`` (entries of scenarios not run are kept) and regenerates the table in
``BENCHMARKS.md``. A missed target is reported, not an error: the exit status is 0. A scenario that
cannot measure (its child failed, the parse it times is broken) is an error: its previous figures
are kept, the others are still written, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import Context, Result

Scenario = Callable[[Context], list[Result]]
SCENARIOS_PACKAGE = "bench.scenarios"


def discover() -> list[str]:
    """Scenario names: the modules of ``bench/scenarios`` whose names do not start with ``_``."""
    package = importlib.import_module(SCENARIOS_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def load(name: str) -> Scenario:
    module = importlib.import_module(f"{SCENARIOS_PACKAGE}.{name}")
    run = getattr(module, "run", None)
    if not callable(run):
        raise TypeError(f"bench/scenarios/{name}.py has no run(ctx) -> list[Result]")
    return run


def _row(entry: Mapping[str, Any]) -> list[str]:
    unit = entry.get("unit", "")
    base = entry.get("baseline_value")
    ratio = entry.get("ratio")
    return [
        entry["name"],
        f"{entry['value']:.4g} {unit}",
        "-" if base is None else f"{base:.4g} {unit}",
        "-" if ratio is None else f"{ratio:.2f}x",
        report.format_target(entry),
        "ok" if entry.get("ok") else "MISSED",
    ]


def print_table(entries: Sequence[Mapping[str, Any]]) -> None:
    rows = [["benchmark", "value", "baseline", "ratio", "target", "ok"]] + [_row(e) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def run_scenarios(
    scenarios: Mapping[str, Scenario],
    *,
    repeats: int = 5,
    results_path: Path = report.RESULTS,
    benchmarks_md: Path = report.BENCHMARKS_MD,
    commit: str | None = None,
    machine: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Run ``scenarios``, write the merged results and the table; (document, names that failed)."""
    commit = commit or report.git_commit()
    # Before any scenario runs: the load is the machine's, not ours.
    machine = machine or report.machine_info()
    fresh: list[dict[str, Any]] = []
    succeeded: list[str] = []
    failed: list[str] = []
    for name, scenario in scenarios.items():
        print(f"== {name}", flush=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"pgwarden-bench-{name}-"))
        load = report.load_average()
        try:
            results = scenario(Context(repeats=repeats, scratch=scratch))
            if not results or not all(isinstance(r, Result) for r in results):
                raise TypeError(f"scenario {name} must return a non-empty list of bench.harness.Result")
        except Exception:
            traceback.print_exc()
            print(f"!! scenario {name} could not measure; its previous figures are kept", flush=True)
            failed.append(name)
            continue
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for result in results:
            result.scenario, result.commit, result.measured_at = name, commit, measured_at
            result.extra.setdefault("load_avg_1m_at_start", load)
            fresh.append(result.to_json())
        succeeded.append(name)
    if not succeeded:
        return None, failed
    document = report.write_results(
        results_path, commit=commit, machine=machine, fresh=fresh,
        scenarios_run=succeeded,
    )
    report.update_benchmarks_md(benchmarks_md, document)
    return document, failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per figure (median is reported)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    unknown = sorted(set(args.scenarios) - set(available))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; available: {', '.join(available)}")
    names = args.scenarios or available
    document, failed = run_scenarios({name: load(name) for name in names}, repeats=args.repeats)
    if document is not None:
        print()
        print_table(document["benchmarks"])
        print(f"\nwrote {report.RESULTS.relative_to(report.ROOT)} and {report.BENCHMARKS_MD.name}"
              f" (commit {document['commit']})")
        missed = [e for e in document["benchmarks"] if not e.get("ok")]
        if missed:
            print("\nMissed targets (reported, not an error):")
            for entry in missed:
                print(f"  - {entry['name']}: {entry['value']:.4g} {entry.get('unit', '')}, "
                      f"target {report.format_target(entry)}")
        else:
            print("All targets met.")
    if failed:
        print(f"\nScenarios that could not measure: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
