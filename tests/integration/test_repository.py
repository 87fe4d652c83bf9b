"""The backup repository against real storage: files on disk and moto's S3 server over HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pgwarden.core.config import RepositoryConfig
from pgwarden.engine.errors import PermanentError, TransientError
from pgwarden.engine.repository import (
    ChecksumMismatch,
    ObjectMissing,
    Repository,
    open_repository,
)
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

BUCKET = "pgw-backups"
PREFIX = "team/backups"
MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_settings(server: MotoServer, **overrides) -> S3Settings:
    values = dict(
        endpoint_url=server.endpoint_url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )
    values.update(overrides)
    return S3Settings(**values)


@dataclass
class Backend:
    name: str
    open: Callable[..., Repository]  # open(**RepositoryConfig fields except url)
    tamper: Callable[[str, bytes], None]  # overwrite an object behind the repository's back
    drop_checksum: Callable[[str], None]  # leave the object, lose its recorded checksum

    @property
    def repo(self) -> Repository:
        return self.open()


def _file_backend(file_repo: str) -> Backend:
    root = Path(file_repo.removeprefix("file://"))

    def tamper(key: str, data: bytes) -> None:
        (root / key).write_bytes(data)

    def drop_checksum(key: str) -> None:
        path = root / key
        path.with_name(f".{path.name}.sha256").unlink()

    return Backend("file", lambda **kw: open_repository(RepositoryConfig(url=file_repo, **kw)), tamper, drop_checksum)


def _s3_backend(s3: MotoServer) -> Backend:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)

    def tamper(key: str, data: bytes) -> None:
        old = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=data, Metadata=old["Metadata"])

    def drop_checksum(key: str) -> None:
        body = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=body)

    def open_(**kw) -> Repository:
        return open_repository(RepositoryConfig(url=f"s3://{BUCKET}/{PREFIX}", **kw), s3_settings(s3))

    return Backend("s3", open_, tamper, drop_checksum)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "file":
        return _file_backend(request.getfixturevalue("file_repo"))
    return _s3_backend(request.getfixturevalue("s3"))


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MiB))
            f.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


# -- shared behaviour --------------------------------------------------------------------------------


def test_bytes_round_trip(backend: Backend) -> None:
    repo = backend.repo
    data = b'{"backup": "20261124T020000Z"}\n'
    info = repo.put_bytes("appdb/base/20261124T020000Z/manifest.json", data)
    assert (info.key, info.size, info.sha256) == ("appdb/base/20261124T020000Z/manifest.json", len(data), sha(data))

    assert repo.get_bytes("appdb/base/20261124T020000Z/manifest.json") == data
    assert repo.get_bytes("appdb/base/20261124T020000Z/manifest.json", expected_sha256=sha(data).upper()) == data
    head = repo.head("appdb/base/20261124T020000Z/manifest.json")
    assert head is not None
    assert (head.size, head.sha256) == (len(data), sha(data))
    assert head.modified is not None and head.modified.tzinfo is not None
    assert repo.exists("appdb/base/20261124T020000Z/manifest.json")

    repo.put_bytes("appdb/base/20261124T020000Z/manifest.json", b"second version")
    assert repo.get_bytes("appdb/base/20261124T020000Z/manifest.json") == b"second version"


def test_multipart_file_round_trip(backend: Backend, tmp_path: Path, s3_or_none) -> None:
    source = tmp_path / "base.tar.zst"
    digest = random_file(source, 40 * MiB)
    repo = backend.repo

    info = repo.put_file("appdb/base/20261124T020000Z/base.tar.zst", source)
    assert (info.size, info.sha256) == (40 * MiB, digest)
    assert repo.head("appdb/base/20261124T020000Z/base.tar.zst").sha256 == digest
    if backend.name == "s3":
        raw = s3_or_none.client().head_object(Bucket=BUCKET, Key=f"{PREFIX}/appdb/base/20261124T020000Z/base.tar.zst")
        assert raw["ETag"].endswith('-3"'), "40 MiB in 16 MiB parts is a 3-part multipart upload"
        assert raw["Metadata"]["sha256"] == digest

    dest = tmp_path / "restore" / "deep" / "base.tar.zst"
    got = repo.get_file("appdb/base/20261124T020000Z/base.tar.zst", dest)
    assert (got.size, got.sha256) == (40 * MiB, digest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in dest.parent.iterdir()) == ["base.tar.zst"], "no temp file left beside dest"


@pytest.fixture
def s3_or_none(request: pytest.FixtureRequest):
    """The moto server when the test runs against S3 (for raw client checks), else None."""
    if "backend" in request.fixturenames and request.getfixturevalue("backend").name == "s3":
        return request.getfixturevalue("s3")
    return None


def test_expected_checksum_is_enforced(backend: Backend, tmp_path: Path) -> None:
    repo = backend.repo
    repo.put_bytes("appdb/wal/000000010000000000000001", b"wal bytes")
    wrong = "0" * 64
    dest = tmp_path / "out" / "000000010000000000000001"

    with pytest.raises(ChecksumMismatch, match="appdb/wal/000000010000000000000001"):
        repo.get_file("appdb/wal/000000010000000000000001", dest, expected_sha256=wrong)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == [], "the unverified download is removed"
    with pytest.raises(ChecksumMismatch, match="appdb/wal/000000010000000000000001"):
        repo.get_bytes("appdb/wal/000000010000000000000001", expected_sha256=wrong)
    with pytest.raises(ValueError, match="64 hex digits"):
        repo.get_bytes("appdb/wal/000000010000000000000001", expected_sha256="abc")


def test_corrupted_object_is_detected_on_read(backend: Backend, tmp_path: Path) -> None:
    repo = backend.repo
    original = os.urandom(100_000)
    repo.put_bytes("appdb/base/b1/base.tar.zst", original)
    backend.tamper("appdb/base/b1/base.tar.zst", original[:50_000] + b"\0" + original[50_001:])

    with pytest.raises(ChecksumMismatch, match=r"appdb/base/b1/base\.tar\.zst") as caught:
        repo.get_bytes("appdb/base/b1/base.tar.zst")
    assert sha(original) in str(caught.value)
    assert isinstance(caught.value, PermanentError)

    dest = tmp_path / "restore" / "base.tar.zst"
    dest.parent.mkdir()
    dest.write_bytes(b"previous good copy")
    with pytest.raises(ChecksumMismatch, match=r"appdb/base/b1/base\.tar\.zst"):
        repo.get_file("appdb/base/b1/base.tar.zst", dest)
    assert dest.read_bytes() == b"previous good copy", "a failed verification never replaces dest"
    assert [p.name for p in dest.parent.iterdir()] == ["base.tar.zst"]


def test_object_without_recorded_checksum_is_refused_unless_expected_given(backend: Backend, tmp_path: Path) -> None:
    repo = backend.repo
    repo.put_bytes("appdb/dump/a.dump", b"dump")
    backend.drop_checksum("appdb/dump/a.dump")

    assert repo.head("appdb/dump/a.dump").sha256 is None
    with pytest.raises(ChecksumMismatch, match="no SHA-256 is recorded"):
        repo.get_bytes("appdb/dump/a.dump")
    with pytest.raises(ChecksumMismatch, match="no SHA-256 is recorded"):
        repo.get_file("appdb/dump/a.dump", tmp_path / "a.dump")
    assert repo.get_bytes("appdb/dump/a.dump", expected_sha256=sha(b"dump")) == b"dump"
    assert repo.get_file("appdb/dump/a.dump", tmp_path / "a.dump", expected_sha256=sha(b"dump")).size == 4


def test_missing_object(backend: Backend, tmp_path: Path) -> None:
    repo = backend.repo
    assert repo.head("appdb/nothing") is None
    assert not repo.exists("appdb/nothing")
    with pytest.raises(ObjectMissing, match="appdb/nothing"):
        repo.get_bytes("appdb/nothing")
    with pytest.raises(ObjectMissing, match="appdb/nothing"):
        repo.get_file("appdb/nothing", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    repo.put_bytes("appdb/folder/object", b"x")
    assert repo.head("appdb/folder") is None, "a folder is not an object"


def test_list_is_sorted_recursive_and_prefixed(backend: Backend) -> None:
    repo = backend.repo
    keys = ["b", "a/x", "a-b", "a/b/c", "a/b/d", "appdb/wal/000000010000000000000002",
            "appdb/wal/000000010000000000000001", "appdb/wal/00000002.history"]
    for i, key in enumerate(keys):
        repo.put_bytes(key, b"x" * i)

    listed = list(repo.list())
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: o.size for o in listed} == {k: i for i, k in enumerate(keys)}
    assert all(o.modified is not None for o in listed)
    assert [o.key for o in repo.list("a/")] == ["a/b/c", "a/b/d", "a/x"]
    assert [o.key for o in repo.list("a/b")] == ["a/b/c", "a/b/d"]
    assert [o.key for o in repo.list("a")] == sorted(k for k in keys if k.startswith("a"))
    assert [o.key for o in repo.list("a-")] == ["a-b"]
    assert [o.key for o in repo.list("appdb/wal/0000000100")] == [
        "appdb/wal/000000010000000000000001", "appdb/wal/000000010000000000000002"]
    assert list(repo.list("nothing/here/")) == []


def test_delete_in_batches_and_missing_keys_are_fine(backend: Backend) -> None:
    repo = backend.repo
    keys = [f"appdb/wal/{i:024X}" for i in range(1005)]  # more than one DeleteObjects batch
    for key in keys:
        repo.put_bytes(key, b"w")
    repo.put_bytes("appdb/keep", b"k")

    assert repo.delete(iter(keys + ["appdb/wal/never-existed", keys[0]])) == 1006
    assert [o.key for o in repo.list()] == ["appdb/keep"]
    assert not repo.exists(keys[0])
    assert repo.delete([]) == 0
    assert repo.delete(["appdb/wal/never-existed"]) == 1


@pytest.mark.parametrize(
    "key",
    ["../escape", "a/../../escape", "a/..", "/etc/passwd", "a\\b", "..\\x", "", "a//b", "a/", "./a", "a/./b",
     ".hidden", "a/.base.tar.zst.sha256", "a\nb"],
)
def test_bad_keys_are_rejected(backend: Backend, key: str, tmp_path: Path) -> None:
    repo = backend.repo
    for call in (
        lambda: repo.put_bytes(key, b"x"),
        lambda: repo.put_file(key, tmp_path / "whatever"),
        lambda: repo.get_bytes(key),
        lambda: repo.get_file(key, tmp_path / "out"),
        lambda: repo.head(key),
        lambda: repo.exists(key),
        lambda: repo.delete(["fine", key]),
    ):
        with pytest.raises(ValueError, match="invalid repository key"):
            call()
    with pytest.raises(ValueError):
        list(repo.list("../"))
    assert list(repo.list()) == []


def test_probe_ok_leaves_nothing(backend: Backend) -> None:
    repo = backend.repo
    repo.probe()
    assert list(repo.list()) == []


def test_tz_naive_retention_is_rejected(backend: Backend) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        backend.repo.put_bytes("a", b"x", retain_until=datetime(2030, 1, 1))


# -- file:// -------------------------------------------------------------------------------------


def test_file_checksum_is_a_sha256sum_file(file_repo: str) -> None:
    repo = open_repository(RepositoryConfig(url=file_repo))
    repo.put_bytes("appdb/base/b1/backup_manifest", b"manifest")
    folder = Path(file_repo.removeprefix("file://")) / "appdb/base/b1"
    assert sorted(p.name for p in folder.iterdir()) == [".backup_manifest.sha256", "backup_manifest"]
    subprocess.run(["sha256sum", "--check", "--strict", ".backup_manifest.sha256"], cwd=folder, check=True,
                   capture_output=True)


def test_file_probe_missing_root_is_not_created(tmp_path: Path) -> None:
    root = tmp_path / "not-mounted"
    repo = open_repository(RepositoryConfig(url=f"file://{root}"))
    with pytest.raises(PermanentError, match=rf"{root} does not exist; create it \(mkdir -p"):
        repo.probe()
    with pytest.raises(PermanentError, match="does not exist"):
        repo.put_bytes("a", b"x")
    assert not root.exists()


def test_file_probe_root_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a folder")
    repo = open_repository(RepositoryConfig(url=f"file://{tmp_path}/plain-file/repo"))
    with pytest.raises(PermanentError, match="parents is a regular file"):
        repo.probe()


def test_file_probe_unwritable_folder(file_repo: str) -> None:
    root = Path(file_repo.removeprefix("file://"))
    (root / "_probe").write_text("a file where the probe folder goes")  # blocks writes even for root
    with pytest.raises(PermanentError, match=r"failed its write/read/delete probe.*in the way"):
        open_repository(RepositoryConfig(url=file_repo)).probe()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_file_probe_read_only_directory(file_repo: str) -> None:
    root = Path(file_repo.removeprefix("file://"))
    root.chmod(0o555)
    try:
        with pytest.raises(PermanentError, match="access to it"):
            open_repository(RepositoryConfig(url=file_repo)).probe()
    finally:
        root.chmod(0o755)


def test_file_delete_prunes_emptied_folders(file_repo: str) -> None:
    repo = open_repository(RepositoryConfig(url=file_repo))
    root = Path(file_repo.removeprefix("file://"))
    repo.put_bytes("appdb/base/b1/base.tar", b"1")
    repo.put_bytes("appdb/base/b2/base.tar", b"2")
    repo.delete(["appdb/base/b1/base.tar"])
    assert sorted(p.name for p in (root / "appdb/base").iterdir()) == ["b2"]
    repo.delete(["appdb/base/b2/base.tar"])
    assert list(root.iterdir()) == []
    assert root.is_dir()


def test_file_crash_mid_write_leaves_no_partial_object(file_repo: str, tmp_path: Path) -> None:
    """``kill -9`` a writer half way through: the key must not exist, and a new write must work."""
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            from pathlib import Path
            from pgwarden.core.config import RepositoryConfig
            from pgwarden.engine.repository import open_repository
            repo = open_repository(RepositoryConfig(url={file_repo!r}))
            repo.put_file("appdb/base/b1/base.tar.zst", Path({str(fifo)!r}))
        """)],
        cwd=Path(__file__).parents[2],
    )
    root = Path(file_repo.removeprefix("file://"))
    folder = root / "appdb/base/b1"
    try:
        with open(fifo, "wb") as feed:
            feed.write(os.urandom(4 * MiB))
            feed.flush()
            deadline = time.monotonic() + 30
            while not any(p.name.endswith(".tmp") and p.stat().st_size > 0
                          for p in (folder.iterdir() if folder.is_dir() else [])):
                assert time.monotonic() < deadline, "the writer never started writing"
                time.sleep(0.05)
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
    except BrokenPipeError:
        pass
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()

    repo = open_repository(RepositoryConfig(url=file_repo))
    assert any(p.name.endswith(".tmp") for p in folder.iterdir()), "the crash left its temp file"
    assert list(repo.list()) == []
    assert repo.head("appdb/base/b1/base.tar.zst") is None
    with pytest.raises(ObjectMissing):
        repo.get_bytes("appdb/base/b1/base.tar.zst")

    repo.put_bytes("appdb/base/b1/base.tar.zst", b"retried")
    assert [o.key for o in repo.list()] == ["appdb/base/b1/base.tar.zst"]
    assert repo.get_bytes("appdb/base/b1/base.tar.zst") == b"retried"


