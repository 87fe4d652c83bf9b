"""Erasure certificates for auditors: one ledger entry as a JSON document and a readable HTML page.

Everything on a certificate comes from the ledger entry (PII-free by construction), its place in the
verified chain, and the backup-expiry forecast; the page is self-contained (inline style, no script,
no external resource) and every value on it is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgwarden.core.lifecycle.backup_expiry import DataExpiry
from pgwarden.core.lifecycle.ledger import LedgerEntry, format_time

CERTIFICATE_FORMAT = 1


@dataclass(frozen=True)
class Certificate:
    """What one erasure (or re-apply) did, proven by its ledger entry and the chain it sits in."""

    database: str
    entry: LedgerEntry
    chain_head_seq: int
    chain_head_hash: str
    exported_through: int
    data_expiry: DataExpiry
    generated_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        record = self.entry.record
        return {
            "format": CERTIFICATE_FORMAT,
            "database": self.database,
            "kind": record.kind,
            "request_id": record.request_id,
            "subject_ref": record.subject_ref,
            "policy_version": record.policy_version,
            "erased_at": format_time(record.erased_at),
            "tables": [t.to_json_dict() for t in record.tables],
            "rows": record.rows,
            "airflow": {"dag_id": record.dag_id, "run_id": record.run_id, "task_id": record.task_id,
                        "try_number": record.try_number},
            "ledger": {"seq": self.entry.seq, "prev_hash": self.entry.prev_hash, "entry_hash": self.entry.entry_hash,
                       "chain_verified_through": self.chain_head_seq, "chain_head_hash": self.chain_head_hash,
                       "exported_through": self.exported_through},
            "backups": self.data_expiry.to_json_dict() | {"statement": self.data_expiry.sentence()},
            "generated_at": format_time(self.generated_at),
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_json_dict(), indent=2, sort_keys=True) + "\n").encode()

    def to_html(self) -> bytes:
        return render_html(self.to_json_dict()).encode()


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;
color:#1d2330;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #d6dae3}
.sub{color:#5a6272;margin-top:0}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e6e8ee;vertical-align:top}
th{width:14rem;color:#3b4252;font-weight:600}code{font-family:ui-monospace,monospace;font-size:.85rem;
word-break:break-all}.num{text-align:right}.note{background:#f4f6fa;padding:.7rem 1rem;border-left:4px solid #5b4b8a}
"""


def render_html(doc: dict[str, Any]) -> str:
    """The certificate as a page a person reads; built from the JSON document so both always agree."""
    e = html.escape

    def row(label: str, value: Any, code: bool = False) -> str:
        text = "—" if value is None else e(str(value))
        return f"<tr><th>{e(label)}</th><td>{f'<code>{text}</code>' if code else text}</td></tr>"

    ledger, airflow, backups = doc["ledger"], doc["airflow"], doc["backups"]
    title = "Erasure certificate" if doc["kind"] == "erasure" else "Re-applied erasure certificate"
    tables = "".join(
        f"<tr><td><code>{e(t['table'])}</code></td><td><code>{e(t['method'])}</code></td>"
        f"<td class=\"num\">{e(str(t['rows']))}</td></tr>" for t in doc["tables"])
    holding = ", ".join(backups["backups_holding_data"]) or "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · {e(doc['database'])} · {e(doc['request_id'])}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{e(title)}</h1>
<p class="sub">Database <strong>{e(doc['database'])}</strong> · ledger entry {e(str(ledger['seq']))} ·
generated {e(doc['generated_at'])}</p>
<h2>Request</h2>
<table>
{row('Request id', doc['request_id'], True)}
{row('Subject reference (HMAC-SHA256)', doc['subject_ref'], True)}
{row('Erased at (UTC)', doc['erased_at'])}
{row('Policy version', doc['policy_version'], True)}
{row('Rows changed in total', doc['rows'])}
</table>
<h2>What was erased</h2>
<table><tr><th>Table</th><th>Method</th><th class="num">Rows</th></tr>{tables}</table>
<h2>Run</h2>
<table>
{row('DAG', airflow['dag_id'], True)}
{row('Run', airflow['run_id'], True)}
{row('Task', airflow['task_id'], True)}
{row('Try', airflow['try_number'])}
</table>
<h2>Ledger proof</h2>
<table>
{row('Chain position', ledger['seq'])}
{row('Entry hash (SHA-256)', ledger['entry_hash'], True)}
{row('Previous entry hash', ledger['prev_hash'], True)}
{row('Chain verified through entry', ledger['chain_verified_through'])}
{row('Chain head hash', ledger['chain_head_hash'], True)}
{row('Exported to the repository through entry', ledger['exported_through'])}
</table>
<p>Check it: <code>pgwarden ledger verify {e(doc['database'])}</code> walks the chain in the database and
compares it with the copy exported to the backup repository.</p>
<h2>Backups</h2>
<p class="note">{e(backups['statement'])}</p>
<table>
{row('Forecast as of', backups['as_of'])}
{row('Backups holding the data', holding)}
{row('Last of them expires with the backup due', backups['expires_at'])}
</table>
<p>No personal data appears on this certificate: the subject is named only by its keyed reference.</p>
</body></html>
"""
