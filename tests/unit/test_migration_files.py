"""Migration folder discovery, checksums and refusals (pure, no database)."""

from __future__ import annotations

from pgwarden.core.migrations.file import AppliedRecord, check_against_history, checksum, discover, pending
from pgwarden.core.migrations.statements import lock_for, split_statements

UP = b"ALTER TABLE users ADD COLUMN nickname text;\n"
DOWN = b"ALTER TABLE users DROP COLUMN nickname;\n"


def refusals_of(files: dict[str, bytes]) -> list[str]:
    return [str(r) for r in discover(files)[1]]


def test_a_good_folder_in_version_order():
    migrations, refusals = discover({
        "002_rename_email.yaml": b"operations: []\n", "001_nickname.sql": UP, "001_nickname.down.sql": DOWN,
        "README.md": b"notes", ".gitkeep": b""})
    assert refusals == []
    assert [(m.version, m.kind, m.label) for m in migrations] == [
        (1, "plain", "001_nickname"), (2, "expand_contract", "002_rename_email")]


def test_crlf_and_bom_are_not_a_change_but_trailing_space_is():
    assert checksum(UP) == checksum(UP.replace(b"\n", b"\r\n")) == checksum("\ufeff" + UP.decode())
    assert checksum(UP) != checksum(UP.replace(b";", b"; "))
    assert checksum(UP) != checksum(UP.rstrip(b"\n"))


def test_missing_down_file():
    assert refusals_of({"001_nickname.sql": UP}) == [
        "001_nickname.sql: has no down file; add 001_nickname.down.sql that undoes it "
        "(every plain migration needs its rollback)"]


def test_two_files_with_one_version():
    found = refusals_of({"001_a.sql": UP, "001_a.down.sql": DOWN, "001_b.sql": UP, "001_b.down.sql": DOWN})
    assert any(r.startswith("001_b.sql: has the same version 001 as 001_a.sql") for r in found)
    found = refusals_of({"001_a.sql": UP, "001_a.down.sql": DOWN, "001_b.yaml": b"[]"})
    assert any("001_b.yaml: has the same version 001 as 001_a.sql" in r for r in found)


def test_version_gap_names_the_missing_versions():
    found = refusals_of({"001_a.sql": UP, "001_a.down.sql": DOWN, "004_b.sql": UP, "004_b.down.sql": DOWN})
    assert found == ["004_b.down.sql: follows a gap: version(s) 002, 003 missing; renumber it (and the files "
                     "after it) so versions run 1, 2, 3, ... without gaps"]


def test_malformed_names_and_strays():
    found = refusals_of({"1_a.sql": UP, "001-a.sql": UP, "001_A.sql": UP, "001_a.sql": UP, "001_a.down.sql": DOWN})
    assert len(found) == 3 and all("is not a migration file name; rename it to NNN_name.sql" in r for r in found)
    assert refusals_of({"001_b.yaml": b"[]", "001_b.down.sql": DOWN}) == [
        "001_b.down.sql: is a down file for an expand/contract migration; remove it: 001_b.yaml's operations "
        "carry their own rollback"]
    assert refusals_of({"002_x.down.sql": DOWN, "001_a.sql": UP, "001_a.down.sql": DOWN}) == [
        "002_x.down.sql: is a down file without its migration; add 002_x.sql or remove it"]


def test_history_changed_removed_renamed_and_out_of_order():
    migrations, _ = discover({"001_a.sql": UP, "001_a.down.sql": DOWN, "002_b.sql": UP + b"--\n",
                              "002_b.down.sql": DOWN, "003_c.sql": UP, "003_c.down.sql": DOWN})
    applied = [AppliedRecord(1, "a", "plain", checksum(UP), "applied"),
               AppliedRecord(2, "b", "plain", checksum(UP), "applied"),
               AppliedRecord(4, "d", "plain", checksum(UP), "applied")]
    found = [str(r) for r in check_against_history(migrations, applied)]
    assert any(r.startswith("002_b.sql: changed after it was applied") for r in found)
    assert any(r.startswith("004_d: is applied to the database but its file is gone") for r in found)
    assert any(r.startswith("003_c.sql: is out of order: it is not applied but 004 already is") for r in found)
    renamed = [AppliedRecord(1, "old", "plain", checksum(UP), "applied")]
    assert "replaces the applied migration 001_old" in str(check_against_history(migrations[:1], renamed)[0])


def test_failed_plain_migration_is_pending_and_may_change_but_active_expand_contract_may_not():
    migrations, _ = discover({"001_a.sql": UP, "001_a.down.sql": DOWN, "002_b.yaml": b"[]"})
    history = [AppliedRecord(1, "a", "plain", "0" * 64, "failed"),
               AppliedRecord(2, "b", "expand_contract", "0" * 64, "running")]
    found = [str(r) for r in check_against_history(migrations, history)]
    assert len(found) == 2 and found[0].startswith("002_b.yaml: changed after it was applied")
    assert "out of order" in found[1]
    assert [m.version for m in pending(migrations, history)] == [1]


def test_statements_lines_and_locks():
    text = ("-- intro\nCREATE TABLE t (id bigint);\n/* ; */ ALTER TABLE t ADD COLUMN s text DEFAULT ';';\n"
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n"
            "CREATE INDEX CONCURRENTLY i ON t (s);\nALTER TABLE t VALIDATE CONSTRAINT c;\n")
    found = [(s.line, s.lock[0]) for s in split_statements(text)]
    assert found == [(2, "none"), (3, "ACCESS EXCLUSIVE"), (4, "none"), (5, "SHARE UPDATE EXCLUSIVE"),
                     (6, "SHARE UPDATE EXCLUSIVE")]
    assert lock_for("create index i on t (s)")[0] == "SHARE"
    assert lock_for("CREATE TABLE p (id bigint REFERENCES users (id))")[0] == "SHARE ROW EXCLUSIVE"
    assert lock_for("ALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES c")[0] == "SHARE ROW EXCLUSIVE"
    assert lock_for("LOCK TABLE a IN ROW EXCLUSIVE MODE")[0] == "ROW EXCLUSIVE"


def test_migrations_folder_is_read_beside_the_config_file():
    from pgwarden.core.config import parse_config

    text = ("databases:\n  a: {conn_id: c, repository: {url: 'file:///r'}}\n"
            "  b: {conn_id: c, repository: {url: 'file:///r'}, migrations: {path: db/b, lint_exclude: [x]}}\n"
            "  c: {conn_id: c, repository: {url: 'file:///r'}, migrations: {path: /srv/m}}\n"
            "  d: {conn_id: c, repository: {url: 'file:///r'}, migrations: {lock_timout: 1s}}\n")
    config = parse_config(text, "/etc/pgwarden/pgwarden.yaml")
    assert config.databases["a"].migrations.path == "/etc/pgwarden/sql/migrations/a"
    assert config.databases["b"].migrations.path == "/etc/pgwarden/db/b"
    assert config.databases["c"].migrations.path == "/srv/m"
    assert "databases.d.migrations.lock_timout: unknown key; did you mean `lock_timeout`?" in str(
        config.broken["d"][0])
