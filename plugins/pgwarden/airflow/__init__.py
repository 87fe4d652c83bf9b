"""Airflow adapters: ``hooks`` (connections -> engine settings), ``operators`` (one module per concern),
``pipelines`` (one DAG builder per concern), ``dag_factory`` (every builder for every configured
database) and ``plugin`` (the AirflowPlugin).

This package is named ``pgwarden.airflow``; absolute imports (``from airflow.sdk import ...``)
still reach Apache Airflow.
"""
