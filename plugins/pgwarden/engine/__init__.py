"""I/O without Airflow: PostgreSQL sessions and tools, the backup repository, restore.

The CLI and the Airflow operators both call into this package.
"""
