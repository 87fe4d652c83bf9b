"""pgwarden: a PostgreSQL database's lifecycle as Airflow pipelines.

Layers (imports point one way): ``airflow`` -> ``engine`` -> ``core``.
``core`` is pure logic, ``engine`` does I/O without Airflow, ``airflow`` adapts both to Airflow.
"""

__version__ = "0.1.0"
