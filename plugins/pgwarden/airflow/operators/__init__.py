"""pgwarden's operators, one module per concern: each orchestrates engine calls and maps their errors
onto Airflow's (``base.PgwardenOperator``). Engine imports happen inside ``run``, never at DAG parse."""
