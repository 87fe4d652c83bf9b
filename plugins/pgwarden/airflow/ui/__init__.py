"""The pgwarden page in Airflow: a FastAPI app of the plugin (``/pgwarden/``, ``/pgwarden/api/status``)."""
