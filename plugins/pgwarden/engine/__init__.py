"""I/O without Airflow: PostgreSQL sessions, tools and scratch servers, the backup repository, full
backups and WAL collection, the catalog read from a repository, retention and off-site copies, restore,
drills and the healthcheck's facts.

The CLI and the Airflow operators both call into this package; it never imports Airflow.
"""
