"""Who sees which database on the pgwarden page, through Airflow's auth manager API in-process.

The e2e test (tests/e2e/test_pgwarden_page.py) covers anonymous and viewer requests against a real API
server. Per-DAG read permissions do not exist in the simple auth manager (roles, and teams in multi-team
mode), so a restricted user is tested here: an auth manager whose ``is_authorized_dag`` allows one team's
DAGs, asked through Airflow's own ``filter_authorized_dag_ids`` exactly as the page asks it.
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

from pgwarden.airflow.ui.access import readable_databases

KNOWN = {"appdb.backup_full", "appdb.ttl_purge", "shop.backup_full", "shop.verify_restore", "unrelated"}


class PerDagAuthManager(SimpleAuthManager):
    """The simple auth manager plus a per-user list of readable DAGs (as FAB or Keycloak would give)."""

    readable = {"carol": {"shop.backup_full", "shop.verify_restore", "appdb.backup_full"}}

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        allowed = self.readable.get(user.get_name())
        if allowed is None:
            return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        return method == "GET" and details is not None and details.id in allowed


def test_viewer_sees_every_database_a_user_without_role_none() -> None:
    manager = SimpleAuthManager()
    viewer = SimpleAuthManagerUser(username="bob", role="viewer")
    nobody = SimpleAuthManagerUser(username="eve", role=None)
    assert readable_databases(["appdb", "shop"], viewer, manager, KNOWN) == ["appdb", "shop"]
    assert readable_databases(["appdb", "shop"], nobody, manager, KNOWN) == []


def test_a_user_who_may_read_only_some_dags_sees_only_databases_whose_dags_are_all_readable() -> None:
    carol = SimpleAuthManagerUser(username="carol", role="viewer")
    # appdb.ttl_purge is not readable for carol: appdb stays hidden although its backup DAG is readable.
    assert readable_databases(["appdb", "shop"], carol, PerDagAuthManager(), KNOWN) == ["shop"]
