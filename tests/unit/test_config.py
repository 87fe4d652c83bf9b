"""The config model: what users write, and the precise messages they get when it is wrong."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from pgwarden.cli import main
from pgwarden.core.config import ConfigError, parse_config
from pgwarden.core.units import parse_duration, parse_size

GOOD = """
databases:
  appdb:
    conn_id: pg_app
    repository: {url: "s3://bucket/appdb", conn_id: aws_backups}
  other:
    conn_id: pg_other
    repository: {url: "file:///var/backups/pg"}
    backup: {retention: {daily: 7, monthly: 3, yearly: 1}}
"""


def issues_for(entry: str) -> list[str]:
    text = "databases:\n  appdb:\n" + textwrap.indent(textwrap.dedent(entry), "    ")
    return [str(i) for i in parse_config(text, "cfg.yaml").issues]


def test_good_config_has_defaults() -> None:
    config = parse_config(GOOD, "cfg.yaml")
    assert not config.broken
    app = config.databases["appdb"]
    assert app.backup.full_schedule == "0 2 * * *"
    assert (app.backup.retention.daily, app.backup.retention.monthly, app.backup.retention.yearly) == (30, 12, 7)
    assert config.databases["other"].backup.retention.daily == 7
    assert app.repository.sse == "AES256"


def test_unknown_key_is_named_with_its_path() -> None:
    problems = issues_for("""
        conn_id: pg
        repository: {url: "s3://b/p"}
        backup: {full_schedul: "0 2 * * *"}
    """)
    assert problems == ["cfg.yaml: databases.appdb.backup.full_schedul: unknown key; did you mean "
                        "`full_schedule`?"]


def test_unknown_key_suggests_the_nearest_key_of_its_own_section() -> None:
    problems = issues_for("""
        conn_id: pg
        repository: {url: "s3://b/p", conn_idd: aws}
        bakup: {}
        backup: {compresion: zstd, retention: {dayly: 7}}
        healthcheck: {standbys: [{conn_id: s, max_replay_lagg: 1m}]}
        verify: {xyzzy: 1}
    """)
    assert sorted(problems) == sorted([
        "cfg.yaml: databases.appdb.repository.conn_idd: unknown key; did you mean `conn_id`?",
        "cfg.yaml: databases.appdb.bakup: unknown key; did you mean `backup`?",
        "cfg.yaml: databases.appdb.backup.compresion: unknown key; did you mean `compression`?",
        "cfg.yaml: databases.appdb.backup.retention.dayly: unknown key; did you mean `daily`?",
        "cfg.yaml: databases.appdb.healthcheck.standbys.0.max_replay_lagg: unknown key; did you mean "
        "`max_replay_lag`?",
        # nothing close: say where the keys are documented
        "cfg.yaml: databases.appdb.verify.xyzzy: unknown key; check its spelling against the documented keys "
        "in README",
    ])


def test_missing_connection_id() -> None:
    assert issues_for('repository: {url: "s3://b/p"}') == [
        "cfg.yaml: databases.appdb.conn_id: required key is missing"]


def test_bad_cron_schedule() -> None:
    [problem] = issues_for("""
        conn_id: pg
        repository: {url: "s3://b/p"}
        backup: {full_schedule: "0 25 * * *"}
    """)
    assert problem.startswith("cfg.yaml: databases.appdb.backup.full_schedule: expected a 5-field cron")
    assert "'0 25 * * *'" in problem


def test_incremental_schedule_not_more_often_than_five_minutes() -> None:
    [problem] = issues_for("""
        conn_id: pg
        repository: {url: "s3://b/p"}
        backup: {incremental_schedule: "*/2 * * * *"}
    """)
    assert "shortest allowed interval is 0:05:00" in problem


def test_bad_duration() -> None:
    [problem] = issues_for("""
        conn_id: pg
        repository: {url: "s3://b/p"}
        healthcheck: {standbys: [{conn_id: standby1, max_replay_lag: "five minutes"}]}
    """)
    assert problem.startswith("cfg.yaml: databases.appdb.healthcheck.standbys.0.max_replay_lag: expected a duration")


def test_repository_url_with_unknown_scheme() -> None:
    [problem] = issues_for("""
        conn_id: pg
        repository: {url: "gs://bucket/x"}
    """)
    assert problem == ("cfg.yaml: databases.appdb.repository.url: unknown repository URL scheme 'gs' in "
                       "'gs://bucket/x': use s3://bucket/prefix or file:///absolute/path")


def test_relative_file_url_rejected() -> None:
    [problem] = issues_for("""
        conn_id: pg
        repository: {url: "file://backups"}
    """)
    assert "absolute path" in problem


def test_one_broken_database_does_not_hide_the_others() -> None:
    config = parse_config(GOOD + "  broken:\n    conn_id: x\n", "cfg.yaml")
    assert set(config.databases) == {"appdb", "other"}
    assert [str(i) for i in config.broken["broken"]] == ["cfg.yaml: databases.broken.repository: required key is missing"]


def test_invalid_database_name() -> None:
    config = parse_config("databases:\n  App-DB:\n    conn_id: x\n    repository: {url: 's3://b'}\n", "c.yaml")
    assert "App-DB" in config.broken and "lowercase" in str(config.broken["App-DB"][0])


def test_broken_yaml_and_unknown_top_level_key_break_the_whole_file() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("databases: [", "c.yaml")
    with pytest.raises(ConfigError, match="c.yaml: database: unknown top-level key"):
        parse_config("database: {}", "c.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1h30m", timedelta(minutes=90)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), (30, timedelta(seconds=30)),
])
def test_durations(text, expected) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("512MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1.5GiB", int(1.5 * 2**30)), (100, 100),
])
def test_sizes(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "5 minutes", "1x", "-5m"])
def test_bad_durations_raise(bad) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_cli_config_validate(tmp_path, capsys) -> None:
    path = tmp_path / "pgwarden.yaml"
    path.write_text(GOOD)
    assert main(["--config", str(path), "config", "validate"]) == 0
    assert "2 database(s), no errors" in capsys.readouterr().out

    path.write_text(GOOD + "  broken:\n    conn_id: x\n    repository: {url: 'ftp://h/p'}\n")
    assert main(["--config", str(path), "config", "validate"]) == 1
    err = capsys.readouterr().err
    assert f"{path}: databases.broken.repository.url: unknown repository URL scheme 'ftp'" in err
    assert "1 of 3 database entries has errors" in err

    path.write_text(GOOD.replace("conn_id: pg_other", "conn_id: pg_other\n    backup: {compresion: zstd}")
                    .replace("    backup: {retention", "    verify: {enabled: true}\n    bakup: {retention"))
    assert main(["--config", str(path), "config", "validate"]) == 1
    err = capsys.readouterr().err
    assert "databases.other.backup.compresion: unknown key; did you mean `compression`?" in err
    assert "databases.other.bakup: unknown key; did you mean `backup`?" in err
    assert "1 of 2 database entries has errors" in err


def test_cli_missing_file(tmp_path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.yaml"), "config", "validate"]) == 1
    assert "config file not found" in capsys.readouterr().err
