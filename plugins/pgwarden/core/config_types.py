"""The value types the config sections share: durations, sizes, cron schedules, connection ids, table names.

Each section module (core/config.py, core/lifecycle/config.py) builds its models from these, so a
duration or a table name is read the same way wherever it appears.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

from pgwarden.core.identifiers import QualifiedName, parse_column, quote
from pgwarden.core.schedule import validate_cron
from pgwarden.core.units import parse_duration, parse_size

CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")

# In JSON a duration is its seconds (a number parse_duration reads back), so a section survives a round
# trip, e.g. to a child process or a stored plan; pydantic's default ISO form (PT0.1S) would not.
Duration = Annotated[timedelta, BeforeValidator(parse_duration),
                     PlainSerializer(lambda delta: delta.total_seconds(), return_type=float, when_used="json")]
ByteSize = Annotated[int, BeforeValidator(parse_size)]


def _cron(value: Any) -> str:
    return validate_cron(str(value))


def _frequent_cron(value: Any) -> str:
    return validate_cron(str(value), min_interval=timedelta(minutes=5))


def _conn_id(value: Any) -> str:
    if not isinstance(value, str) or not CONN_ID.match(value):
        raise ValueError(f"expected an Airflow connection id (letters, digits, '_', '-', '.'), got {value!r}")
    return value


def _table(value: Any) -> QualifiedName:
    return value if isinstance(value, QualifiedName) else QualifiedName.parse(value)


# A table as written in SQL (core/identifiers.py has the rules); shown and stored as str(name).
TableName = Annotated[QualifiedName, PlainValidator(_table), PlainSerializer(str),
                      WithJsonSchema({"type": "string"})]
Cron = Annotated[str, BeforeValidator(_cron)]
# A column as written in SQL (``expires_at``, ``"e-mail"``); stored as the catalog name, shown quoted.
ColumnName = Annotated[str, BeforeValidator(parse_column), PlainSerializer(quote)]
FrequentCron = Annotated[str, BeforeValidator(_frequent_cron)]
ConnId = Annotated[str, BeforeValidator(_conn_id)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
