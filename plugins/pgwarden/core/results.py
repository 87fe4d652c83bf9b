"""The contract of what a task hands back: one shape for XCom, one line for the log.

Every engine result an operator returns (WAL collection, off-site copy, prune, restore, restore
plan, drill evidence, WAL chain report) implements it; operators push ``to_json_dict()`` and nothing else, so what a
downstream task or the CLI's ``--json`` reads is the same document.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TaskResult(Protocol):
    def to_json_dict(self) -> dict[str, Any]:
        """Positions, ids, counts, sizes and durations only: JSON-safe, no row data, no secrets."""
        ...

    def summary(self) -> str:
        """One log line saying what happened."""
        ...
