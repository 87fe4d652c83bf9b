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
