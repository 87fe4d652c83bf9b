"""Recovery targets and the settings PostgreSQL needs to reach them. Pure logic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pgwarden.core.lsn import Lsn

TargetKind = Literal["latest", "time", "name", "lsn", "immediate"]
Action = Literal["promote", "pause", "shutdown"]


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops. ``latest`` replays every WAL segment in the repository."""

    kind: TargetKind
    time: datetime | None = None
    name: str | None = None
    lsn: Lsn | None = None

    def describe(self) -> str:
        if self.kind == "time":
            return f"time {self.time.isoformat() if self.time else '?'}"
        if self.kind == "name":
            return f"restore point {self.name!r}"
        if self.kind == "lsn":
            return f"LSN {self.lsn}"
        return "the end of the backup" if self.kind == "immediate" else "the newest WAL in the repository"


def recovery_settings(target: RecoveryTarget, restore_command: str, action: Action,
                      timeline: str = "latest") -> dict[str, str]:
    """postgresql.auto.conf lines for a restore that never archives into anybody's repository."""
    settings = {
        "restore_command": restore_command,
        "recovery_target_timeline": timeline,
        "recovery_target_action": action,
        # The restored server must not archive into the production repository, nor stream from it.
        "archive_mode": "off",
        "archive_command": "",
        "primary_conninfo": "",
        "primary_slot_name": "",
        "hot_standby": "on",
    }
    if target.kind == "time" and target.time is not None:
        settings["recovery_target_time"] = target.time.isoformat()
    elif target.kind == "name" and target.name is not None:
        settings["recovery_target_name"] = target.name
    elif target.kind == "lsn" and target.lsn is not None:
        settings["recovery_target_lsn"] = str(target.lsn)
    elif target.kind == "immediate":
        settings["recovery_target"] = "immediate"
    if target.kind != "latest":
        settings["recovery_target_inclusive"] = "true"
    return settings


def render_auto_conf(settings: dict[str, str]) -> str:
    """Lines in postgresql.auto.conf syntax; single quotes doubled as the file format wants."""
    lines = ["# pgwarden restore: recovery settings (later lines win over earlier ones)"]
    lines += [f"{key} = '{value.replace(chr(39), chr(39) * 2)}'" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def parse_target(kind: str, value: str | None) -> RecoveryTarget:
    """A target from user input (CLI flags, DAG params); ValueError says what a valid value looks like."""
    value = (value or "").strip()
    if kind == "latest":
        return RecoveryTarget("latest")
    if kind not in ("time", "name", "lsn"):
        raise ValueError(f"unknown target kind {kind!r}: use latest, time, name or lsn")
    if not value:
        raise ValueError(f"target kind {kind!r} needs a target value")
    if kind == "name":
        return RecoveryTarget("name", name=value)
    if kind == "lsn":
        try:
            return RecoveryTarget("lsn", lsn=Lsn.parse(value))
        except ValueError as exc:
            raise ValueError(f"target LSN {value!r} is not an LSN like 0/3000060") from exc
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"target time {value!r} is not ISO 8601, e.g. 2026-11-24T09:30:00+00:00") from exc
    if moment.tzinfo is None:
        raise ValueError(f"target time {value!r} needs a time zone, e.g. 2026-11-24T09:30:00+00:00")
    return RecoveryTarget("time", time=moment)
