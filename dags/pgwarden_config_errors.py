"""Reports broken database entries of include/pgwarden.yaml as an Airflow DAG import error.

Kept apart from pgwarden_dags.py so that one broken database entry shows up as an import error
while every other database's DAGs still load. It defines no DAG.
"""

from pgwarden.airflow.dag_factory import raise_for_broken_databases

raise_for_broken_databases()
