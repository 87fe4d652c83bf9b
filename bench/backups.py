"""Helpers shared by the backup scenarios: running pgwarden in a child process, tool paths, sizes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import BenchmarkError, Context, Measurement

CHILD = Path(__file__).with_name("scenarios") / "_backup_child.py"
MIB = 2**20


def tool(name: str) -> str:
    from pgwarden.engine import pgtools

    return pgtools.tool(name)


def tool_env(ctx: Context, port: int) -> dict[str, str]:
    """Environment for PostgreSQL's client tools against the benchmark server (trust auth, no password)."""
    return ctx.clean_env(PGHOST="127.0.0.1", PGPORT=str(port), PGUSER="postgres")


def flush_dirty_pages() -> None:
    """``sync`` between measurements, so one run's unwritten data is not written during the next."""
    subprocess.run(["sync"], check=True)


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_pgwarden(ctx: Context, request: dict[str, Any], *, timeout: float = 1800) -> tuple[Measurement, dict]:
    """Run ``_backup_child.py`` with ``request`` in a fresh interpreter; (measurement, its report)."""
    folder = ctx.tempdir("pgwarden-child")
    request_path, report_path = folder / "request.json", folder / "report.json"
    request_path.write_text(json.dumps(request))
    measurement = ctx.measure([ctx.python, str(CHILD), str(request_path), str(report_path)],
                              env=ctx.clean_env(), cwd=ctx.scratch, tree_rss=True, timeout=timeout).check()
    if not report_path.exists():
        raise BenchmarkError(f"the pgwarden child wrote no report:\n{measurement.stderr[-2000:]}")
    return measurement, json.loads(report_path.read_text())


def gzip_ratio(path: Path) -> tuple[float, int]:
    """(size / gzip -6 size, gzip size) of one file, streamed through the gzip command."""
    with open(path, "rb") as src:
        gz = subprocess.Popen(["gzip", "-6", "-c"], stdin=src, stdout=subprocess.PIPE)
        assert gz.stdout is not None
        compressed = 0
        for chunk in iter(lambda: gz.stdout.read(1 << 20), b""):
            compressed += len(chunk)
        if gz.wait() != 0:
            raise BenchmarkError(f"gzip of {path} failed")
    return path.stat().st_size / compressed, compressed
