"""Run an expand/contract backfill in a process of its own, so a test can ``kill -9`` it mid-walk.

Environment only: PGHOST/PGPORT/PGUSER/PGDATABASE (libpq's), PGWARDEN_CHILD_MIGRATION (the YAML file).
Small, slow batches so the walk is still running when the test kills it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from pgwarden.engine.batches import BatchSettings
from pgwarden.engine.migrations.backfill import BackfillSettings
from pgwarden.engine.migrations.expand_contract import backfill
from pgwarden.engine.postgres import PgTarget

SLOW = BackfillSettings(batch=BatchSettings(time_budget=timedelta(milliseconds=20), initial_size=10, max_size=40,
                                            pause=timedelta(milliseconds=20), progress_every=0.5))

if __name__ == "__main__":
    env = os.environ
    target = PgTarget(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["PGUSER"], dbname=env["PGDATABASE"])
    result = backfill(target, Path(env["PGWARDEN_CHILD_MIGRATION"]), settings=SLOW,
                      log=lambda line: print(f"CHILD {line}", flush=True))
    print(f"CHILD DONE {result.summary()}", flush=True)
