"""The audit export's reads: Airflow's REST API (read-only user), the database's pgwarden tables (read-only
transaction) and the repository's ledger export and drill evidence. Joining and rendering: ``core.audit``.

The Airflow user needs read access only (the simple auth manager's ``viewer`` role, or FAB's ``Viewer``);
its name and password come from the environment (``PGWARDEN_AIRFLOW_USER``, ``PGWARDEN_AIRFLOW_PASSWORD``),
never argv. It logs in like any API client: ``POST /auth/token`` returns a JWT sent as a bearer token.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgwarden.core import layout
from pgwarden.core.audit import AuditReport, build_report
from pgwarden.core.drill import DrillEvidence
from pgwarden.engine.errors import PermanentError, TransientError

USER_ENV = "PGWARDEN_AIRFLOW_USER"
PASSWORD_ENV = "PGWARDEN_AIRFLOW_PASSWORD"
URL_ENV = "PGWARDEN_AIRFLOW_URL"
PAGE = 100

Log = Callable[[str], None]


@dataclass
class AirflowReader:
    """GET-only client of Airflow 3's ``/api/v2`` with a JWT from ``/auth/token``."""

    base_url: str
    username: str
    password: str
    timeout: float = 30
    _token: str | None = None

    @classmethod
    def from_env(cls, url: str | None) -> AirflowReader:
        url = url or os.environ.get(URL_ENV)
        user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        if not url:
            raise PermanentError(f"no Airflow URL: pass --airflow-url or set {URL_ENV}")
        if not user or not password:
            raise PermanentError(f"set {USER_ENV} and {PASSWORD_ENV} to a read-only Airflow user's name and "
                                 "password (environment only: never on the command line)")
        return cls(url.rstrip("/"), user, password)

    def _call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and auth and self._token is not None:
                self._token = None  # expired: log in again once
                return self._call(method, path, body, auth)
            kind = TransientError if exc.code >= 500 else PermanentError
            raise kind(f"Airflow API {method} {path.split('?')[0]} -> HTTP {exc.code}"
                       + (" (check the user's name, password and read permission)" if exc.code in (401, 403) else "")
                       ) from None
        except OSError as exc:
            raise TransientError(f"Airflow API at {self.base_url} unreachable ({type(exc).__name__})") from None

    def token(self) -> str:
        if self._token is None:
            answer = self._call("POST", "/auth/token", {"username": self.username, "password": self.password},
                                auth=False)
            self._token = answer["access_token"]
        return self._token

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._call("GET", f"/api/v2{path}" + (f"?{query}" if query else ""))

    def pages(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.get(path, limit=PAGE, offset=len(found), **params)
            found.extend(page[key])
            if not page[key] or len(found) >= page["total_entries"]:
                return found


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def read_airflow(api: AirflowReader, database: str, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """Runs, task instances, HITL gates and the event log of the database's DAGs (ids ``<database>.*``)."""
    prefix = f"{database}."
    since_text = since.isoformat()
    dag_ids = [d["dag_id"] for d in api.pages("/dags", "dags", dag_id_pattern=prefix)
               if d["dag_id"].startswith(prefix)]
    runs, task_instances, gates = [], [], []
    for dag_id in dag_ids:
        dag_runs = api.pages(f"/dags/{_q(dag_id)}/dagRuns", "dag_runs", run_after_gte=since_text)
        runs.extend(dag_runs)
        for run in dag_runs:
            task_instances.extend(api.pages(f"/dags/{_q(dag_id)}/dagRuns/{_q(run['dag_run_id'])}/taskInstances",
                                            "task_instances"))
        gates.extend(api.pages(f"/dags/{_q(dag_id)}/dagRuns/~/hitlDetails", "hitl_details",
                               created_at_gte=since_text))
    event_log = api.pages("/eventLogs", "event_logs", dag_id_prefix_pattern=prefix, after=since_text)
    return {"runs": runs, "task_instances": task_instances, "gates": gates, "event_log": event_log,
            "dag_ids": dag_ids}


def read_history_with_approvals(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """``pgwarden.schema_history`` with its phase timeline and gate approvals; empty when it does not exist."""
    if not conn.execute("SELECT to_regclass('pgwarden.schema_history') IS NOT NULL").fetchone()[0]:
        return []
    rows = conn.execute("SELECT version, name, kind, checksum, status, phases, approvals "
                        "FROM pgwarden.schema_history ORDER BY version").fetchall()
    return [{"version": v, "name": n, "kind": k, "checksum": c, "status": s, "phases": p or [], "approvals": a or []}
            for v, n, k, c, s, p, a in rows]


def read_drills(repo, database: str, since: datetime, log: Log) -> list[DrillEvidence]:
    drills = []
    for info in repo.list(f"{database}/drills/"):
        if info.key.endswith(".json") and (info.modified is None or info.modified >= since):
            try:
                drills.append(DrillEvidence.model_validate_json(repo.get_bytes(info.key)))
            except ValueError:
                log(f"skipped {repo.uri(info.key)}: not drill evidence of this pgwarden version")
    return drills


def collect(api: AirflowReader, conn: psycopg.Connection | None, repo, database: str, since: datetime,
            log: Log = lambda _: None) -> AuditReport:
    """Everything the export holds; a part that cannot be read is named in the report's notes."""
    from pgwarden.engine.lifecycle.ledger import ledger_exists, read_entries
    from pgwarden.engine.lifecycle.ledger_export import read_export

    notes: list[str] = []
    airflow = read_airflow(api, database, since)
    log(f"Airflow: {len(airflow['dag_ids'])} DAGs, {len(airflow['runs'])} runs, "
        f"{len(airflow['task_instances'])} task instances, {len(airflow['gates'])} gates, "
        f"{len(airflow['event_log'])} event log entries")
    ledger, history, head = [], [], None
    if conn is not None:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            if ledger_exists(conn):
                ledger, problem = read_entries(conn)
                if problem is not None:
                    notes.append(f"erasure ledger: {problem.describe()} (run `pgwarden ledger verify {database}`)")
            history = read_history_with_approvals(conn)
    else:
        notes.append("database not read: ledger and schema_history missing from this export")
    if repo is not None:
        exported = read_export(repo, database)
        if exported.head is not None:
            head = {"seq": exported.head[0], "entry_hash": exported.head[1], "exported_entries": len(exported.entries),
                    "where": repo.uri(layout.ledger_head_key(database))}
        if not ledger and exported.entries:
            ledger = [e.entry() for e in exported.entries]
            notes.append("ledger entries read from the repository's export")
        drills = read_drills(repo, database, since, log)
    else:
        drills = []
    return build_report(database, since, api.base_url, ledger_head=head, history=history, drills=drills,
                        ledger=ledger, notes=notes, runs=airflow["runs"], task_instances=airflow["task_instances"],
                        gates=airflow["gates"], event_log=airflow["event_log"])
