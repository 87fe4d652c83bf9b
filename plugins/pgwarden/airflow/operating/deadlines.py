"""Deadline alerts: a scheduled pgwarden run still going too long after its logical date is reported.

Airflow's ``DeadlineAlert`` (3.1+): the scheduler records each run's deadline when it creates the run,
and when a run is still not finished at that time, the triggerer runs the callback:
``notify.deadline_missed``, which sends through the same channels as a failure. The window comes from
``core.alerts.deadline_window`` (``deadlines`` in pgwarden.yaml, else a default per concern).
"""

from __future__ import annotations

import sys
from datetime import timedelta

from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from pgwarden.core.alerts import NotifyConfig

CALLBACK = "pgwarden.airflow.operating.notify.deadline_missed"


def deadline_alerts(dag_id: str, window: timedelta | None, notify: NotifyConfig) -> list[DeadlineAlert]:
    """The deadline of one DAG: ``window`` after each run's logical date (none when ``window`` is None).

    The callback is named by its dotted path, the form a serialized DAG carries to the triggerer.
    """
    if window is None:
        return []
    if "airflow.models.dagrun" in sys.modules:  # a process that can run dag.test(): see dag_test_fix
        from pgwarden.airflow.operating.dag_test_fix import accept_alert_definitions_in_get_by_id

        accept_alert_definitions_in_get_by_id()
    return [DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=window,
        callback=AsyncCallback(CALLBACK, kwargs={"notify": notify.model_dump(mode="json"),
                                                 "window_seconds": window.total_seconds()}),
        name=f"{dag_id} still running {window} after its logical date",
    )]
