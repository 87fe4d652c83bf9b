"""squawk lint of migration SQL: the real squawk binary, no database needed."""

from __future__ import annotations

import pytest

from pgwarden.engine.migrations.lint import LintFailed, lint_sql, require_clean

UNSAFE = """-- add an index the blocking way
ALTER TABLE users ADD COLUMN nickname text;

CREATE INDEX users_nickname ON users (nickname);
"""


def test_unsafe_index_names_rule_file_and_line():
    findings = lint_sql(UNSAFE, "002_nickname.sql", assume_in_transaction=True)
    assert [(f.rule, f.source, f.line) for f in findings] == [
        ("require-concurrent-index-creation", "002_nickname.sql", 4)
    ]
    with pytest.raises(LintFailed) as failed:
        require_clean(findings)
    assert "002_nickname.sql:4: require-concurrent-index-creation" in str(failed.value)


def test_runner_safe_rules_are_excluded_and_configurable():
    plain = "ALTER TABLE users ADD COLUMN nickname text;\n"
    assert lint_sql(plain, "001.sql") == []
    rules = {f.rule for f in lint_sql(plain, "001.sql", excluded_rules=())}
    assert "require-lock-timeout" in rules


def test_squawk_ignore_comment_excuses_one_statement():
    text = UNSAFE.replace("CREATE INDEX", "-- squawk-ignore require-concurrent-index-creation\nCREATE INDEX")
    assert lint_sql(text, "002_nickname.sql", assume_in_transaction=True) == []


def test_syntax_error_is_a_finding():
    findings = lint_sql("SELEC 1 FROM;\n", "bad.sql")
    assert findings and findings[0].rule == "syntax-error" and findings[0].line == 1
