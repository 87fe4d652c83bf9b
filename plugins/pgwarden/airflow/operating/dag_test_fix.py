"""A work-around for an Airflow bug that only ``dag.test()`` (and ``airflow dags test``) hits.

Airflow 3.3.2: ``dag.test()`` runs a DAG from an in-memory copy (serialized and read back) whose
``deadline`` still holds each DeadlineAlert's *definition*; only the copy written to the metadata DB has
the alerts' ids. When a run of a DAG with a deadline succeeds, ``DagRun.update_state`` looks its alerts
up by id to drop the deadlines no longer needed, and fails on the definition (``'dict' object has no
attribute 'hex'``). The scheduler runs DAGs from the DB copy and is not affected. Every scheduled
pgwarden DAG has a deadline alert, so here ``get_by_id`` given a definition answers with an unsaved alert
built from it: what the DB row holds, which is all ``update_state`` reads.

Applied by ``deadlines.deadline_alerts`` in processes that have Airflow's ORM models loaded (the
``airflow dags test`` CLI, the DAG processor, tests calling ``dag.test()``), never in a task's own
process. Only a call that failed before (a definition where an id belongs) behaves differently. Remove it
once Airflow's ``dag.test()`` reads the alerts of the DAG it serialized.
"""

from __future__ import annotations

from typing import Any


def accept_alert_definitions_in_get_by_id() -> None:
    from airflow.models.deadline_alert import DeadlineAlert

    original = DeadlineAlert.get_by_id
    if getattr(original, "pgwarden_workaround", False):
        return

    def get_by_id(deadline_alert_id: Any, *args: Any, **kwargs: Any) -> DeadlineAlert:
        if isinstance(deadline_alert_id, dict):
            data = deadline_alert_id.get("__var", deadline_alert_id)
            return DeadlineAlert(reference=data["reference"], interval=data["interval"],
                                 callback_def=data["callback"], serialized_dag_id=None)
        return original(deadline_alert_id, *args, **kwargs)

    get_by_id.pgwarden_workaround = True  # type: ignore[attr-defined]
    DeadlineAlert.get_by_id = get_by_id  # type: ignore[method-assign]
