"""Acceptance: a pgwarden backup plus its WAL restores with stock tools only (README's runbook).

Backup and WAL go to the real S3 endpoint. The paths to download come from the runbook itself: its
variable definitions (``REPO=...``, ``B=...``, ``ID=...``) and its ``aws s3 cp`` lines are read out of
README.md and expanded by bash, with this test's repository URL in place of the documented
placeholder, so a runbook pointing at the wrong folder fails here. The restore then unpacks with tar
and zstd and replays WAL with a shell restore_command to a named restore point.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.cluster import LocalCluster, free_port
from pgwarden.engine.config_file import load_config
from pgwarden.engine.pgtools import give_to_server_user
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.s3.settings import S3Settings
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import scratch_base
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.workload import add_items, count_items, create_items

README = Path(__file__).resolve().parents[2] / "README.md"
BUCKET = "pgwarden-acceptance"
REPOSITORY_URL = f"s3://{BUCKET}/prod"
# What the runbook writes where a reader puts their own values.
DOCUMENTED_REPOSITORY = "s3://bucket/prefix"
DOCUMENTED_DIR = "/srv/restore"


def s3_repository(s3):
    s3.client().create_bucket(Bucket=BUCKET)
    config = RepositoryConfig(url=REPOSITORY_URL, conn_id="aws")
    settings = S3Settings(endpoint_url=s3.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    return config, open_repository(config, settings)


def runbook_script() -> list[str]:
    """The lines of README's "With stock tools only" shell block."""
    text = README.read_text()
    section = text[text.index("### With stock tools only"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's stock-tools runbook has no ```bash block"
    return block.group(1).splitlines()


def runbook_definitions(repository_url: str, backup_id: str, local: Path) -> str:
    """The runbook's variable definitions, with the reader's values put in: ``repository_url`` for
    the placeholder repository, the real backup id, and ``local`` for /srv/restore."""
    assignments = [line for line in runbook_script() if re.match(r"^[A-Z_]+=", line)]
    assert any(DOCUMENTED_REPOSITORY in line for line in assignments), (
        f"the runbook no longer defines its repository as {DOCUMENTED_REPOSITORY}: update this test")
    assert any(re.match(r"^ID=\S+", line) for line in assignments), "the runbook has no ID=... definition"
    definitions = "\n".join(assignments).replace(DOCUMENTED_REPOSITORY, repository_url)
    return definitions.replace(DOCUMENTED_DIR, str(local)) + f"\nID={shlex.quote(backup_id)}"


def expand(definitions: str, words: list[str]) -> list[str]:
    """``words`` as bash expands them after ``definitions``."""
    return subprocess.run(
        ["bash", "-euc", f'{definitions}\nprintf "%s\\n" {" ".join(words)}'],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()


def runbook_downloads(backup_id: str, local: Path) -> list[tuple[str, Path]]:
    """The runbook's ``aws s3 cp --recursive SRC DST`` lines, expanded with its own definitions."""
    definitions = runbook_definitions(REPOSITORY_URL, backup_id, local)
    copies = [line.split("#", 1)[0].strip() for line in runbook_script() if line.startswith("aws s3 cp ")]
    assert len(copies) == 2, f"expected the runbook's two downloads (base backup, WAL), found {copies}"
    downloads = []
    for copy in copies:
        words = shlex.split(copy.replace(DOCUMENTED_DIR, str(local)))
        assert words[:4] == ["aws", "s3", "cp", "--recursive"], copy
        source, dest = expand(definitions, words[4:])
        downloads.append((source, Path(dest)))
    return downloads


def aws_s3_cp_recursive(s3, source: str, dest: Path) -> int:
    """What `aws s3 cp --recursive s3://bucket/prefix/ dest/` does; returns the number of objects."""
    url = urlparse(source)
    prefix = url.path.lstrip("/")
    client = s3.client()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=url.netloc, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(url.netloc, obj["Key"], str(target))
            count += 1
    return count


def wait_promoted(server: LocalCluster, timeout: float = 120) -> None:
    """Until recovery has reached the target and promoted: a hot standby accepts connections (and
    pg_isready answers) while it is still replaying, with fewer rows than the target has."""
    deadline = time.monotonic() + timeout
    while True:
        with connect(server.target("postgres")) as conn:
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"restored server still in recovery after {timeout:.0f}s; see {server.logfile}")
        time.sleep(0.2)


def sh(command: str, cwd: Path | None = None) -> None:
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], check=True, cwd=cwd)


