"""What every pgwarden DAG gets for running in production, through ``pipelines.common.pgwarden_dag`` and
``operators.base.PgwardenOperator``: the retry policy, failure notifications, deadline alerts and metrics.

A new pipeline built with ``pgwarden_dag`` and operators deriving from ``PgwardenOperator`` has all of it
without code of its own; an operator adds its metrics by overriding ``PgwardenOperator.metrics``.
"""
