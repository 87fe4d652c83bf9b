"""pgwarden: a PostgreSQL database's lifecycle as Airflow pipelines.

Layers (imports point one way): ``airflow`` -> ``engine`` -> ``core``; ``cli`` -> ``engine`` -> ``core``.
``core`` is pure logic, ``engine`` does I/O without Airflow, ``airflow`` adapts both to Airflow (hooks,
operators, DAG builders, the plugin), and ``cli`` is the ``pgwarden`` command, which reaches Airflow
connections only through ``cli/connections.py``. docs/architecture.md describes each layer.
"""

__version__ = "0.1.0"
