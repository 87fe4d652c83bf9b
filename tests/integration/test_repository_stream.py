"""Repository.open_verified: streaming reads whose SHA-256 is always checked, on both backends."""

from __future__ import annotations

import os

import pytest

from pgwarden.core.config import RepositoryConfig
from pgwarden.engine.repository import ChecksumMismatch, ObjectMissing, open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY


@pytest.fixture(params=["file", "s3"])
def repo_and_corrupt(request, tmp_path):
    """A repository with one object, and a function that corrupts it behind the repository's back."""
    if request.param == "file":
        root = tmp_path / "repo"
        root.mkdir()
        repo = open_repository(RepositoryConfig(url=f"file://{root}"))

        def corrupt(key: str, data: bytes) -> None:
            (root / key).write_bytes(data)
    else:
        s3 = request.getfixturevalue("s3")
        s3.client().create_bucket(Bucket="stream")
        repo = open_repository(RepositoryConfig(url="s3://stream/p"), S3Settings(
            endpoint_url=s3.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY))

        def corrupt(key: str, data: bytes) -> None:
            head = s3.client().head_object(Bucket="stream", Key=f"p/{key}")
            s3.client().put_object(Bucket="stream", Key=f"p/{key}", Body=data, Metadata=head["Metadata"])
    return repo, corrupt


@pytest.mark.integration
def test_stream_reads_and_verifies(repo_and_corrupt) -> None:
    repo, corrupt = repo_and_corrupt
    data = os.urandom(3 * 2**20 + 17)
    repo.put_bytes("a/obj", data)
    with repo.open_verified("a/obj") as stream:
        assert stream.read() == data
    with repo.open_verified("a/obj") as stream:
        assert stream.read(10) == data[:10]  # the rest is drained and still verified

    corrupt("a/obj", data[:-1] + b"X")
    with pytest.raises(ChecksumMismatch, match="a/obj"), repo.open_verified("a/obj") as stream:
        stream.read()
    # The reader failing first (a tar error on garbage, say) still reports the corrupt object.
    with pytest.raises(ChecksumMismatch, match="a/obj") as info, repo.open_verified("a/obj") as stream:
        stream.read(100)
        raise ValueError("not a tar archive")
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.integration
def test_reader_errors_pass_through_when_the_object_is_sound(repo_and_corrupt) -> None:
    repo, _ = repo_and_corrupt
    repo.put_bytes("b", b"fine")
    with pytest.raises(OSError, match="No space left"), repo.open_verified("b"):
        raise OSError(28, "No space left on device")
    with pytest.raises(ObjectMissing, match="nope"), repo.open_verified("nope"):
        pass
