"""The pgwarden page as HTML, rendered on the server from the status dicts (``core.status``).

Every value goes through ``html.escape``; the only markup not built here is the RTO chart, which
``core.status.rto_chart_svg`` draws from numbers and escaped titles. No script, no stylesheet or font from
elsewhere: the page is one self-contained document (Airflow shows it in its navigation's iframe).
"""

from __future__ import annotations

from html import escape
from typing import Any

from pgwarden.core.status import rto_chart_svg
from pgwarden.core.units import format_duration

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1f2933;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:0 0 8px} h3{font-size:13px;margin:10px 0 4px;
text-transform:uppercase;letter-spacing:.04em;color:#52606d}
.db{border:1px solid #d9e2ec;border-radius:6px;padding:12px 16px;margin:12px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:4px 24px}
table{border-collapse:collapse;font-size:13px} td,th{padding:2px 8px 2px 0;text-align:left;vertical-align:top}
.pill,code{white-space:nowrap} .grid>div{overflow-x:auto} .grid>.wide{grid-column:1/-1}
th{font-weight:600;color:#52606d} .muted{color:#7b8794;font-size:12px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.green{background:#e3f9e5;color:#0e5814} .amber{background:#fff3c4;color:#8d2b0b}
.red{background:#ffe3e3;color:#8a041a} .grey{background:#eef2f5;color:#52606d}
.unreachable{color:#8a041a;font-weight:600} code{font-size:12px}
.rto-chart .rto{stroke:#2680c2;stroke-width:1.5} .rto-chart .target{stroke:#cf1124;stroke-width:1}
.rto-chart .ok{fill:#2680c2} .rto-chart .over{fill:#cf1124}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _unreachable(part: Any) -> str | None:
    if isinstance(part, dict) and "unreachable" in part:
        return f'<p class="unreachable">unreachable: {_e(part["unreachable"])}</p>'
    return None


def _pill(colour: str, text: str) -> str:
    return f'<span class="pill {_e(colour)}">{_e(text)}</span>'


def _ok(ok: bool, text: str) -> str:
    return _pill("green" if ok else "red", text)


def _backups(part: dict[str, Any] | None) -> str:
    if part is None:
        return "<p class=muted>backups not configured</p>"
    if (u := _unreachable(part)) is not None:
        return u
    full, inc, rpo, kept = part["last_full"], part["last_incremental"], part["rpo"], part["kept"]
    rows = []
    if full:
        rows.append(f'<tr><th>last full</th><td data-field="last-full-id"><code>{_e(full["backup_id"])}</code></td>'
                    f'<td data-field="last-full-size" data-bytes="{_e(full["stored_bytes"])}">{_e(full["size"])}</td>'
                    f'<td>{_e(full["age"])} ago</td></tr>')
    else:
        rows.append("<tr><th>last full</th><td colspan=3>none yet</td></tr>")
    if inc:
        rows.append(f'<tr><th>last WAL</th><td data-field="last-wal"><code>{_e(inc["wal_file"])}</code></td>'
                    f'<td>{_e(inc["size"])}</td><td>{_e(inc["age"])} ago</td></tr>')
    else:
        rows.append("<tr><th>last WAL</th><td colspan=3>none yet</td></tr>")
    rows.append(f'<tr><th>RPO exposure</th><td colspan=3 data-field="rpo">{_pill(rpo["colour"], rpo["exposure"])} '
                f'target {_e(rpo["target"])}</td></tr>')
    classes = ", ".join(f"{_e(k)} {_e(v)}" for k, v in kept["by_class"].items()) or "none"
    rows.append(f'<tr><th>kept</th><td colspan=3 data-field="kept">{_e(kept["total"])} of {_e(kept["backups"])} '
                f'backups ({classes})</td></tr>')
    if part["problems"]:
        rows.append(f'<tr><th>problems</th><td colspan=3>{_pill("amber", str(part["problems"]))} '
                    f'(<code>pgwarden catalog</code> names them)</td></tr>')
    return f'<table>{"".join(rows)}</table><p class=muted>{_e(part["repository"])}</p>'


def _seconds(value: float | None) -> str:
    return "not measured" if value is None else format_duration(value)


def _drills(part: dict[str, Any] | None) -> str:
    if part is None:
        return ""
    if (u := _unreachable(part)) is not None:
        return u
    if not part["last"]:
        return "<p class=muted>no drill yet</p>"
    rows = ["<tr><th>drill</th><th>verdict</th><th>RTO</th><th>RPO</th></tr>"]
    for d in part["last"]:
        rows.append(
            f'<tr><td><code>{_e(d["drill_id"])}</code></td><td>{_ok(d["passed"], "passed" if d["passed"] else "failed")}'
            f'</td><td>{_ok(d["rto_ok"], _seconds(d["rto_seconds"]))} / {_e(_seconds(d["rto_target_seconds"]))}</td>'
            f'<td>{_ok(d["rpo_ok"], _seconds(d["rpo_seconds"]))} / {_e(_seconds(d["rpo_target_seconds"]))}</td></tr>')
    return f'<table>{"".join(rows)}</table>{rto_chart_svg(part["rto_chart"], part["rto_target_seconds"])}'


def _lifecycle(part: dict[str, Any] | None) -> str:
    if part is None:
        return "<p class=muted>no lifecycle policy</p>"
    out = []
    purged = part.get("purged")
    if purged is not None:
        if (u := _unreachable(purged)) is not None:
            out.append(u)
        else:
            days = " ".join(f'<span title="{_e(d["day"])}">{_e(d["day"][5:])}: {_e(d["rows"])}</span>'
                            for d in purged["per_day"][-7:])
            out.append(f'<p data-field="purged">rows purged, last {_e(purged["days"])} days: '
                       f'<b>{_e(purged["total"])}</b><br><span class=muted>{days or "none recorded"}</span></p>')
    archived = part.get("archived")
    if archived is not None:
        out.append(_unreachable(archived) or f'<p data-field="archived">archived: <b>{_e(archived["size"])}</b></p>')
    return "".join(out)


def _erasure(part: dict[str, Any] | None) -> str:
    if part is None:
        return "<p class=muted>no erasure policy</p>"
    if (u := _unreachable(part)) is not None:
        return u
    head = part["chain_head"]
    exported = part["exported_head"]
    behind = part["export_behind"]
    return (
        f'<table><tr><th>erased</th><td data-field="erased">{_e(part["erased"])}</td></tr>'
        f'<tr><th>in grace</th><td>{_e(part["in_grace"] if part["in_grace"] is not None else "-")}</td></tr>'
        f'<tr><th>legal hold</th><td>{_e(part["on_legal_hold"] if part["on_legal_hold"] is not None else "-")}</td></tr>'
        f'<tr><th>chain head</th><td><code>{_e(head["seq"])} {_e((head["hash"] or "")[:16])}</code></td></tr>'
        f'<tr><th>verified</th><td>{_e(part["verified_at"] or "never exported")}'
        f'{" " + _pill("amber", f"{behind} not exported") if exported is not None and behind > 0 else ""}'
        f"</td></tr></table>")


def _migrations(part: Any) -> str:
    if part is None:
        return ""
    if (u := _unreachable(part)) is not None:
        return u
    if not part:
        return "<p class=muted>no migration recorded</p>"
    rows = ["<tr><th>version</th><th>phase</th><th>status</th><th>gate</th><th>approved</th></tr>"]
    for m in part:
        gate = m["gate_waiting"]
        gate_text = (_pill("amber", f'{gate["gate"]} waiting') + f' after {_e(gate["after_phase"])} since '
                     f'<span data-field="gate-since">{_e(gate["since"])}</span>') if gate else ""
        rows.append(f'<tr><td><code>{m["version"]:03d}_{_e(m["name"])}</code></td><td>{_e(m["phase"])}</td>'
                    f'<td>{_e(m["status"])}</td><td>{gate_text}</td>'
                    f'<td>{"<br>".join(_e(a) for a in m["approvals"])}</td></tr>')
    return f'<table>{"".join(rows)}</table>'


def database_html(status: dict[str, Any]) -> str:
    name = status["database"]
    if "error" in status:
        return f'<section class="db" id="db-{_e(name)}"><h2>{_e(name)}</h2><p class="unreachable">{_e(status["error"])}</p></section>'
    return (
        f'<section class="db" id="db-{_e(name)}" data-database="{_e(name)}"><h2>{_e(name)}</h2>'
        f'<div class="grid"><div><h3>Backups</h3>{_backups(status["backups"])}</div>'
        f'<div><h3>Restore drills</h3>{_drills(status["drills"])}</div>'
        f'<div><h3>Lifecycle</h3>{_lifecycle(status["lifecycle"])}</div>'
        f'<div><h3>Erasure</h3>{_erasure(status["erasure"])}</div>'
        f'<div class="wide"><h3>Migrations</h3>{_migrations(status["migrations"])}</div></div>'
        f'<p class=muted>as of {_e(status["generated_at"])}</p></section>'
    )


def page_html(statuses: list[dict[str, Any]], user: str) -> str:
    body = "".join(database_html(s) for s in statuses) or "<p>No database you may read is configured.</p>"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pgwarden</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><h1>pgwarden</h1><p class=muted>signed in as {_e(user)}; JSON: '
            f'<a href="api/status">api/status</a></p>{body}</body></html>')
