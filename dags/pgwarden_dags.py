"""pgwarden's Airflow DAGs: one DAG per database and concern, built from include/pgwarden.yaml.

Thin on purpose: all logic lives in the pgwarden package (plugins/pgwarden). A broken database
entry gets a failing ``<database>.config_error`` DAG here and an import error from
pgwarden_config_errors.py; it does not stop the other databases' DAGs.
"""

from pgwarden.airflow.dag_factory import build_dags

globals().update(build_dags())
