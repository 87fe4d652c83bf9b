"""Benchmark scenarios: each public module exposes ``run(ctx) -> list[Result]``.

Modules whose names start with ``_`` are helpers (e.g. child-process scripts), not scenarios.
"""
