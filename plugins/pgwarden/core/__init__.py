"""Pure logic: no I/O, no Airflow import. Everything here tests in milliseconds."""
