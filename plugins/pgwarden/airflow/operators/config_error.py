"""The task of a broken database entry's stand-in DAG: fail, saying what is wrong with the entry."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class ConfigErrorOperator(BaseOperator):
    """Fails every run with the entry's validation message (permanent: the retry policy fails it at once)."""

    ui_color = "#e05a4f"

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def execute(self, context: Any) -> None:
        from pgwarden.engine.errors import InvalidConfig

        raise InvalidConfig(self.message)
