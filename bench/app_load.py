"""An application load for benchmarks: ``pgbench`` running a custom script at a fixed rate (``-R``).

``start`` launches one client group; ``finish`` waits for it and reads its per-transaction log
(latency and wall-clock time of each transaction) and its failures, so a scenario can take the
latencies inside any window (while a migration phase ran, say) and count errors per group.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backups import tool, tool_env
from bench.harness import BenchmarkError, Context


@dataclass
class Load:
    name: str
    process: subprocess.Popen
    workdir: Path
    samples: list[tuple[float, float]] = field(default_factory=list)  # (epoch seconds, latency ms)
    failed: int = 0
    aborted: int = 0
    output: str = ""


def start(ctx: Context, port: int, name: str, script: str, *, rate: int, clients: int, seconds: int,
          defines: dict[str, Any] | None = None) -> Load:
    workdir = ctx.tempdir(f"pgbench-{name}")
    path = workdir / "app.sql"
    path.write_text(script)
    argv = [tool("pgbench"), "-n", "-f", str(path), "-c", str(clients), "-j", str(min(clients, 2)),
            "-R", str(rate), "-T", str(seconds), "-l", "--log-prefix", str(workdir / "tx")]
    for key, value in (defines or {}).items():
        argv += ["-D", f"{key}={value}"]
    argv.append("postgres")
    process = subprocess.Popen(argv, env=tool_env(ctx, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    return Load(name, process, workdir)


def finish(load: Load, timeout: float) -> Load:
    try:
        load.output, _ = load.process.communicate(timeout=timeout)
    finally:
        if load.process.poll() is None:
            load.process.kill()
            load.process.wait()
    for line in load.output.splitlines():
        if line.startswith("number of failed transactions:"):
            load.failed = int(line.split(":")[1].split()[0])
        if "aborted" in line and "client" in line:
            load.aborted += 1
    if load.process.returncode not in (0, 2) and not load.aborted:
        raise BenchmarkError(f"pgbench {load.name} failed:\n{load.output[-3000:]}")
    for log in load.workdir.glob("tx*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            # client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            if fields[2] in ("skipped", "failed"):
                continue
            load.samples.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1000))
    return load


def window(loads: list[Load], lo: float, hi: float) -> dict[str, Any]:
    """p50/p99 of the transactions of ``loads`` that ran during [lo, hi]; errors over the whole runs.

    A transaction counts when it overlapped the window, not only when it ended inside it: one blocked by
    the phase until the phase committed ends just after the window and is the very one to count.
    """
    inside = sorted(lat for load in loads for at, lat in load.samples if at >= lo and at - lat / 1000 <= hi)
    if not inside:
        raise BenchmarkError("no application transaction ran in the measured window")
    return {"p50_ms": inside[len(inside) // 2], "p99_ms": inside[min(len(inside) - 1, int(len(inside) * 0.99))],
            "max_ms": inside[-1], "transactions": len(inside), "window_s": round(hi - lo, 2),
            "errors": sum(load.failed + load.aborted for load in loads)}
