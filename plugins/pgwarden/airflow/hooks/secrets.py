"""The erasure HMAC key, from where the config says it lives: an Airflow connection's password or an
Airflow variable. Read inside a task or a CLI command only, handed on as bytes, never logged or returned.

The ``gdpr_erasure`` tasks, the restore tasks that re-apply erasures and ``pgwarden ledger reapply`` all
read it here, so the subject references they compute agree.
"""

from __future__ import annotations

import os
from typing import Any

from pgwarden.airflow.hooks.connection import get_connection
from pgwarden.engine.errors import PermanentError

MIN_KEY_LENGTH = 16


def erasure_key(source: Any) -> bytes:
    """``source`` is the config's ``lifecycle.erasure.hmac_key`` (``conn_id`` or ``variable``)."""
    if source.conn_id is not None:
        secret = get_connection(source.conn_id).password
        where = f"the password of Airflow connection {source.conn_id!r}"
    else:
        where = f"Airflow variable {source.variable!r}"
        # The environment first: outside a task (the CLI) there is no API server to ask.
        secret = os.environ.get(f"AIRFLOW_VAR_{source.variable.upper()}")
        if secret is None:
            from airflow.sdk import Variable

            try:
                secret = Variable.get(source.variable)
            except Exception as exc:  # Airflow's not-found type differs by context
                raise PermanentError(f"Airflow variable {source.variable!r} (the erasure HMAC key) is not defined: "
                                     f"add it in Admin > Variables, a secrets backend, or AIRFLOW_VAR_"
                                     f"{source.variable.upper()}") from exc
    if not secret or len(secret) < MIN_KEY_LENGTH:
        raise PermanentError(f"the erasure HMAC key ({where}) is missing or shorter than {MIN_KEY_LENGTH} characters; "
                             f"set a long random value there (and keep it: pseudonyms and ledger references "
                             f"depend on it)")
    return str(secret).encode()
