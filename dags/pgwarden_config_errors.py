"""Reports broken database entries of include/pgwarden.yaml as an Airflow DAG import error.

Kept apart from pgwarden_dags.py so that one broken database entry shows up as an import error
while every other database's DAGs still load. It defines no DAG: the entry's failing stand-in
``<database>.config_error`` (built with the others in pgwarden_dags.py) is what makes runs fail and
alerts fire; this import error is the badge on the DAG list that says which key to fix.
"""

from pgwarden.airflow.dag_factory import raise_for_broken_databases

raise_for_broken_databases()