# -- s3:// ---------------------------------------------------------------------------------------


def test_s3_settings_repr_hides_credentials() -> None:
    text = repr(S3Settings(endpoint_url="http://x", aws_access_key_id="AKIAEXAMPLE",
                           aws_secret_access_key="very-secret", aws_session_token="tok-secret"))
    assert "http://x" in text
    assert "AKIAEXAMPLE" not in text and "very-secret" not in text and "tok-secret" not in text


def test_s3_missing_bucket(s3: MotoServer) -> None:
    repo = open_repository(RepositoryConfig(url="s3://no-such-bucket/pg"), s3_settings(s3))
    with pytest.raises(PermanentError, match=r"bucket no-such-bucket does not exist.*aws s3 mb s3://no-such-bucket"):
        repo.probe()
    with pytest.raises(PermanentError, match="bucket no-such-bucket does not exist"):
        list(repo.list())
    with pytest.raises(PermanentError, match="bucket no-such-bucket does not exist"):
        repo.get_bytes("appdb/manifest.json")


def test_s3_endpoint_down_is_transient_and_names_key_and_endpoint(s3: MotoServer, tmp_path: Path, caplog) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    secret = "s3cr3t-do-not-print"
    settings = s3_settings(s3, aws_secret_access_key=secret, max_attempts=2, connect_timeout=1, read_timeout=2)
    repo = open_repository(RepositoryConfig(url=f"s3://{BUCKET}/{PREFIX}"), settings)
    source = tmp_path / "seg"
    source.write_bytes(b"w" * 1000)
    s3.stop()
    caplog.set_level(logging.DEBUG, logger="botocore.retries.standard")

    for call in (
        lambda: repo.put_bytes("appdb/wal/000000010000000000000001", b"x"),
        lambda: repo.put_file("appdb/wal/000000010000000000000001", source),
        lambda: repo.get_bytes("appdb/wal/000000010000000000000001"),
        lambda: repo.get_file("appdb/wal/000000010000000000000001", tmp_path / "out"),
        lambda: repo.head("appdb/wal/000000010000000000000001"),
    ):
        with pytest.raises(TransientError) as caught:
            call()
        message = str(caught.value)
        assert f"s3://{BUCKET}/{PREFIX}/appdb/wal/000000010000000000000001" in message
        assert s3.endpoint_url in message and "after 2 attempts" in message
        assert secret not in message and ACCESS_KEY not in message
    with pytest.raises(TransientError, match=s3.endpoint_url):
        list(repo.list("appdb/"))
    with pytest.raises(TransientError, match="probe"):
        repo.probe()
    # Each call gave up because the configured attempts (2) ran out, not on a timeout or a longer default.
    gave_up = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Max attempts")]
    assert gave_up and set(gave_up) == {"Max attempts of 2 reached."}, gave_up
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("sse", "kms_key_id", "expected"),
    [("AES256", None, "AES256"), ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/pgw", "aws:kms")],
)
def test_s3_server_side_encryption(s3: MotoServer, tmp_path: Path, sse: str, kms_key_id: str | None,
                                   expected: str) -> None:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    repo = open_repository(RepositoryConfig(url=f"s3://{BUCKET}", sse=sse, kms_key_id=kms_key_id), s3_settings(s3))
    source = tmp_path / "big"
    random_file(source, 33 * MiB)  # multipart
    repo.put_bytes("small", b"x")
    repo.put_file("big", source)
    for key in ("small", "big"):
        head = client.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == expected
        if kms_key_id:
            assert head["SSEKMSKeyId"] == kms_key_id
    assert repo.get_bytes("small") == b"x"


