"""pgwarden's Airflow DAGs: one DAG per database and concern, built from include/pgwarden.yaml.

Thin on purpose: all logic lives in the pgwarden package (plugins/pgwarden). A broken database
entry is reported by pgwarden_config_errors.py and does not stop the other databases' DAGs.
"""

from pgwarden.airflow.dag_factory import build_dags

globals().update(build_dags())
