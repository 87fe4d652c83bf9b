"""core.recovery: recovery targets, the settings that reach them, and user input parsed into them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pgwarden.core.lsn import Lsn
from pgwarden.core.recovery import RecoveryTarget, parse_target, recovery_settings, render_auto_conf

RESTORE_COMMAND = "cp '/r/wal/%f' '%p'"


def test_each_target_kind_sets_only_its_own_recovery_target() -> None:
    moment = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)
    expected = {
        RecoveryTarget("time", time=moment): {"recovery_target_time": "2026-11-24T09:30:00+00:00"},
        RecoveryTarget("name", name="before_migration"): {"recovery_target_name": "before_migration"},
        RecoveryTarget("lsn", lsn=Lsn.parse("0/3000060")): {"recovery_target_lsn": "0/3000060"},
        RecoveryTarget("immediate"): {"recovery_target": "immediate"},
    }
    for target, own in expected.items():
        settings = recovery_settings(target, RESTORE_COMMAND, "promote")
        targets = {k: v for k, v in settings.items() if k.startswith("recovery_target")
                   and k not in ("recovery_target_timeline", "recovery_target_action", "recovery_target_inclusive")}
        assert targets == own, target
        assert settings["recovery_target_inclusive"] == "true"
    latest = recovery_settings(RecoveryTarget("latest"), RESTORE_COMMAND, "pause")
    assert not {"recovery_target_time", "recovery_target_name", "recovery_target_lsn", "recovery_target",
                "recovery_target_inclusive"} & set(latest)
    assert latest["recovery_target_action"] == "pause" and latest["recovery_target_timeline"] == "latest"


def test_a_restored_server_never_archives_or_streams_from_production() -> None:
    settings = recovery_settings(RecoveryTarget("latest"), RESTORE_COMMAND, "promote", timeline="3")
    assert settings["restore_command"] == RESTORE_COMMAND and settings["recovery_target_timeline"] == "3"
    assert settings["archive_mode"] == "off" and settings["archive_command"] == ""
    assert settings["primary_conninfo"] == "" and settings["primary_slot_name"] == ""


def test_auto_conf_doubles_single_quotes() -> None:
    text = render_auto_conf({"restore_command": RESTORE_COMMAND, "recovery_target_name": "it's"})
    lines = text.splitlines()
    assert lines[0].startswith("#") and text.endswith("\n")
    assert lines[1:] == ["restore_command = 'cp ''/r/wal/%f'' ''%p'''", "recovery_target_name = 'it''s'"]


def test_parse_target_reads_user_input() -> None:
    assert parse_target("latest", None) == RecoveryTarget("latest")
    assert parse_target("name", "  nightly ") == RecoveryTarget("name", name="nightly")
    assert parse_target("lsn", "0/3000060").lsn == Lsn.parse("0/3000060")
    moment = parse_target("time", "2026-11-24T09:30:00+01:00").time
    assert moment == datetime(2026, 11, 24, 8, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(("kind", "value", "says"), [
    ("yesterday", "x", "use latest, time, name or lsn"),
    ("name", "  ", "needs a target value"),
    ("lsn", "3000060", "not an LSN like 0/3000060"),
    ("time", "24.11.2026 09:30", "not ISO 8601"),
    ("time", "2026-11-24T09:30:00", "needs a time zone"),
])
def test_bad_target_input_says_what_a_good_one_looks_like(kind, value, says) -> None:
    with pytest.raises(ValueError, match=says):
        parse_target(kind, value)


def test_describe_names_the_target() -> None:
    assert RecoveryTarget("name", name="rp").describe() == "restore point 'rp'"
    assert RecoveryTarget("lsn", lsn=Lsn.parse("0/10")).describe() == "LSN 0/10"
    assert RecoveryTarget("immediate").describe() == "the end of the backup"
    assert RecoveryTarget("latest").describe() == "the newest WAL in the repository"
    assert RecoveryTarget("time", time=datetime(2026, 1, 2, tzinfo=timezone.utc)).describe() == \
        "time 2026-01-02T00:00:00+00:00"
