"""The files of one database's migrations folder, as versioned migrations with checksums (pure).

Layout (``include/sql/migrations/<database>/``):

* ``NNN_name.sql`` + ``NNN_name.down.sql``: a plain migration and its required rollback;
* ``NNN_name.yaml``: an expand/contract migration (a list of operations; they carry their own rollback).

``NNN`` is three or more digits; versions run 1, 2, 3, ... with no gap and one migration per version.
Files starting with ``.`` and ``*.md`` files are ignored (notes beside the migrations are welcome).

Checksum: SHA-256 of the up file after its line endings are normalised (CRLF and lone CR become LF,
a UTF-8 byte-order mark is dropped), so a checkout on Windows or an editor's line-ending setting is not
a change. Everything else is: a trailing space, a final newline, a comment. We do not guess which
bytes of SQL are insignificant (whitespace inside a string literal is data). The down file has its own
checksum, recorded but not enforced: fixing a broken rollback of an applied migration must stay possible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

FILE_NAME = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9][a-z0-9_]*)(?P<suffix>\.down\.sql|\.sql|\.yaml)$")
NAME_RULE = "NNN_name.sql with NNN_name.down.sql, or NNN_name.yaml (NNN: 3+ digits; name: a-z, 0-9, _)"

Kind = Literal["plain", "expand_contract"]


def normalise(content: bytes | str) -> str:
    """The text whose hash is the checksum: UTF-8, no byte-order mark, LF line endings."""
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def checksum(content: bytes | str) -> str:
    return hashlib.sha256(normalise(content).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    kind: Kind
    up_file: str
    up_text: str
    checksum: str
    down_file: str | None = None
    down_text: str | None = None
    down_checksum: str | None = None

    @property
    def label(self) -> str:
        """``003_rename_email``, as the folder spells it."""
        return self.up_file.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Refusal:
    """A file pgwarden will not run, why, and what to do."""

    file: str
    problem: str
    action: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}; {self.action}"


@dataclass(frozen=True)
class AppliedRecord:
    """What ``pgwarden.schema_history`` says about one version (read by the engine)."""

    version: int
    name: str
    kind: Kind
    checksum: str
    status: str  # running | failed | applied | rolled_back

    @property
    def in_effect(self) -> bool:
        """Its changes are (at least partly) in the database, so its file must not change.

        A plain migration commits with its history row, so ``running``/``failed`` left nothing behind;
        an expand/contract migration is in effect from its first phase until rolled back.
        """
        if self.status == "applied":
            return True
        return self.kind == "expand_contract" and self.status != "rolled_back"


def _decode(file: str, content: bytes, refusals: list[Refusal]) -> str | None:
    try:
        return normalise(content)
    except UnicodeDecodeError:
        refusals.append(Refusal(file, "is not UTF-8 text", "save it as UTF-8"))
        return None


def discover(files: Mapping[str, bytes]) -> tuple[list[MigrationFile], list[Refusal]]:
    """The migrations of a folder's files (name -> bytes), in version order, and every refusal found."""
    refusals: list[Refusal] = []
    by_version: dict[int, dict[str, tuple[str, str, bytes]]] = {}
    for file in sorted(files):
        if file.startswith(".") or file.endswith(".md"):
            continue
        match = FILE_NAME.match(file)
        if not match:
            refusals.append(Refusal(file, "is not a migration file name", f"rename it to {NAME_RULE}"))
            continue
        version = int(match["version"])
        slot = by_version.setdefault(version, {})
        suffix = match["suffix"]
        if suffix in slot:  # two up files (or two downs) for one version, e.g. 003_a.sql and 003_b.sql
            other = slot[suffix][0]
            refusals.append(Refusal(
                file, f"has the same version {version:03d} as {other}",
                "give one of them the next free version (versions are never shared)"))
            continue
        slot[suffix] = (file, match["name"], files[file])

    migrations: list[MigrationFile] = []
    for version in sorted(by_version):
        slot = by_version[version]
        sql, yaml_, down = slot.get(".sql"), slot.get(".yaml"), slot.get(".down.sql")
        if sql and yaml_:
            refusals.append(Refusal(
                yaml_[0], f"has the same version {version:03d} as {sql[0]}",
                "give one of them the next free version (versions are never shared)"))
            continue
        up = sql or yaml_
        if up is None:
            refusals.append(Refusal(down[0], "is a down file without its migration",
                                    f"add {down[0].replace('.down.sql', '.sql')} or remove it"))
            continue
        if down and down[1] != up[1]:
            refusals.append(Refusal(down[0], f"does not match {up[0]} (names differ)",
                                    f"rename it to {up[0].rsplit('.', 1)[0]}.down.sql"))
            continue
        if sql and not down:
            refusals.append(Refusal(sql[0], "has no down file",
                                    f"add {sql[0].removesuffix('.sql')}.down.sql that undoes it "
                                    "(every plain migration needs its rollback)"))
            continue
        if yaml_ and down:
            refusals.append(Refusal(down[0], "is a down file for an expand/contract migration",
                                    f"remove it: {yaml_[0]}'s operations carry their own rollback"))
            continue
        up_text = _decode(up[0], up[2], refusals)
        down_text = _decode(down[0], down[2], refusals) if down else None
        if up_text is None or (down and down_text is None):
            continue
        migrations.append(MigrationFile(
            version=version, name=up[1], kind="plain" if sql else "expand_contract",
            up_file=up[0], up_text=up_text, checksum=checksum(up_text),
            down_file=down[0] if down else None, down_text=down_text,
            down_checksum=checksum(down_text) if down_text is not None else None))

    versions = sorted(by_version)
    expected = 1
    for version in versions:
        if version > expected:
            missing = ", ".join(f"{v:03d}" for v in range(expected, version))
            first = next(iter(by_version[version].values()))[0]
            refusals.append(Refusal(
                first, f"follows a gap: version(s) {missing} missing",
                "renumber it (and the files after it) so versions run 1, 2, 3, ... without gaps"))
        expected = version + 1
    return migrations, refusals


