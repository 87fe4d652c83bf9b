"""The restore-point record: one named PITR target, as stored in ``<db>/restore_points/<name>.json``.

Every writer (WAL collection, the full backup's row-count snapshot) and reader (the catalog) goes
through :class:`RestorePoint`, so the record has one shape. Records written before the format was
named carry no ``format`` key; they read as version 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pgwarden.core.lsn import Lsn

FORMAT = "pgwarden.restore_point/1"


@dataclass(frozen=True)
class RestorePoint:
    """A named restore point pgwarden created; ``lsn`` is the end of its WAL record."""

    name: str
    lsn: Lsn
    created_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "lsn": str(self.lsn),
                "created_at": self.created_at.astimezone(timezone.utc).isoformat()}

    def to_json(self) -> bytes:
        return json.dumps(self.to_json_dict()).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> RestorePoint:
        """ValueError saying what is wrong for anything but a record this version understands."""
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        found = record.get("format", FORMAT)
        if found != FORMAT:
            raise ValueError(f"format {found!r} is not {FORMAT!r}, the one this version of pgwarden reads")
        missing = [key for key in ("name", "lsn", "created_at") if not isinstance(record.get(key), str)]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing or not text")
        created_at = datetime.fromisoformat(record["created_at"])
        if created_at.utcoffset() is None:
            raise ValueError(f"created_at {record['created_at']!r} has no time zone")
        return cls(record["name"], Lsn.parse(record["lsn"]), created_at)
