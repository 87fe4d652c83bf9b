"""``backup_full``: pgwarden's full backup of a ~1 GB realistic database against the brief's script and raw pg_basebackup.

One server, one run, one disk. The database comes from ``bench/datagen.py`` (shop data that
compresses about 3× with gzip, checked below), built once per ``bench.run`` process and shared
with ``backup_incremental``. The repository is a ``file://`` directory under the scenario's
scratch space, on the same disk as the server's data directory and every working directory, so
all three contestants read from and write to the same device:

- **pgwarden**: ``take_full_backup`` in a fresh Python child, exactly as the ``backup_full`` task
  calls it (compression ``auto`` = zstd, checkpoint ``fast``, SHA-256 manifest, verification against
  ``backup_manifest``, row counts of ``users`` and ``orders`` at a named restore point, upload into
  the repository with SHA-256 sidecars and fsync, pgwarden.json last). Wall time and the peak summed
  RSS of its process tree (python + pg_basebackup + zstd) are measured; each engine step is timed
  inside the child (see ``_backup_child.py``).
- **(a) the brief's script**: ``pg_dump -U postgres -d shopdb -F c -f FILE; gzip FILE;
  cp FILE.gz REPO/`` in bash, the repository directory standing in for ``aws s3 cp`` (gzip and cp
  do not fsync; pgwarden's repository does, so this favours the brief slightly).
- **(b) the limit**: ``pg_basebackup -Ft -X stream -c fast -D DIR``: no compression, no
  verification, no upload (``-c fast`` as pgwarden uses, else it would wait for a spread checkpoint).

One discarded warm-up run of pgwarden (it creates its replication slot) and of pg_basebackup, then
``min(repeats, 3)`` rounds of the three, in a rotating order so drift hits all alike; ``sync`` after
every run so unwritten pages of one run are not flushed during the next. Medians are reported.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from bench.backups import MIB, flush_dirty_pages, gzip_ratio, run_pgwarden, tool, tool_env, tree_bytes
from bench.datagen import shared_dataset
from bench.harness import BenchmarkError, Context, Result, median

ROUNDS = 3
TARGET_VS_BRIEF = 0.35
TARGET_VS_BASEBACKUP = 1.3
TARGET_RSS_MB = 300
GZIP_RATIO_RANGE = (1.8, 6.0)
COUNT_ROWS = ["public.users", "public.orders"]


def _pgwarden(ctx: Context, port: int, repo_root: Path, database: str) -> dict[str, Any]:
    workdir = ctx.tempdir("pgwarden-work")
    measurement, report = run_pgwarden(ctx, {
        "mode": "full", "port": port, "dbname": database, "database": database,
        "repo_url": f"file://{repo_root}", "workdir": str(workdir), "compression": "auto",
        "count_rows": COUNT_ROWS,
    })
    shutil.rmtree(workdir, ignore_errors=True)
    return {"wall_s": measurement.wall_s, "cpu_s": measurement.cpu_s,
            "tree_rss_bytes": measurement.peak_tree_rss_bytes, "maxrss_bytes": measurement.peak_rss_bytes,
            "report": report}


def _pgwarden_s3(ctx: Context, port: int, database: str) -> dict[str, Any]:
    """One pgwarden run into moto's S3 server (extra information; the file:// figure is the primary one)."""
    from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_moto

    moto = start_moto()
    try:
        moto.client().create_bucket(Bucket="pgwarden-bench")
        workdir = ctx.tempdir("pgwarden-s3-work")
        measurement, report = run_pgwarden(ctx, {
            "mode": "full", "port": port, "dbname": database, "database": database,
            "repo_url": "s3://pgwarden-bench/prod", "workdir": str(workdir), "compression": "auto",
            "count_rows": COUNT_ROWS,
            "s3": {"endpoint_url": moto.endpoint_url, "region_name": REGION,
                   "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY},
        })
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        moto.stop()
    return {"wall_s": round(measurement.wall_s, 3),
            "peak_tree_rss_mib": round((measurement.peak_tree_rss_bytes or 0) / MIB, 1),
            "phase_s": report["phases"]["seconds"],
            "note": "one run, moto's S3 server on the same machine (in-memory objects); not a median"}


def _brief(ctx: Context, port: int, repo_root: Path, database: str) -> dict[str, Any]:
    workdir = ctx.tempdir("brief-work")
    dump = workdir / f"full_{time.strftime('%Y%m%d_%H%M%S')}.dump"
    script = (f'set -e; pg_dump -U postgres -d {database} -F c -f "{dump}"; gzip "{dump}"; '
              f'cp "{dump}.gz" "{repo_root}/"')
    env = tool_env(ctx, port)
    env["PATH"] = f"{Path(tool('pg_dump')).parent}:{env.get('PATH', '')}"
    measurement = ctx.measure(["bash", "-c", script], env=env, tree_rss=True, timeout=3600).check()
    stored = repo_root / f"{dump.name}.gz"
    result = {"wall_s": measurement.wall_s, "cpu_s": measurement.cpu_s,
              "tree_rss_bytes": measurement.peak_tree_rss_bytes, "maxrss_bytes": measurement.peak_rss_bytes,
              "stored_bytes": stored.stat().st_size}
    stored.unlink()
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _basebackup(ctx: Context, port: int, keep: Path | None = None) -> dict[str, Any]:
    dest = ctx.tempdir("basebackup") / "out"
    argv = [tool("pg_basebackup"), "-Ft", "-X", "stream", "-c", "fast", "-D", str(dest)]
    measurement = ctx.measure(argv, env=tool_env(ctx, port), tree_rss=True, timeout=3600).check()
    result = {"wall_s": measurement.wall_s, "cpu_s": measurement.cpu_s,
              "tree_rss_bytes": measurement.peak_tree_rss_bytes, "maxrss_bytes": measurement.peak_rss_bytes,
              "bytes": tree_bytes(dest), "files": {p.name: p.stat().st_size for p in dest.iterdir()}}
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(str(dest), str(keep))
    shutil.rmtree(dest.parent, ignore_errors=True)
    return result


def _drop_backups(repo_root: Path) -> None:
    """Keep the repository small between rounds; every round writes a whole new backup anyway."""
    for child in repo_root.iterdir():
        if child.is_dir():
            shutil.rmtree(child)


def _phase_table(reports: list[dict[str, Any]]) -> dict[str, float]:
    names = sorted({name for r in reports for name in r["phases"]["seconds"]})
    return {name: round(median([r["phases"]["seconds"].get(name, 0.0) for r in reports]), 3) for name in names}


def _critical_path(report: dict[str, Any]) -> dict[str, float]:
    """Where one run's wall time went, in order; steps run side by side (verify ∥ upload) count once."""
    window = report["phases"]["windows"].get("pg_basebackup", [0.0, 0.0])
    return {"python_start_up": report["import_s"], "before_pg_basebackup": window[0],
            "pg_basebackup": window[1] - window[0], "after_pg_basebackup": report["engine_s"] - window[1]}


def run(ctx: Context) -> list[Result]:
    data = shared_dataset(ctx)
    port, database = data.cluster.port, data.database
    repo_root = ctx.tempdir("repository")
    same_disk = os.stat(repo_root).st_dev == os.stat(data.cluster.datadir).st_dev
    ctx.log(f"repository file://{repo_root} ({'same' if same_disk else 'NOT the same'} device as the data)")

    ctx.log("warm-up: pgwarden (creates its slot) and pg_basebackup, discarded")
    _pgwarden(ctx, port, repo_root, database)
    _drop_backups(repo_root)
    _basebackup(ctx, port)
    flush_dirty_pages()

    rounds = max(1, min(ctx.repeats, ROUNDS))
    contestants = ["basebackup", "pgwarden", "brief"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    kept_tar = ctx.tempdir("kept") / "basebackup"
    for i in range(rounds):
        order = contestants[i % 3:] + contestants[:i % 3]
        for name in order:
            if name == "pgwarden":
                outcome = _pgwarden(ctx, port, repo_root, database)
                _drop_backups(repo_root)
            elif name == "brief":
                outcome = _brief(ctx, port, repo_root, database)
            else:
                outcome = _basebackup(ctx, port, keep=kept_tar if i == rounds - 1 else None)
            flush_dirty_pages()
            runs[name].append(outcome)
            ctx.log(f"round {i + 1}/{rounds} {name}: {outcome['wall_s']:.2f} s, "
                    f"tree RSS {outcome['tree_rss_bytes'] / MIB:.0f} MiB")

    ctx.log("gzip ratio of the raw base backup's base.tar (is the data realistic?)")
    ratio, gz_bytes = gzip_ratio(kept_tar / "base.tar")
    low, high = GZIP_RATIO_RANGE
    if not low <= ratio <= high:
        raise BenchmarkError(f"the generated data compresses {ratio:.2f}x with gzip; the benchmark needs "
                             f"{low}-{high}x to stand for real data. Fix bench/datagen.py.")
    data.facts["base_tar_gzip_ratio"] = round(ratio, 3)
    shutil.rmtree(kept_tar.parent, ignore_errors=True)

    ctx.log("extra: one pgwarden run into moto's S3 endpoint")
    try:
        s3_run: dict[str, Any] = _pgwarden_s3(ctx, port, database)
        ctx.log(f"  s3: {s3_run['wall_s']:.2f} s, tree RSS {s3_run['peak_tree_rss_mib']:.0f} MiB")
    except Exception as exc:  # optional extra figure: say why it is missing, keep the primary ones
        s3_run = {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}
        ctx.log(f"  s3 run failed (recorded, not fatal): {s3_run['error'][:200]}")
    flush_dirty_pages()

    ours, brief, base = runs["pgwarden"], runs["brief"], runs["basebackup"]
    wall, brief_wall, base_wall = (median([r["wall_s"] for r in rs]) for rs in (ours, brief, base))
    peak_rss = max(r["tree_rss_bytes"] for r in ours)
    last = ours[-1]["report"]["outcome"]
    raw_bytes = median([r["bytes"] for r in base])
    stored = last["stored_bytes"]
    phases = _phase_table([r["report"] for r in ours])
    path = {name: round(median([_critical_path(r["report"])[name] for r in ours]), 3)
            for name in _critical_path(ours[0]["report"])}
    common = {
        "dataset": data.summary(),
        "repository": f"file:// directory on the same device as the server's data directory ({same_disk})",
        "rounds": rounds,
        "warmup_runs": 1,
        "pgwarden_wall_runs_s": [r["wall_s"] for r in ours],
        "brief_wall_runs_s": [r["wall_s"] for r in brief],
        "basebackup_wall_runs_s": [r["wall_s"] for r in base],
        "pgwarden_cpu_s_median": median([r["cpu_s"] for r in ours]),
        "brief_cpu_s_median": median([r["cpu_s"] for r in brief]),
        "basebackup_cpu_s_median": median([r["cpu_s"] for r in base]),
        "pgwarden_phase_s_median": phases,
        "pgwarden_critical_path_s_median": path,
        "pgwarden_import_s_median": median([r["report"]["import_s"] for r in ours]),
        "pgwarden_compression": last["compression"],
        "pgwarden_verification": last["verification"],
        "pgwarden_stored_bytes": stored,
        "pgwarden_stored_files": last["files"],
        "basebackup_raw_bytes": raw_bytes,
        "brief_stored_bytes": median([r["stored_bytes"] for r in brief]),
        "pgwarden_compression_ratio": round(raw_bytes / stored, 3),
        "base_tar_gzip_ratio": round(ratio, 3),
        "base_tar_gzip_bytes": gz_bytes,
        "throughput_mb_s": {
            "pgwarden": round(data.database_bytes / 1e6 / wall, 1),
            "brief": round(data.database_bytes / 1e6 / brief_wall, 1),
            "basebackup": round(data.database_bytes / 1e6 / base_wall, 1),
            "basis": "database size (pg_database_size of shopdb) / wall time",
        },
        "peak_tree_rss_mib": {
            "pgwarden": round(peak_rss / MIB, 1),
            "brief": round(max(r["tree_rss_bytes"] for r in brief) / MIB, 1),
            "basebackup": round(max(r["tree_rss_bytes"] for r in base) / MIB, 1),
        },
        "pgwarden_s3_moto": s3_run,
        "pgwarden_log_last_run": ours[-1]["report"]["log"],
    }
    size = f"{data.database_bytes / 2**30:.2f} GiB"
    return [
        Result(
            name="backup_full.wall_vs_brief", value=wall, unit="s",
            baseline_name="brief's pg_dump -Fc + gzip + cp", baseline_value=brief_wall,
            target=TARGET_VS_BRIEF, target_kind="ratio_max",
            description=(
                f"Full backup of a {size} generated shop database (gzip ratio {ratio:.1f}×) into a file:// "
                f"repository on the same disk: pgwarden's `take_full_backup` (zstd, verified, uploaded) "
                f"vs the brief's `pg_dump -Fc; gzip; cp`; median of {rounds}."
            ),
            extra=common,
        ),
        Result(
            name="backup_full.wall_vs_basebackup", value=wall, unit="s",
            baseline_name="raw pg_basebackup -Ft -X stream -c fast", baseline_value=base_wall,
            target=TARGET_VS_BASEBACKUP, target_kind="ratio_max",
            description=(
                f"Same pgwarden runs vs the limit: raw `pg_basebackup -Ft -X stream -c fast` of the same "
                f"server (no compression, verification or upload); median of {rounds}. "
                f"pgwarden's wall time (median s): "
                + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in path.items())
                + "; steps inside it (some side by side): "
                + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v >= 0.05) + "."
            ),
            extra={"pgwarden_critical_path_s_median": path, "pgwarden_phase_s_median": phases,
                   "see": "backup_full.wall_vs_brief extra"},
        ),
        Result(
            name="backup_full.peak_rss", value=peak_rss / 1e6, unit="MB",
            baseline_name="raw pg_basebackup", baseline_value=max(r["tree_rss_bytes"] for r in base) / 1e6,
            target=TARGET_RSS_MB, target_kind="value_max",
            description=(
                "Peak summed RSS of pgwarden's backup process tree (python + pg_basebackup + zstd), "
                "sampled from /proc every 50 ms, max over the measured runs."
            ),
            extra={"peak_tree_rss_mib": common["peak_tree_rss_mib"],
                   "pgwarden_maxrss_single_process_mib": round(max(r["maxrss_bytes"] for r in ours) / MIB, 1)},
        ),
    ]
