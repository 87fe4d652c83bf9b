"""The results file (``bench/results/latest.json``) and the table in ``BENCHMARKS.md``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
# Files the runner writes itself: they do not make the measured tree "dirty".
OUTPUTS = ("bench/results/", "BENCHMARKS.md")

INTRO = f"""\
# Benchmarks

Measured by `make bench` (or `.venv/bin/python -m bench.run [scenario ...]`, which re-runs only the named
scenarios and keeps the others' last figures). Scenarios live in `bench/scenarios/`; the raw figures,
with every run and the machine they came from, are in `bench/results/latest.json`.

Each figure is measured side by side with a baseline in the same run, on the same machine.
**ratio** = value / baseline value. A **target** bounds either the value itself (`≤ 2 s`) or the
ratio (`ratio ≤ 1.5×`, or a floor such as `ratio ≥ 0.5×` for a throughput); **ok** says whether the latest run met it. Tests never assert on time: these
figures are the only performance claims the project makes. A commit marked `-dirty` was measured
with uncommitted changes in the tree (the benchmark outputs aside); a high load average means another
job shared the machine, so re-run before trusting a change.

The table below is generated; edit the text above the markers, not between them.

{START}
{END}
"""


def git_commit(root: Path = ROOT) -> str:
    """HEAD's sha, plus ``-dirty`` when the tree (tracked or untracked, outputs aside) differs from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal"], cwd=root,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:].strip().strip('"') for line in status.splitlines() if line.strip()]
    dirty = [path for path in changed if not path.startswith(OUTPUTS)]
    return f"{sha}-dirty" if dirty else sha


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _postgres_version() -> str | None:
    try:
        from pgwarden.engine import pgtools

        out = subprocess.run([pgtools.tool("postgres"), "--version"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
        return out.strip()
    except Exception:  # no server binaries on this machine: say so rather than fail the run
        return None


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "postgres": _postgres_version(),
        "airflow": _package_version("apache-airflow"),
        "os": platform.platform(),
        # Other work on the machine skews every figure: a high load here means "re-run when quiet".
        "load_avg_1m_at_start": load_average(),
    }


def load_results(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return json.loads(path.read_text())


def merge_benchmarks(
    previous: Sequence[dict[str, Any]], fresh: Sequence[dict[str, Any]], replaced: Iterable[str]
) -> list[dict[str, Any]]:
    """Previous entries of scenarios not in ``replaced``, then the fresh ones; ordered by scenario."""
    replaced = set(replaced)
    kept = [entry for entry in previous if entry.get("scenario") not in replaced]
    merged = kept + list(fresh)
    # Stable sort: within a scenario the order it reported is kept.
    return sorted(merged, key=lambda entry: str(entry.get("scenario") or ""))


def write_results(
    path: Path, *, commit: str, machine: dict[str, Any], fresh: Sequence[dict[str, Any]],
    scenarios_run: Iterable[str],
) -> dict[str, Any]:
    """Merge ``fresh`` into the file at ``path`` (replacing only ``scenarios_run``) and write it."""
    previous = load_results(path) or {}
    document = {
        "commit": commit,
        "machine": machine,
        "benchmarks": merge_benchmarks(previous.get("benchmarks", []), fresh, scenarios_run),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return document


def short_commit(commit: str | None) -> str:
    """``abcdef123456-dirty`` from a full sha with an optional ``-dirty``."""
    if not commit:
        return "?"
    sha, dirty, _ = commit.partition("-dirty")
    return sha[:12] + ("-dirty" if dirty else "")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def format_target(entry: dict[str, Any]) -> str:
    target, kind = entry.get("target"), entry.get("target_kind")
    if target is None:
        return "–"
    if kind == "ratio_max":
        return f"ratio ≤ {target:g}×"
    if kind == "ratio_min":
        return f"ratio ≥ {target:g}×"
    if kind == "value_min":
        return f"≥ {target:g} {entry.get('unit', '')}".strip()
    return f"≤ {target:g} {entry.get('unit', '')}".strip()


def render_table(document: dict[str, Any]) -> str:
    machine = document.get("machine", {})
    lines = [
        f"Latest run: commit `{document.get('commit', 'unknown')}` on {machine.get('cpu', '?')}, "
        f"{machine.get('cores', '?')} cores, {machine.get('memory_gib', '?')} GiB RAM, "
        f"Python {machine.get('python', '?')}, Airflow {machine.get('airflow', '?')}, "
        f"{machine.get('postgres') or 'no PostgreSQL'}, {machine.get('os', '?')}; "
        f"1-minute load average at start {machine.get('load_avg_1m_at_start', '?')}.",
        "",
        "| benchmark | value | baseline | baseline value | ratio | target | ok | measured at commit |",
        "|---|---:|---|---:|---:|---|:-:|---|",
    ]
    for entry in document.get("benchmarks", []):
        ratio = entry.get("ratio")
        lines.append(
            f"| `{entry['name']}` | {_number(entry.get('value'), entry.get('unit', ''))} "
            f"| {entry.get('baseline_name') or '–'} "
            f"| {_number(entry.get('baseline_value'), entry.get('unit', ''))} "
            f"| {'–' if ratio is None else f'{ratio:.2f}×'} | {format_target(entry)} "
            f"| {'✅' if entry.get('ok') else '❌ missed'} | `{short_commit(entry.get('commit'))}` |"
        )
    described = [e for e in document.get("benchmarks", []) if e.get("description")]
    if described:
        lines.append("")
        lines.extend(f"- `{e['name']}`: {e['description']}" for e in described)
    return "\n".join(lines)


def update_benchmarks_md(path: Path, document: dict[str, Any]) -> None:
    """Replace the text between the markers (creating the file, or the markers, when missing)."""
    text = path.read_text() if path.exists() else INTRO
    if START not in text or END not in text or text.index(START) > text.index(END):
        text = (text.rstrip("\n") + f"\n\n{START}\n{END}\n") if text.strip() else INTRO
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{render_table(document)}\n{END}{tail}")
