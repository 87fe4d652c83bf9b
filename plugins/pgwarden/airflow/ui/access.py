"""Which databases a user may see on the pgwarden page: those whose DAGs they may all read.

A database's DAGs are the ones Airflow knows under ``<database>.`` (``appdb.backup_full``, ...). A user who
may read every one of them sees the database; a user missing any of them, or a database Airflow knows no
DAG of yet, sees nothing of it (the page shows backups, erasures and migrations of the whole database).
"""

from __future__ import annotations

from collections.abc import Iterable


def dags_of(database: str, known_dag_ids: Iterable[str]) -> set[str]:
    prefix = f"{database}."
    return {dag_id for dag_id in known_dag_ids if dag_id.startswith(prefix)}


def visible_databases(databases: Iterable[str], known_dag_ids: set[str], readable_dag_ids: set[str]) -> list[str]:
    visible = []
    for database in databases:
        dags = dags_of(database, known_dag_ids)
        if dags and dags <= readable_dag_ids:
            visible.append(database)
    return visible


def readable_databases(databases: list[str], user, auth_manager, known_dag_ids: set[str]) -> list[str]:
    """``visible_databases`` with the user's readable DAGs asked of Airflow's auth manager (one batch)."""
    mine = set().union(*(dags_of(d, known_dag_ids) for d in databases)) if databases else set()
    readable = auth_manager.filter_authorized_dag_ids(dag_ids=mine, user=user, method="GET") if mine else set()
    return visible_databases(databases, known_dag_ids, set(readable))
