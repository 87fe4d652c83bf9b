"""``pgwarden ledger ...``: the erasure ledger of a database, without a scheduler.

``verify DB``       walk the chain in the database, name the first broken or missing entry, and compare
                    it with the chain exported to the repository; exit 1 when anything disagrees.
``export DB``       export new entries and the chain head to the repository (what the DAG task does).
``certificate DB X`` print the erasure certificate of a request id or subject reference (JSON or HTML).
``reapply DB --to`` after a restore, erase again every subject the exported ledger says was erased
                    after the restored backup.
"""

from __future__ import annotations

import argparse
import json

from pgwarden.cli.common import database, load, progress


def _connect_database(args: argparse.Namespace):
    from pgwarden.cli.connections import open_repository, pg_target
    from pgwarden.engine.postgres import connect

    db = database(load(args), args.database)
    return db, connect(pg_target(db.conn_id), statement_timeout="5min"), open_repository(db.repository)


def verify(args: argparse.Namespace) -> int:
    from pgwarden.engine.lifecycle.ledger_export import verify_ledger

    _, connection, repo = _connect_database(args)
    with connection as conn:
        result = verify_ledger(conn, None if args.database_only else repo, args.database)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(render_verification(result))
    return 0 if result.ok else 1


def render_verification(result) -> str:
    chain = result.chain
    lines = [f"{result.database}: erasure ledger {'OK' if result.ok else 'BROKEN'}"]
    lines.append(f"  database chain: {chain.entries} entries"
                 + (f", head {chain.head_seq} {chain.head_hash[:16]}" if chain.ok else ""))
    if chain.problem:
        lines.append(f"  ! database chain breaks at {chain.problem.describe()}")
    if result.export_chain is not None:
        lines.append(f"  exported chain: {result.export_chain.entries} entries")
        if result.export_chain.problem:
            lines.append(f"  ! exported chain breaks at {result.export_chain.problem.describe()}")
    if result.comparison is not None:
        if result.comparison.problem:
            lines.append(f"  ! database and export disagree at {result.comparison.problem.describe()}")
        else:
            lines.append(f"  database agrees with the export; {result.comparison.not_yet_exported} entries "
                         "not exported yet")
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def export(args: argparse.Namespace) -> int:
    from pgwarden.engine.lifecycle.ledger_export import export_ledger

    db, connection, repo = _connect_database(args)
    with connection as conn:
        result = export_ledger(conn, repo, args.database, db.repository, log=progress)
    print(json.dumps(result.to_json_dict(), indent=2) if args.json else result.summary())
    return 0


def certificate(args: argparse.Namespace) -> int:
    from pgwarden.engine.lifecycle.certificates import certificates, matching

    db, connection, repo = _connect_database(args)
    with connection as conn:
        found = certificates(conn, repo, args.database, db, select=matching(args.request))
    if not found:
        progress(f"no ledger entry of {args.database} has request id or subject reference {args.request!r}")
        return 1
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for cert in found:
            for extension, body in (("json", cert.to_json()), ("html", cert.to_html())):
                path = out / f"{args.database}-{cert.entry.seq:012d}.{extension}"
                path.write_bytes(body)
                progress(f"wrote {path}")
    elif args.html:
        print("\n".join(cert.to_html().decode() for cert in found))
    else:
        docs = [cert.to_json_dict() for cert in found]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, sort_keys=True))
    return 0


def target_from_dsn(dsn: str):
    """A libpq DSN or URI (read from the environment, never argv) as the engine's ``PgTarget``."""
    from psycopg.conninfo import conninfo_to_dict

    from pgwarden.engine.errors import PermanentError
    from pgwarden.engine.postgres import PgTarget

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except Exception as exc:
        raise PermanentError(f"the DSN is not a libpq connection string or URI ({type(exc).__name__})") from None
    port = params.pop("port", None)
    return PgTarget(host=params.pop("host", None), port=int(port) if port else None,
                    user=params.pop("user", "postgres"), dbname=params.pop("dbname", "postgres"),
                    password=params.pop("password", None), libpq=params)


def reapply(args: argparse.Namespace) -> int:
    import os

    from pgwarden.cli.connections import erasure_key, open_repository, pg_target
    from pgwarden.engine.lifecycle.erasure import RecordContext
    from pgwarden.engine.lifecycle.reapply import check_erased_subjects, reapply_erasures
    from pgwarden.engine.postgres import connect

    db = database(load(args), args.database)
    if db.lifecycle.erasure is None:
        raise SystemExit(f"database {args.database!r} has no lifecycle.erasure section: nothing to re-apply")
    if args.to_dsn_env:
        dsn = os.environ.get(args.to_dsn_env)
        if not dsn:
            raise SystemExit(f"environment variable {args.to_dsn_env} is empty or not set; put the restored "
                             "server's DSN there (e.g. host=/tmp port=5433 dbname=appdb user=postgres)")
        target = target_from_dsn(dsn)
    else:
        target = pg_target(args.to)
    key = erasure_key(db.lifecycle.erasure.hmac_key)
    repo = open_repository(db.repository)
    with connect(target, statement_timeout="1h", lock_timeout="30s") as conn:
        report = reapply_erasures(conn, repo, args.database, db.lifecycle.erasure, key,
                                  RecordContext(database=args.database), log=progress)
        check = check_erased_subjects(conn, repo, args.database, db.lifecycle.erasure, key)
    result = {**report.to_json_dict(), "check": {"ok": check.ok, "detail": check.detail()}}
    print(json.dumps(result, indent=2) if args.json else f"{report.summary()}\ncheck: {check.detail()}")
    return 0 if check.ok else 1


def add_parser(sub) -> None:
    group = sub.add_parser("ledger", help="verify, export and certify the erasure ledger; re-apply erasures "
                                          "after a restore")
    commands = group.add_subparsers(dest="ledger_command", required=True)

    command = commands.add_parser("verify", help="walk the ledger chain and compare it with the exported one; "
                                                 "exit 1 naming the first broken or missing entry")
    command.add_argument("database")
    command.add_argument("--database-only", action="store_true",
                         help="walk the database chain only (no repository comparison)")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=verify)

    command = commands.add_parser("export", help="export new ledger entries and the chain head to the repository")
    command.add_argument("database")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=export)

    command = commands.add_parser("certificate", help="the erasure certificate of a request id or subject "
                                                      "reference (JSON; --html for the page)")
    command.add_argument("database")
    command.add_argument("request", metavar="REQUEST_ID_OR_SUBJECT_REF")
    form = command.add_mutually_exclusive_group()
    form.add_argument("--html", action="store_true", help="print the HTML page instead of JSON")
    form.add_argument("--out", metavar="DIR", help="write <db>-<seq>.json and .html into DIR")
    command.set_defaults(func=certificate)

    command = commands.add_parser(
        "reapply", help="after a restore: erase again, from the exported ledger, every subject the restored "
                        "database still holds though it was erased after its backup")
    command.add_argument("database")
    to = command.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="CONN_ID", help="Airflow connection of the restored server")
    to.add_argument("--to-dsn-env", metavar="VAR", help="environment variable holding the restored server's DSN "
                                                        "(a password never goes in argv)")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=reapply)
