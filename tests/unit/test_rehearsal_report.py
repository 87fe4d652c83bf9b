"""The rehearsal report's contract, the gate's Markdown and the choice to rehearse: pure, in milliseconds."""

from __future__ import annotations

from types import SimpleNamespace

from pgwarden.core.migrations.rehearsal import (
    NOT_REHEARSED,
    RehearsalReport,
    RollbackCheck,
    rehearsal_markdown,
    should_rehearse,
)
from pgwarden.core.results import TaskResult


def passed_report() -> RehearsalReport:
    return RehearsalReport(
        database="appdb", migration="002_rename_email.yaml", backup_id="20261130T220000Z",
        restore_target="the newest WAL in the repository",
        phases={"restore": 4.2, "expand": 0.31, "backfill": 12.5, "consistency": 0.4, "contract": 0.2},
        lock_retries=2, lock_wait_seconds=0.5, backfill_rows=250_000, backfill_rows_per_second=20_000.0,
        inconsistent_rows=0,
        rollback_checks=[RollbackCheck("after expand", True, "schema of 1 table(s) identical to before"),
                         RollbackCheck("after backfill", True, "schema of 1 table(s) identical to before")],
        scratch_removed=True)


def test_a_complete_rehearsal_passes_and_its_markdown_lists_every_figure() -> None:
    report = passed_report()
    assert isinstance(report, TaskResult) and report.passed
    assert report.summary().startswith("rehearsal of 002_rename_email.yaml on a restored copy of appdb PASSED")
    body = rehearsal_markdown(report.to_json_dict())
    assert body.startswith("### Rehearsal on a restored copy: passed")
    rows = [line for line in body.splitlines() if line.startswith("| ") and "phase" not in line]
    assert rows == ["| restore | 4.2s |", "| expand | 0.3s |", "| backfill | 12.5s |", "| consistency | 0.4s |",
                    "| contract | 0.2s |"]
    assert "2 lock-timeout retries, 0.5s waiting for locks" in body
    assert "250,000 rows at 20,000 rows/s" in body
    assert "**Rollback after backfill:** ok" in body and "Error" not in body


def test_an_error_or_a_failed_rollback_check_fails_and_shows_in_the_markdown() -> None:
    report = passed_report()
    report.rollback_checks[1] = RollbackCheck("after backfill", False, "schema dump differs from line 7 on")
    assert not report.passed
    assert "rollback after backfill: schema dump differs from line 7 on" in report.summary()
    assert "**Rollback after backfill:** **FAILED**" in rehearsal_markdown(report.to_json_dict())

    failed = RehearsalReport(database="appdb", migration="003_x.yaml", phases={"restore": 1.0, "expand": 0.1},
                             failed_phase="backfill", error="InvalidTextRepresentation (SQLSTATE 22P02): ...")
    assert not failed.passed
    assert failed.summary().startswith("rehearsal of 003_x.yaml on a restored copy of appdb FAILED: backfill: "
                                       "InvalidTextRepresentation")
    body = rehearsal_markdown(failed.to_json_dict())
    assert body.startswith("### Rehearsal on a restored copy: **FAILED**")
    assert "**Error in backfill:** InvalidTextRepresentation" in body and "n/a" in body
    # Without an error, a rehearsal that never contracted did not pass either.
    assert not RehearsalReport(database="a", migration="m").passed


def test_the_run_param_decides_when_given_else_the_file() -> None:
    on, off = SimpleNamespace(rehearse=True), SimpleNamespace(rehearse=False)
    assert should_rehearse(on, {}) and should_rehearse(on, {"rehearse": None}) and should_rehearse(on, None)
    assert not should_rehearse(off, {"rehearse": None})
    assert should_rehearse(off, {"rehearse": True}) and not should_rehearse(on, {"rehearse": False})
    assert NOT_REHEARSED.startswith("### Rehearsal: not run")


def test_error_text_elides_quoted_values_of_server_errors_and_keeps_our_own_messages() -> None:
    import psycopg

    from pgwarden.core.migrations.steps import PlanError
    from pgwarden.engine.errors import PermanentError
    from pgwarden.engine.migrations.rehearsal import error_text

    try:
        try:
            raise psycopg.errors.InvalidTextRepresentation('invalid input syntax for type bigint: "secret-42"')
        except psycopg.Error as exc:
            raise PermanentError(f"backfill: {exc}") from exc
    except PermanentError as exc:
        text = error_text(exc)
    assert "secret-42" not in text and text.startswith("InvalidTextRepresentation")
    try:
        try:
            raise psycopg.errors.UndefinedFunction("operator does not exist")
        except psycopg.Error:
            raise PlanError("004_x.yaml", 1, "change_column_type.up", "the server rejects it") from None
    except PlanError as exc:
        assert error_text(exc).startswith("004_x.yaml: operations[1].change_column_type.up")
