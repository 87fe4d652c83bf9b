"""Child process of the ``dag_parse`` scenario: time one DagBag fill in a fresh interpreter.

Usage: ``python _dagbag_child.py DAG_FOLDER REPORT.json [--pgwarden]``. Writes the import time of
``DagBag``, the fill time (wall and CPU) and what the bag holds to REPORT.json (stdout is left to Airflow's logs).
With ``--pgwarden``, after timing, it also records the dag_ids pgwarden's factory builds from the
same config, so the parent can check the bag holds every one of them.
"""

import json
import sys
import time


def main() -> int:
    folder, report = sys.argv[1], sys.argv[2]
    started = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    imported, cpu = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=folder)
    filled, cpu = time.perf_counter(), time.process_time() - cpu
    result = {
        "import_s": imported - started,
        "fill_s": filled - imported,
        "fill_cpu_s": cpu,  # this process's CPU time: what the fill costs when it does not wait for a shared core
        "dag_ids": sorted(bag.dags),
        "tasks": sum(len(dag.tasks) for dag in bag.dags.values()),
        "files": sorted(str(path) for path in bag.file_last_changed),
        "import_errors": {str(path): str(error) for path, error in bag.import_errors.items()},
    }
    if "--pgwarden" in sys.argv[3:]:
        from pgwarden.airflow.dag_factory import build_dags
        from pgwarden.engine.config_file import load_config

        config = load_config()
        result["expected_dag_ids"] = sorted(build_dags(config))
        result["config_source"] = config.source
        result["databases"] = sorted(config.databases)
        result["broken_databases"] = sorted(config.broken)
    with open(report, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