def check_against_history(
    migrations: Iterable[MigrationFile], history: Iterable[AppliedRecord]
) -> list[Refusal]:
    """Applied migrations whose file changed, vanished or was renamed, and pending ones out of order."""
    by_version = {m.version: m for m in migrations}
    in_effect = [record for record in history if record.in_effect]
    refusals: list[Refusal] = []
    for record in in_effect:
        applied_label = f"{record.version:03d}_{record.name}"
        migration = by_version.get(record.version)
        if migration is None:
            refusals.append(Refusal(
                applied_label, "is applied to the database but its file is gone",
                "restore the file from version control (an applied migration is never removed; "
                "undo it with a new migration or rollback_to)"))
        elif migration.name != record.name or migration.kind != record.kind:
            refusals.append(Refusal(
                migration.up_file, f"replaces the applied migration {applied_label}",
                "restore the applied file and give the new one the next free version"))
        elif migration.checksum != record.checksum:
            refusals.append(Refusal(
                migration.up_file,
                f"changed after it was applied (checksum {migration.checksum[:12]}, applied {record.checksum[:12]})",
                "restore the applied content from version control and put the change in a new migration"))
    highest = max((record.version for record in in_effect), default=0)
    applied_versions = {record.version for record in in_effect}
    for migration in sorted(by_version.values(), key=lambda m: m.version):
        if migration.version < highest and migration.version not in applied_versions:
            refusals.append(Refusal(
                migration.up_file,
                f"is out of order: it is not applied but {highest:03d} already is",
                "give it a version after the newest applied one"))
    return refusals


def pending(migrations: Iterable[MigrationFile], history: Iterable[AppliedRecord]) -> list[MigrationFile]:
    """Migrations not in effect, in version order."""
    done = {record.version for record in history if record.in_effect}
    return sorted((m for m in migrations if m.version not in done), key=lambda m: m.version)
