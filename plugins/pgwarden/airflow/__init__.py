"""Airflow adapters: hooks (connections -> engine settings), operators, the DAG factory, the plugin.

This package is named ``pgwarden.airflow``; absolute imports (``from airflow.sdk import ...``)
still reach Apache Airflow.
"""
