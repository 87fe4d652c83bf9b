"""The only module Airflow's plugin loader imports from this folder (``.airflowignore`` hides
``pgwarden/``, which Python imports as a package; loading its files one by one would register each
under its bare file name: ``config``, ``schedule``, ``errors``...)."""

from pgwarden.airflow.plugin import installed_as_entry_point

if not installed_as_entry_point():
    # Installed pgwarden registers the plugin through its entry point; registering it here too
    # would make Airflow report the second copy as a plugin import error.
    from pgwarden.airflow.plugin import PgwardenPlugin as PgwardenPlugin
