"""The ``lifecycle.erasure`` section: what users write, the key path + expectation when it is wrong, the policy
version, and agreement with the TTL policies' ``personal_data``."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from pgwarden.core.config import parse_config
from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.pii import Constant, policy_version, pseudonym, redacted_email

HEAD = """\
databases:
  appdb:
    conn_id: pg_app
    repository: {url: "file:///var/backups/pg"}
    lifecycle:
"""
ERASURE = """\
erasure:
  subject: {table: public.users, key: id}
  erasable: {soft_deleted: {column: deleted_at}}
  legal_hold: {column: legal_hold}
  hmac_key: {conn_id: pgwarden_erasure_key}
  tables:
    - table: users
      columns: {email: redact_email, name: {constant: Deleted User}, phone: null, '"Zip Code"': hmac}
    - {table: sessions, subject_column: user_id, columns: {ip: delete_row}}
    - {table: orders, subject_column: user_id, columns: {shipping_address: "null"}}
    - {table: order_notes, through: {table: orders, column: order_id}, columns: {body: delete_row}}
"""


def parse(section: str):
    return parse_config(HEAD + textwrap.indent(textwrap.dedent(section), "      "), "cfg.yaml")


def issues(section: str) -> list[str]:
    return [str(i) for i in parse(section).issues]


def test_a_full_erasure_section_with_defaults() -> None:
    config = parse(ERASURE)
    assert not config.broken, config.issues
    erasure = config.databases["appdb"].lifecycle.erasure
    assert erasure is not None and erasure.schedule == "@daily" and erasure.batch_size == 100
    assert erasure.erasable.soft_deleted.grace == timedelta(days=30)
    users = erasure.mapped(QualifiedName("public", "users"))
    assert users.columns == {"email": "redact_email", "name": Constant(constant="Deleted User"), "phone": "null",
                             "Zip Code": "hmac"}
    assert users.method == "update" and erasure.mapped(QualifiedName("public", "sessions")).method == "delete_row"
    assert erasure.tables[3].through.key == "id"


def test_policy_version_is_the_hash_of_the_pii_map_only() -> None:
    first = parse(ERASURE).databases["appdb"].lifecycle.erasure
    rescheduled = parse(ERASURE.replace("erasure:\n", "erasure:\n  schedule: '@hourly'\n  batch_size: 5\n"))
    reordered = parse(ERASURE.replace("    - {table: sessions, subject_column: user_id, columns: {ip: delete_row}}\n",
                                      "") + "    - {table: sessions, subject_column: user_id, columns: {ip: delete_row}}\n")
    changed = parse(ERASURE.replace("phone: null", "phone: hmac"))
    version = policy_version(first)
    assert len(version) == 64
    assert policy_version(rescheduled.databases["appdb"].lifecycle.erasure) == version
    assert policy_version(reordered.databases["appdb"].lifecycle.erasure) == version
    assert policy_version(changed.databases["appdb"].lifecycle.erasure) != version


def test_redacted_email_and_pseudonym() -> None:
    assert redacted_email("42") == "deleted_42@invalid"
    assert pseudonym(b"k" * 16, "42") == pseudonym(b"k" * 16, "42") != pseudonym(b"j" * 16, "42")
    assert len(pseudonym(b"k", "42")) == 64


@pytest.mark.parametrize(("change", "path", "expected"), [
    (("hmac_key: {conn_id: pgwarden_erasure_key}", "hmac_key: {key: s3cr3t}"), "erasure.hmac_key.key",
     "unknown key"),
    (("hmac_key: {conn_id: pgwarden_erasure_key}", "hmac_key: {}"), "erasure.hmac_key", "connection"),
    (("phone: null", "phone: scramble"), "erasure.tables.0.columns.phone", "delete_row"),
    (("erasable: {soft_deleted: {column: deleted_at}}", "erasable: {}"), "erasure.erasable", "soft_deleted"),
    (("erasable: {soft_deleted: {column: deleted_at}}", "erasable: {soft_deleted: {grace: soon}}"),
     "erasure.erasable.soft_deleted.grace", "duration"),
    (("legal_hold: {column: legal_hold}", "legal_hold: {}"), "erasure.legal_hold", "one of them"),
    (("{table: sessions, subject_column: user_id, columns: {ip: delete_row}}",
      "{table: sessions, columns: {ip: delete_row}}"), "erasure", "public.sessions: say how it reaches the subject"),
    (("{table: sessions, subject_column: user_id, columns: {ip: delete_row}}",
      "{table: sessions, subject_column: user_id, columns: {ip: delete_row, agent: null}}"),
     "erasure.tables.1", "either erased by delete_row"),
    (("{table: orders, subject_column: user_id, columns: {shipping_address: \"null\"}}",
      "{table: orders, subject_column: user_id, columns: {user_id: \"null\"}}"),
     "erasure.tables.2", "join the table to its subject"),
    (("{table: order_notes, through: {table: orders, column: order_id}, columns: {body: delete_row}}",
      "{table: orders, subject_column: user_id}"), "erasure", "mapped twice"),
])
def test_bad_erasure_config_names_key_path_and_expectation(change: tuple[str, str], path: str, expected: str) -> None:
    old, new = change
    assert old in ERASURE
    found = issues(ERASURE.replace(old, new))
    assert any(f"databases.appdb.lifecycle.{path}" in issue and expected in issue for issue in found), found


def test_ttl_personal_data_must_be_mapped_by_erasure() -> None:
    policy = "policies: [{name: old_orders, table: orders, expire: {column: created_at, after: 730d}, " \
             "personal_data: [%s]}]\n"
    assert not issues(policy % "shipping_address" + ERASURE)
    found = issues(policy % "shipping_address, phone" + ERASURE)
    assert any("lifecycle" in i and "personal_data ['phone']" in i and "erasure.tables" in i for i in found), found


def test_an_archiving_policy_treats_the_erasure_map_as_personal_data() -> None:
    archive = "policies: [{name: old_orders, table: orders, expire: {column: created_at, after: 730d}, " \
              "mode: archive_then_delete, children: [], archive: %s}]\n"
    found = issues(archive % "{}" + ERASURE)
    assert any("would archive public.orders's personal data ['shipping_address']" in i for i in found), found
    assert not issues(archive % "{drop_columns: [shipping_address]}" + ERASURE)
