"""pgwarden's Airflow plugin: the one object Airflow's plugin manager registers for pgwarden.

It serves the pgwarden page (``airflow/ui``): a FastAPI app mounted at ``/pgwarden`` and a "pgwarden"
entry in Airflow's navigation that shows it (an external view with a ``url_route``: Airflow's UI embeds
the page at ``/plugin/pgwarden``). Airflow finds it through ``plugins/pgwarden_plugin.py`` when the project's
``plugins/`` folder is Airflow's plugins folder, or through the ``airflow.plugins`` entry point
when pgwarden is installed as a package; ``pgwarden_plugin.py`` steps aside when the entry point
exists so the plugin is registered once.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from pgwarden.airflow.ui.app import create_app

ENTRY_POINT = "pgwarden.airflow.plugin:PgwardenPlugin"


class PgwardenPlugin(AirflowPlugin):
    name = "pgwarden"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/pgwarden", "name": "pgwarden"}]
    external_views = [{"name": "pgwarden", "href": "/pgwarden/", "destination": "nav", "category": "browse",
                       "url_route": "pgwarden"}]


def installed_as_entry_point() -> bool:
    """Whether an installed distribution registers this plugin under ``airflow.plugins``."""
    from importlib.metadata import entry_points

    return any(ep.value == ENTRY_POINT for ep in entry_points(group="airflow.plugins"))