@pytest.mark.integration
def test_backup_and_wal_restore_by_hand_to_a_named_restore_point(pg, s3, tmp_path) -> None:
    repo_config, repo = s3_repository(s3)
    backup = BackupConfig(count_rows=["public.items"])
    create_items(pg, 1000)

    manifest = take_full_backup(pg.target(), repo, "appdb", backup, repo_config, workdir=tmp_path / "w1")
    assert manifest.row_counts and manifest.row_counts.counts == {"public.items": 1000}
    assert manifest.verification.ok and manifest.verification.files_checked > 100

    add_items(pg, 500)
    first = collect_wal(pg.target(), repo, "appdb", slot="pgwarden_appdb", workdir=tmp_path / "w2",
                        compression=manifest.compression, restore_point="before_the_mistake", warn_bytes=2**30)
    assert first.segments_uploaded
    add_items(pg, 200)  # committed after the restore point: must not be in the restore
    collect_wal(pg.target(), repo, "appdb", slot="pgwarden_appdb", workdir=tmp_path / "w3",
                compression=manifest.compression, restore_point="later", warn_bytes=2**30)
    assert count_items(pg) == 1700

    # --- README runbook, stock tools only ---
    base = scratch_base()
    restored = LocalCluster(datadir=base / "data", port=free_port())
    try:
        local = base / "repo"
        (base_download, base_dir), (wal_download, wal) = runbook_downloads(manifest.backup_id, local)
        assert aws_s3_cp_recursive(s3, base_download, base_dir) > 0, f"nothing under {base_download}"
        assert (base_dir / "pgwarden.json").exists(), f"{base_download} is not a backup folder"
        assert aws_s3_cp_recursive(s3, wal_download, wal) > 0, f"nothing under {wal_download}"
        data = base / "data"
        (data / "pg_wal").mkdir(parents=True)
        ext = ".zst" if manifest.compression == "zstd" else ".gz"
        unpack = "zstd -dcq" if ext == ".zst" else "gzip -dc"
        sh(f"{unpack} {base_dir}/base.tar{ext} | tar -xf - -C {data}")
        sh(f"{unpack} {base_dir}/pg_wal.tar{ext} | tar -xf - -C {data}/pg_wal")
        restore_command = (f"test -f {wal}/%f && cp {wal}/%f %p || {unpack} {wal}/%f{ext} > %p")
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"restore_command = '{restore_command}'\n"
                       "recovery_target_name = 'before_the_mistake'\n"
                       "recovery_target_action = 'promote'\n"
                       "archive_mode = 'off'\n")
        (data / "recovery.signal").touch()
        give_to_server_user(base)
        restored.start()
        restored.wait_ready()
        wait_promoted(restored)
        assert count_items(restored) == 1500
    finally:
        restored.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_runbook_paths_for_the_demo_are_where_docs_demo_says(tmp_path) -> None:
    """The demo's repository (include/pgwarden.yaml) put into the runbook gives the bucket folders
    docs/demo.md points newcomers to."""
    root = README.parent
    demo_url = load_config(root / "include" / "pgwarden.yaml").databases["appdb"].repository.url
    (database_folder,) = expand(runbook_definitions(demo_url, "20261124T020000Z", tmp_path), ["$B"])
    url = urlparse(database_folder)
    in_bucket = f"{url.path.strip('/')}/drills/"
    assert f"`{in_bucket}` in the bucket" in (root / "docs" / "demo.md").read_text(), (
        f"docs/demo.md should point at {in_bucket} (runbook's $B for the demo is {database_folder})")
