"""pgwarden's Airflow plugin: the one object Airflow's plugin manager registers for pgwarden.

It only names pgwarden to Airflow for now (``airflow plugins`` lists it); views and macros join it
when they exist. Airflow finds it through ``plugins/pgwarden_plugin.py`` when the project's
``plugins/`` folder is Airflow's plugins folder, or through the ``airflow.plugins`` entry point
when pgwarden is installed as a package; ``pgwarden_plugin.py`` steps aside when the entry point
exists so the plugin is registered once.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

ENTRY_POINT = "pgwarden.airflow.plugin:PgwardenPlugin"


class PgwardenPlugin(AirflowPlugin):
    name = "pgwarden"


def installed_as_entry_point() -> bool:
    """Whether an installed distribution registers this plugin under ``airflow.plugins``."""
    from importlib.metadata import entry_points

    return any(ep.value == ENTRY_POINT for ep in entry_points(group="airflow.plugins"))