def test_s3_object_lock_retention(s3: MotoServer, tmp_path: Path) -> None:
    client = s3.client()
    client.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    until = (datetime.now(timezone.utc) + timedelta(days=35)).replace(microsecond=0)
    repo = open_repository(RepositoryConfig(url="s3://locked/pg", object_lock_mode="COMPLIANCE"), s3_settings(s3))
    source = tmp_path / "backup_manifest"
    source.write_bytes(b"manifest")

    repo.put_bytes("appdb/base/b1/manifest.json", b"{}", retain_until=until)
    repo.put_file("appdb/base/b1/backup_manifest", source, retain_until=until)
    repo.put_bytes("appdb/base/b1/unlocked", b"{}")
    for key in ("appdb/base/b1/manifest.json", "appdb/base/b1/backup_manifest"):
        head = client.head_object(Bucket="locked", Key=f"pg/{key}")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == until
    assert "ObjectLockMode" not in client.head_object(Bucket="locked", Key="pg/appdb/base/b1/unlocked")
    repo.probe()

    without_lock = open_repository(RepositoryConfig(url="s3://locked/pg"), s3_settings(s3))
    without_lock.put_bytes("appdb/x", b"x", retain_until=until)
    assert "ObjectLockMode" not in client.head_object(Bucket="locked", Key="pg/appdb/x")


