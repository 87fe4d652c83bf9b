"""What a scenario gets and returns: ``Result``, the run ``Context`` and process measurement.

A scenario is a module in ``bench/scenarios/`` with ``run(ctx: Context) -> list[Result]``. It
measures the thing and its baseline side by side in the same run, and says what the target bounds.

How process cost is measured (``Context.measure``):

- wall time: ``time.perf_counter()`` around the child's start and exit, taken inside a small fresh
  wrapper process (``bench/_rusage_wrapper.py``), so the harness's own start-up is not counted;
- peak RSS: the wrapper's ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after it has waited for
  the child. That is the largest *single* process among the child and every descendant it waited for
  (the kernel folds waited-for grandchildren into their parent's children usage), and it is per run
  because the wrapper is fresh each time;
- optionally (``tree_rss=True``) the peak *sum* of RSS over the whole process tree, sampled from
  ``/proc`` every ``sample_interval`` seconds by the harness. Sampling can miss short spikes and costs
  a little CPU, so it is off unless a scenario needs a tree's total (e.g. a server plus its backends).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = Path(__file__).with_name("_rusage_wrapper.py")

TargetKind = Literal["ratio_max", "ratio_min", "value_max", "value_min"]


class BenchmarkError(RuntimeError):
    """The scenario could not measure what it claims to (a broken parse, a failed child, ...)."""


@dataclass
class Result:
    """One measured figure, its baseline and its target.

    ``ratio`` defaults to ``value / baseline_value``. ``target`` is an upper bound on ``ratio``
    (``target_kind="ratio_max"``) or on ``value`` (``"value_max"``), or a lower bound (``"ratio_min"``,
    ``"value_min"``); ``ok`` follows from it and is
    true when there is no target. ``extra`` holds anything else worth keeping (raw runs, counts).
    ``scenario``, ``commit`` and ``measured_at`` are filled in by the runner.
    """

    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: float | None = None
    target_kind: TargetKind | None = None
    ok: bool | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    scenario: str | None = None
    commit: str | None = None
    measured_at: str | None = None

    def __post_init__(self) -> None:
        if self.target is not None and self.target_kind not in ("ratio_max", "ratio_min", "value_max", "value_min"):
            raise ValueError(f"{self.name}: a target needs target_kind 'ratio_max', 'ratio_min', 'value_max' "
                             f"or 'value_min'")
        if self.ratio is None and self.baseline_value:
            self.ratio = self.value / self.baseline_value
        if self.target_kind in ("ratio_max", "ratio_min") and self.ratio is None:
            raise ValueError(f"{self.name}: target_kind {self.target_kind!r} needs a baseline_value")
        if self.ok is None:
            self.ok = self._meets_target()

    def _meets_target(self) -> bool:
        if self.target is None:
            return True
        if self.target_kind == "ratio_min":  # a floor, e.g. throughput at least half the baseline's
            return self.ratio is not None and self.ratio >= self.target
        if self.target_kind == "value_min":  # a floor on the value itself, e.g. at least 50k rows/s
            return self.value >= self.target
        bounded = self.ratio if self.target_kind == "ratio_max" else self.value
        return bounded is not None and bounded <= self.target

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Measurement:
    """One child process run: wall and CPU seconds, peak RSS in bytes, exit status and output."""

    argv: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    peak_tree_rss_bytes: int | None
    stdout: str
    stderr: str

    def check(self) -> Measurement:
        """Raise ``BenchmarkError`` with the output's tail when the child failed."""
        if self.returncode != 0:
            raise BenchmarkError(
                f"{' '.join(self.argv)} exited with {self.returncode}\n"
                f"--- stdout (tail)\n{self.stdout[-3000:]}\n--- stderr (tail)\n{self.stderr[-3000:]}"
            )
        return self


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _tree_rss_bytes(root_pid: int) -> int:
    """Sum of RSS of ``root_pid``'s descendants (not itself), read from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = set(), {root_pid}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - tree
        tree |= frontier
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def measure_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 600.0,
    tree_rss: bool = False,
    sample_interval: float = 0.05,
) -> Measurement:
    """Run ``argv`` in a fresh wrapper process and measure it (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pgwarden-bench-measure-") as scratch:
        report = Path(scratch) / "rusage.json"
        out_path, err_path = Path(scratch) / "stdout", Path(scratch) / "stderr"
        command = [sys.executable, str(WRAPPER), str(report), "--", *argv]
        peak_tree = 0
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(command, env=dict(env) if env is not None else None, cwd=cwd,
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            try:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise BenchmarkError(f"{' '.join(argv)} did not finish within {timeout:.0f} s")
                    if tree_rss and Path("/proc").is_dir():
                        peak_tree = max(peak_tree, _tree_rss_bytes(proc.pid))
                    time.sleep(sample_interval if tree_rss else 0.01)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if not report.exists():
            raise BenchmarkError(f"the measuring wrapper failed for {' '.join(argv)}:\n{stderr[-3000:]}")
        usage = json.loads(report.read_text())
    return Measurement(
        argv=list(argv),
        returncode=usage["returncode"],
        wall_s=usage["wall_s"],
        cpu_s=usage["cpu_s"],
        peak_rss_bytes=usage["maxrss_bytes"],
        peak_tree_rss_bytes=peak_tree if tree_rss else None,
        stdout=stdout,
        stderr=stderr,
    )


@dataclass
class Context:
    """What the runner hands each scenario.

    ``repeats``: how many measured runs per figure (report the median). ``scratch``: a directory of
    this scenario's own, removed afterwards. ``python``: the project's interpreter.
    """

    root: Path = ROOT
    repeats: int = 5
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgwarden-bench-")))
    python: str = sys.executable
    verbose: bool = True

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"  {message}", flush=True)

    def tempdir(self, name: str) -> Path:
        """A fresh, empty directory under this scenario's scratch space."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))
        os.chmod(path, 0o755)
        return path

    def measure(self, argv: Sequence[str], **kwargs: Any) -> Measurement:
        """``measure_process`` (wall time, peak RSS) of one child run."""
        return measure_process(argv, **kwargs)

    def repeat(self, fn: Callable[[int], float]) -> list[float]:
        """Call ``fn(i)`` ``self.repeats`` times; the values it returns, in order."""
        return [fn(i) for i in range(self.repeats)]

    def clean_env(self, **overrides: str) -> dict[str, str]:
        """This process's environment without the caller's Airflow and pgwarden settings, plus ``overrides``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW__", "AIRFLOW_HOME", "AIRFLOW_CONN_", "PGWARDEN_"))}
        env.update(overrides)
        return env

    def airflow_env(self, dags_folder: Path, **overrides: str) -> dict[str, str]:
        """A clean environment for one Airflow child with a fresh, empty AIRFLOW_HOME."""
        home = self.tempdir("airflow-home")
        return self.clean_env(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(self.root / "plugins"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
            AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
            **overrides,
        )

    def postgres(self, settings: Mapping[str, str] | None = None, **kwargs: Any) -> AbstractContextManager:
        """A throwaway PostgreSQL server (``tests.harness.postgres.postgres_server``): yields a LocalCluster."""
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        from tests.harness.postgres import postgres_server

        return postgres_server(settings=settings, **kwargs)

    @contextmanager
    def env(self, **values: str) -> Iterator[None]:
        """Set environment variables in this process for the block, then restore them."""
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
