"""pgwarden's benchmarks: ``make bench`` / ``python -m bench.run [scenario ...]``.

Add a scenario as a module in ``bench/scenarios/`` exposing ``run(ctx: Context) -> list[Result]``;
see ``bench/harness.py`` for ``Result``, ``Context`` (process measurement, clean Airflow
environments, throwaway PostgreSQL servers) and how time and memory are measured.
"""

from bench.harness import BenchmarkError, Context, Measurement, Result, median

__all__ = ["BenchmarkError", "Context", "Measurement", "Result", "median"]
