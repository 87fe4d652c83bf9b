"""Answering Airflow's human-in-the-loop tasks of a ``dag.test()`` run from a background thread.

``dag.test()`` parks a HITL task in AWAITING_INPUT and waits for an answer recorded in the metadata
database. This writes it the way the api-server's HITL endpoint does (the response, then
``handle_event_submit``), or lets the response timeout pass the way the scheduler's sweep does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace


def _waiting(session, dag_id: str, task_id: str):
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    return session.scalar(select(TI).where(TI.dag_id == dag_id, TI.task_id == task_id,
                                           TI.state == TaskInstanceState.AWAITING_INPUT)
                          .options(joinedload(TI.hitl_detail)))


def respond(dag_id: str, task_id: str, option: str | None, user: dict | None = None) -> bool:
    """Answer ``task_id`` if it waits; ``option`` None lets its response timeout pass. True if answered."""
    from airflow._shared.timezones import timezone
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = _waiting(session, dag_id, task_id)
        if ti is None or ti.hitl_detail is None:
            return False
        if option is None:
            from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

            ti.trigger_timeout = timezone.utcnow() - timedelta(seconds=1)
            session.flush()
            SchedulerJobRunner.check_awaiting_input_timeouts(
                SimpleNamespace(log=logging.getLogger("hitl-timeout")), session=session)
            return True
        detail = ti.hitl_detail
        detail.responded_by = user or {"id": "release_owner", "name": "release_owner"}
        detail.responded_at = timezone.utcnow()
        detail.chosen_options = [option]
        detail.params_input = {}
        session.add(detail)
        handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
        return True


def _import_everything_first() -> None:
    """Import and configure in this thread what the answering thread uses: two threads importing Airflow's
    models at once (dag.test() and this one) deadlock on the import lock."""
    import airflow.jobs.scheduler_job_runner
    import airflow.models.trigger
    import airflow.triggers.base
    import airflow.utils.session  # noqa: F401
    from airflow.models import import_all_models
    from sqlalchemy.orm import configure_mappers

    import_all_models()
    configure_mappers()


def answer_in_background(dag_id: str, answers: dict[str, str | None], user: dict | None = None,
                         before: Callable[[str], None] | None = None) -> threading.Thread:
    """Answer each gate in ``answers`` (task_id -> option, None = time out) when it waits; ``before(task_id)``
    runs first (a test's check of the state at the gate)."""
    pending = dict(answers)
    _import_everything_first()

    def loop() -> None:
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                from airflow.utils.session import create_session

                with create_session() as session:
                    waiting = _waiting(session, dag_id, task_id) is not None
                if waiting:
                    if before:
                        before(task_id)
                    respond(dag_id, task_id, pending.pop(task_id), user)
            time.sleep(0.3)

    def guarded() -> None:
        try:
            loop()
        except BaseException:
            import traceback

            errors.append(traceback.format_exc())
            raise

    errors: list[str] = []
    thread = threading.Thread(target=guarded, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread
