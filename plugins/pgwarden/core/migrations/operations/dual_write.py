"""Two columns kept consistent by the database while old and new application versions run side by side.

A ``BEFORE INSERT OR UPDATE`` trigger works out which column the writer set: on UPDATE, the one whose
value changed (NEW vs OLD); on INSERT, the new column when it is non-NULL (it has no default, so only a
writer that knows it sets it), else the old one. It fills the other through the ``up`` (old -> new) or
``down`` (new -> old) expression. An UPDATE that changes neither (the backfill's no-op ``SET old = old``)
fills the new column from the old one if they disagree, so the backfill writes through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgwarden.core.migrations.operations.context import (
    ACCESS_EXCLUSIVE_BRIEF,
    CONTROL_SCHEMA,
    PlanContext,
    backfill,
    q,
)
from pgwarden.core.migrations.snapshot import TableSnapshot
from pgwarden.core.migrations.sqltext import ident, literal
from pgwarden.core.migrations.steps import Backfill, Step


@dataclass(frozen=True)
class DualWrite:
    snapshot: TableSnapshot
    old: str
    new: str
    new_type: str
    up_function: str | None  # pgwarden.<name>(old value) -> new value; None: identity (a rename)
    down_function: str | None
    trigger: str
    function: str

    def up(self, value: str) -> str:
        return f"{ident(CONTROL_SCHEMA, self.up_function)}({value})" if self.up_function else value

    def down(self, value: str) -> str:
        return f"{ident(CONTROL_SCHEMA, self.down_function)}({value})" if self.down_function else value

    def trigger_function(self) -> str:
        old, new = f"NEW.{ident(self.old)}", f"NEW.{ident(self.new)}"
        was_old, was_new = f"OLD.{ident(self.old)}", f"OLD.{ident(self.new)}"
        body = f"""
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF {new} IS NULL AND {old} IS NOT NULL THEN {new} := {self.up(old)};
    ELSIF {new} IS NOT NULL THEN {old} := {self.down(new)};
    END IF;
  ELSIF {old} IS DISTINCT FROM {was_old} AND {new} IS NOT DISTINCT FROM {was_new} THEN {new} := {self.up(old)};
  ELSIF {new} IS DISTINCT FROM {was_new} AND {old} IS NOT DISTINCT FROM {was_old} THEN {old} := {self.down(new)};
  ELSIF {new} IS DISTINCT FROM {self.up(old)} THEN {new} := {self.up(old)};
  END IF;
  RETURN NEW;
END"""
        return (f"CREATE OR REPLACE FUNCTION {ident(CONTROL_SCHEMA, self.function)}() RETURNS trigger "
                f"LANGUAGE plpgsql AS {literal(body)}")

    def expand(self, functions: tuple[str, ...] = ()) -> tuple[Step, ...]:
        t = q(self.snapshot.name)
        return (Step(
            (f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {ident(self.new)} {self.new_type}",
             *functions,
             self.trigger_function(),
             f"CREATE OR REPLACE TRIGGER {ident(self.trigger)} BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW "
             f"EXECUTE FUNCTION {ident(CONTROL_SCHEMA, self.function)}()"),
            ACCESS_EXCLUSIVE_BRIEF.format(t=t), t,
            why=f"add {ident(self.new)} and the dual-write trigger in one transaction"),)

    def backfill(self, key: tuple[tuple[str, ...], tuple[str, ...]]) -> Backfill:
        return backfill(self.snapshot, key, f"{ident(self.old)} = {ident(self.old)}",
                        f"{ident(self.new)} IS DISTINCT FROM {self.up(ident(self.old))}")

    def drop_trigger(self) -> tuple[str, ...]:
        functions = [self.function, *(f for f in (self.up_function, self.down_function) if f)]
        return (f"DROP TRIGGER IF EXISTS {ident(self.trigger)} ON {q(self.snapshot.name)}",
                *(f"DROP FUNCTION IF EXISTS {ident(CONTROL_SCHEMA, f)}" for f in functions))

    def rollback(self, refuse_if: str, extra: tuple[str, ...] = ()) -> tuple[Step, ...]:
        t = q(self.snapshot.name)
        return (Step((*self.drop_trigger(), *extra,
                      f"ALTER TABLE {t} DROP COLUMN IF EXISTS {ident(self.new)}"),
                     ACCESS_EXCLUSIVE_BRIEF.format(t=t), t, refuse_if=refuse_if,
                     why=f"drop the trigger and {ident(self.new)}",
                     refused_because="contract already ran: there is nothing to roll back to (write a new migration)"),)


def dual_write(ctx: PlanContext, snapshot: TableSnapshot, old: str, new: str, new_type: str,
               *, converts: bool) -> DualWrite:
    return DualWrite(
        snapshot=snapshot, old=old, new=new, new_type=new_type,
        up_function=ctx.object_name("up", old, new) if converts else None,
        down_function=ctx.object_name("down", old, new) if converts else None,
        trigger=ctx.object_name("dual_write", old, new),
        function=ctx.object_name("dual_write", old, new),
    )