def test_s3_object_lock_on_a_bucket_without_it(s3: MotoServer) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    repo = open_repository(RepositoryConfig(url=f"s3://{BUCKET}", object_lock_mode="GOVERNANCE"), s3_settings(s3))
    with pytest.raises(PermanentError, match=f"bucket {BUCKET} has no Object Lock"):
        repo.put_bytes("a", b"x", retain_until=datetime.now(timezone.utc) + timedelta(days=1))


def test_s3_list_skips_folder_markers_and_other_prefixes(s3: MotoServer) -> None:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/appdb/", Body=b"")  # a console "folder"
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}x/appdb/other-repo", Body=b"")
    repo = open_repository(RepositoryConfig(url=f"s3://{BUCKET}/{PREFIX}"), s3_settings(s3))
    repo.put_bytes("appdb/a", b"a")
    assert [o.key for o in repo.list()] == ["appdb/a"]


def test_s3_transfer_memory_stays_bounded(s3: MotoServer, tmp_path: Path) -> None:
    """A 192 MiB upload and download in a fresh process: peak RSS far below the 300 MB worker budget."""
    s3.client().create_bucket(Bucket=BUCKET)
    source = tmp_path / "big"
    digest = random_file(source, 192 * MiB)
    script = textwrap.dedent(f"""
        import json
        from pathlib import Path
        from pgwarden.core.config import RepositoryConfig
        from pgwarden.engine.repository import open_repository
        from pgwarden.engine.s3.settings import S3Settings
        settings = S3Settings(**json.loads({json.dumps(json.dumps(dict(
            endpoint_url=s3.endpoint_url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)))}))
        repo = open_repository(RepositoryConfig(url="s3://{BUCKET}/mem"), settings)
        put = repo.put_file("big", Path({str(source)!r}))
        got = repo.get_file("big", Path({str(tmp_path / "back")!r}))
        # VmHWM, not ru_maxrss: Linux copies the forking parent's peak RSS into the child's
        # ru_maxrss at exec, so a big pytest process would be measured instead of this one.
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print(json.dumps({{"put": put.sha256, "got": got.sha256, "maxrss_kib": int(hwm.split()[1])}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], check=True,
                          capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["put"] == result["got"] == digest
    assert result["maxrss_kib"] < 200 * 1024, f"peak RSS {result['maxrss_kib'] // 1024} MiB"
