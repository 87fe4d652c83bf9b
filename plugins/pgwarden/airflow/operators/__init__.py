"""pgwarden's operators: each orchestrates engine calls and maps their errors onto Airflow's."""
