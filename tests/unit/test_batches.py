"""The batch runner's sizing and reporting rules (the database side is tested in tests/integration)."""

from __future__ import annotations

from datetime import timedelta

from pgwarden.engine.batches import BatchSettings, next_size, percentile, progress_line

SETTINGS = BatchSettings(time_budget=timedelta(milliseconds=100), min_size=10, max_size=1000)
LARGER = BatchSettings(time_budget=timedelta(milliseconds=100), max_size=10_000)


def test_batch_grows_towards_a_third_of_the_budget_shrinks_when_slow_within_bounds() -> None:
    assert next_size(100, timedelta(milliseconds=20), SETTINGS) == 175  # scaled by aim (35 ms) / took
    assert next_size(100, timedelta(milliseconds=1), SETTINGS) == 800  # at most 8x at once
    assert next_size(2000, timedelta(milliseconds=30), LARGER) == 2000  # near the aim: kept
    assert next_size(100, timedelta(milliseconds=90), SETTINGS) == 100  # over the aim, under the budget
    assert next_size(1000, timedelta(milliseconds=400), SETTINGS) == 87
    assert next_size(800, timedelta(milliseconds=1), SETTINGS) == 1000
    assert next_size(12, timedelta(seconds=10), SETTINGS) == 10


def test_a_small_batch_slowed_by_its_fixed_cost_still_grows() -> None:
    # 4 rows in 30 ms is the commit, not the rows: below the first batch's size, it doubles.
    assert next_size(4, timedelta(milliseconds=30), SETTINGS) == 10  # (8, raised to min_size)
    assert next_size(40, timedelta(milliseconds=30), SETTINGS) == 80


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50.0, 99.0, 0.0)


def test_progress_line_has_rate_share_of_estimate_and_eta() -> None:
    line = progress_line("purge public.sessions", 500, 10.0, 2000)
    assert "500 rows" in line and "50 rows/s" in line and "25% of ~2000" in line and "ETA 30.0s" in line
