"""Lint migration SQL with squawk (``squawk-cli`` from PyPI, pinned in pyproject.toml).

Every plain migration, and all SQL the expand/contract planner generates, goes through
:func:`lint_sql` before it may run. A finding fails the plan with squawk's rule, its message, the file
and the line (1-based), e.g. ``003_orders_index.sql:4: require-concurrent-index-creation: ...``.

Rules our own runner makes safe are excluded by default (:data:`RUNNER_SAFE_RULES`):

* ``require-lock-timeout`` / ``require-statement-timeout``: pgwarden's runner sets ``lock_timeout``
  and ``statement_timeout`` on every session that runs a migration, so the file need not.
* ``prefer-robust-stmts``: a plain migration runs in one transaction and is recorded in
  ``pgwarden.schema_history`` in that same transaction, so it never runs half or twice; generated
  expand/contract SQL is guarded by catalog checks.

``transaction-nesting`` stays on: plain migrations are linted with ``--assume-in-transaction`` because the
runner wraps each one in a transaction (with its history row), so a ``BEGIN``/``COMMIT`` in the file would
break that atomicity and is refused.

More rules can be excluded per database (``migrations.lint_exclude`` in pgwarden.yaml), and one
statement can be excused in the file itself with squawk's own comment on the line before it:
``-- squawk-ignore require-concurrent-index-creation``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from pgwarden.engine.errors import PermanentError

SQUAWK_ENV = "PGWARDEN_SQUAWK"

RUNNER_SAFE_RULES: frozenset[str] = frozenset(
    {
        "require-lock-timeout",
        "require-statement-timeout",
        "prefer-robust-stmts",
    }
)

LINT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class LintFinding:
    """One squawk finding; ``line`` is 1-based, as an editor shows it."""

    rule: str
    message: str
    source: str
    line: int
    level: str
    help: str | None = None

    def __str__(self) -> str:
        hint = f" ({self.help})" if self.help else ""
        return f"{self.source}:{self.line}: {self.rule}: {self.message}{hint}"

    def to_json_dict(self) -> dict:
        return asdict(self)


class LintFailed(PermanentError):
    """Unsafe SQL: the message lists every finding with rule, file and line, and what to do."""

    def __init__(self, findings: Sequence[LintFinding]):
        self.findings = tuple(findings)
        lines = "\n".join(f"  {finding}" for finding in self.findings)
        super().__init__(
            f"squawk found {len(self.findings)} problem(s) in migration SQL:\n{lines}\n"
            "Rewrite the statement the online way squawk suggests (or use an expand/contract operation); "
            "if it is safe here, excuse it with `-- squawk-ignore <rule>` on the line before it or "
            "`migrations.lint_exclude` in pgwarden.yaml."
        )


@cache
def squawk_binary() -> str:
    """Path of the squawk executable: ``PGWARDEN_SQUAWK``, next to this Python, or on ``PATH``."""
    if os.environ.get(SQUAWK_ENV):
        return os.environ[SQUAWK_ENV]
    beside = Path(sys.executable).parent / "squawk"
    if beside.exists():
        return str(beside)
    on_path = shutil.which("squawk")
    if on_path:
        return on_path
    raise PermanentError(
        "squawk is not installed: install pgwarden with its dependencies (`squawk-cli` from PyPI) "
        f"or set {SQUAWK_ENV} to the squawk executable"
    )


def lint_sql(
    sql_text: str,
    source: str,
    *,
    excluded_rules: Iterable[str] = RUNNER_SAFE_RULES,
    assume_in_transaction: bool = False,
    pg_version: str | None = None,
) -> list[LintFinding]:
    """Run squawk on ``sql_text`` and return its findings (an empty list when it is clean).

    ``source`` names the file (or ``<migration> phase <n>`` for generated SQL) in every finding.
    ``assume_in_transaction`` tells squawk the runner wraps the SQL in a transaction (plain migrations).
    """
    argv = [squawk_binary(), "--reporter", "json", "--stdin-filepath", source]
    excluded = sorted(set(excluded_rules))
    if excluded:
        argv.append("--exclude=" + ",".join(excluded))
    if assume_in_transaction:
        argv.append("--assume-in-transaction")
    if pg_version:
        argv.append(f"--pg-version={pg_version}")
    try:
        done = subprocess.run(
            argv,
            input=sql_text,
            capture_output=True,
            text=True,
            timeout=LINT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PermanentError(f"could not run squawk ({argv[0]}) on {source}: {exc}") from exc
    # squawk exits 1 when it found something and prints the findings as JSON either way.
    try:
        raw = json.loads(done.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise PermanentError(
            f"squawk gave no JSON for {source} (exit {done.returncode}): {done.stderr.strip()[:500]}"
        ) from exc
    if done.returncode not in (0, 1) or not isinstance(raw, list):
        raise PermanentError(f"squawk failed on {source} (exit {done.returncode}): {done.stderr.strip()[:500]}")
    return [
        LintFinding(
            rule=item.get("rule_name") or "unknown",
            message=item.get("message") or "",
            source=source,
            line=int(item.get("line") or 0) + 1,
            level=(item.get("level") or "warning").lower(),
            help=item.get("help"),
        )
        for item in raw
    ]


def require_clean(findings: Sequence[LintFinding]) -> None:
    """Raise :class:`LintFailed` when there is any finding."""
    if findings:
        raise LintFailed(findings)


def lint_migration(migration, config, *, pg_version: str | None = None) -> list[LintFinding]:
    """Findings of a plain migration's up and down files (``migration``: core MigrationFile).

    ``config`` is the database's ``MigrationsConfig``: its ``lint_exclude`` adds to the runner-safe rules.
    Expand/contract migrations are linted on the SQL their operations generate, by the planner.
    """
    if migration.kind != "plain":
        return []
    excluded = RUNNER_SAFE_RULES | set(config.lint_exclude)
    findings = lint_sql(migration.up_text, migration.up_file, excluded_rules=excluded,
                        assume_in_transaction=True, pg_version=pg_version)
    if migration.down_text is not None:
        findings += lint_sql(migration.down_text, migration.down_file, excluded_rules=excluded,
                             assume_in_transaction=True, pg_version=pg_version)
    return findings
