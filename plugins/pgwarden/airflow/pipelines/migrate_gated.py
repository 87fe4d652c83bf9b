"""``<database>.migrate.<NNN_name>``: one gated DAG per expand/contract migration file (``NNN_name.yaml``).

plan → rehearse → restore_point → expand → backfill → consistency → gate_switch_reads → readiness → gate_contract
→ safety_net → contract → record; "Roll back" (or a gate's timeout) at either gate runs that gate's
rollback task instead. The DAG is built from the file's name and operations (a plain read of the
migrations folder at parse time, no database).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from pgwarden.airflow.operators.migrate_gated import (
    BODY_KEY,
    REHEARSAL_TASK,
    ConsistencySensor,
    GatedPhaseOperator,
    MigrationGateOperator,
    ReadinessSensor,
)
from pgwarden.airflow.operators.rehearsal import RehearseMigrationOperator
from pgwarden.airflow.pipelines.common import pgwarden_dag
from pgwarden.core.config import DatabaseConfig, Defaults
from pgwarden.core.migrations.file import FILE_NAME
from pgwarden.core.migrations.gates import (
    APPROVE,
    CONTRACT_GATE,
    ROLL_BACK,
    ROLLBACK_DOC,
    SWITCH_GATE,
    dag_doc,
)
from pgwarden.core.migrations.spec import SpecError, parse_spec

TASK_DOCS = {
    "plan": "Checks the file against `pgwarden.schema_history` (an edited file is refused), plans every phase "
            "against the catalog, type-checks the expressions and lints the SQL (squawk). Changes nothing.",
    "rehearse": "When the run rehearses (Param `rehearse`, else `rehearse:` in the file): restores the newest "
                "backup into a scratch server and runs the whole migration and its rollbacks there; a failure fails "
                "the run before production is touched. Its figures open the switch-reads gate's body.",
    "restore_point": "A named restore point before expand (in the WAL and the repository): the PITR target of "
                     "the moment before the migration; it claims the tables in `schema_history`.",
    "expand": "Adds the new columns/indexes/constraints and the triggers keeping old and new in step. Old and "
              "new application versions both work afterwards.",
    "backfill": "Copies existing rows into the new columns in small batches (resumes from its checkpoint).",
    "consistency": "Waits (reschedule mode) until no row's new column differs from what the old one implies.",
    "readiness": "Waits until no statement touches the old column any more (pg_stat_statements), or a soak time.",
    "safety_net": "A restore point plus a WAL collection (or a full backup, by config) right before contract.",
    "contract": "The irreversible step: drops the old columns and the triggers. Only the new application "
                "version may run now.",
    "record": "Marks the migration applied and returns the phase timeline and the approvals.",
}


def _approvers(names: list[str]) -> list[dict[str, str]] | None:
    # Airflow's simple auth manager identifies a user by name; FAB by a numeric id (write that id here).
    return [{"id": name, "name": name} for name in names] or None


def migration_files(db_config: DatabaseConfig) -> list[Path]:
    folder = Path(db_config.migrations.path or "")
    if not db_config.migrations.path or not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.yaml") if (m := FILE_NAME.match(p.name)) and m["suffix"] == ".yaml")


def build_one(database: str, db_config: DatabaseConfig, defaults: Defaults, path: Path) -> DAG:
    label = path.name.removesuffix(".yaml")
    gates = db_config.migrations.gates
    approvers = gates.approvers_for(label)
    dag_id = f"{database}.migrate.{label}"
    try:
        spec = parse_spec(path.read_text(encoding="utf-8"), path.name)
        doc = dag_doc(dag_id=dag_id, database=database, file=path.name, spec=spec, approvers=approvers,
                      switch_timeout=gates.switch_timeout, contract_timeout=gates.contract_timeout,
                      safety_net=gates.safety_net)
    except (OSError, UnicodeDecodeError, SpecError) as exc:
        # Still a DAG, so the problem is seen where the migration is run; its plan task fails naming it.
        doc = (f"### {dag_id}\n\n**What it does.** Nothing yet: **this migration file cannot be read:** {exc}\n\n"
               f"**What it touches.** Nothing until the file is fixed.\n\n**Run it by hand.** Fix the file first; "
               f"the DAG is rebuilt from it.\n\n**When it fails.** `plan` fails naming the file and the problem.")
    with pgwarden_dag(
        database=database, concern=f"migrate.{label}", db_config=db_config, defaults=defaults, schedule=None,
        description=f"Gated expand/contract migration {label} of {database}", doc_md=doc,
        params={"rehearse": Param(None, type=["null", "boolean"],
                                  description="rehearse on a restored copy first (empty: as the file says)")},
    ) as dag:
        common = {"database": database, "db_config": db_config, "migration": label}

        def phase(task_id: str, **kwargs) -> GatedPhaseOperator:
            return GatedPhaseOperator(task_id=task_id, phase=kwargs.pop("phase", task_id),
                                      doc_md=kwargs.pop("doc_md", TASK_DOCS.get(task_id)), **common, **kwargs)

        def gate(task_id: str, subject: str, body_from: str, on_approve: str, rollback: str,
                 timeout: timedelta, doc: str) -> MigrationGateOperator:
            return MigrationGateOperator(
                task_id=task_id, subject=subject, options=[APPROVE, ROLL_BACK], defaults=[ROLL_BACK],
                options_mapping={APPROVE: on_approve, ROLL_BACK: rollback},
                body=f"{{{{ ti.xcom_pull(task_ids='{body_from}', key='{BODY_KEY}') }}}}",
                assigned_users=_approvers(approvers), response_timeout=timeout, doc_md=doc, retries=0, **common)

        sensor = {"poke_interval": gates.poke_interval.total_seconds(), "timeout": 7 * 24 * 3600.0}
        plan = phase("plan")
        rehearse = RehearseMigrationOperator(task_id=REHEARSAL_TASK, migration_path=path, doc_md=TASK_DOCS["rehearse"],
                                             database=database, db_config=db_config)
        point = phase("restore_point")
        expand = phase("expand")
        backfill = phase("backfill")
        consistency = ConsistencySensor(task_id="consistency", doc_md=TASK_DOCS["consistency"], **sensor, **common)
        switch = gate(SWITCH_GATE, f"{label}: switch reads to the new column?", "consistency", "readiness",
                      "rollback_at_switch", gates.switch_timeout,
                      "Approve when the figures look right and the application may read the new column; "
                      "Roll back (also on timeout) undoes expand.")
        readiness = ReadinessSensor(task_id="readiness", doc_md=TASK_DOCS["readiness"], **sensor, **common)
        contract_gate = gate(CONTRACT_GATE, f"{label}: contract (drop the old column for good)?", "readiness",
                             "safety_net", "rollback_at_contract", gates.contract_timeout,
                             "Approve only when no old application version runs; Roll back (also on timeout, "
                             "never contract) undoes expand.")
        net = phase("safety_net")
        contract = phase("contract")
        record = phase("record")
        back_switch = phase("rollback_at_switch", phase="rollback", doc_md=ROLLBACK_DOC)
        back_contract = phase("rollback_at_contract", phase="rollback", doc_md=ROLLBACK_DOC)
        plan >> rehearse >> point >> expand >> backfill >> consistency >> switch >> [readiness, back_switch]
        readiness >> contract_gate >> [net, back_contract]
        net >> contract >> record
    return dag


def build(database: str, db_config: DatabaseConfig, defaults: Defaults) -> list[DAG]:
    return [build_one(database, db_config, defaults, path) for path in migration_files(db_config)]
