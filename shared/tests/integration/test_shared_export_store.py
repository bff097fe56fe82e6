"""The export store's contract, run against both backends: a folder, and moto's S3 server."""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devstack.processes import free_port
from shared.deflate import Zip64Writer, deflate_piece
from shared.export_store import (
    ExportStore,
    FolderExportStore,
    S3ExportStore,
    create_export_store,
)
from shared.settings import ExportStoreSettings, ServiceSettings

pytestmark = pytest.mark.integration

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on loopback (moto's), for this module."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3_client(s3_endpoint: str) -> Any:
    """A plain boto3 client of the server, to make buckets and look behind the store."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def s3_settings(endpoint: str, bucket: str, **extra: Any) -> ServiceSettings:
    """A service's settings that select the S3 store on the test server."""
    return ServiceSettings(
        database_url="postgresql+asyncpg://unused@127.0.0.1/unused",
        export_store=ExportStoreSettings(
            s3_bucket=bucket,
            s3_endpoint_url=endpoint,
            s3_region=REGION,
            s3_access_key_id=ACCESS_KEY,
            s3_secret_access_key=SECRET_KEY,
            **extra,
        ),
    )


def new_bucket(client: Any) -> str:
    """A fresh bucket, so no test sees another's objects."""
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ExportStore:
    """The same contract, on each backend, both made by the factory from settings."""
    if request.param == "folder":
        settings = ServiceSettings(
            database_url="postgresql+asyncpg://unused@127.0.0.1/unused",
            export_store_path=tmp_path / "exports",
        )
        made = create_export_store(settings, "billing")
        assert isinstance(made, FolderExportStore)
        return made
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = new_bucket(request.getfixturevalue("s3_client"))
    made = create_export_store(s3_settings(endpoint, bucket), "billing")
    assert isinstance(made, S3ExportStore)
    return made


class ExportFailedError(Exception):
    """The block writing a file failed half-way."""


def read(store: ExportStore, key: str) -> bytes:
    with store.reader(key) as handle:
        return handle.read()


def fail_while_writing(store: ExportStore, key: str) -> None:
    with store.writer(key) as handle:
        handle.write(b"half a file")
        raise ExportFailedError


async def fail_while_writing_async(store: ExportStore, key: str) -> None:
    async with store.async_writer(key) as handle:
        handle.write(b"half a file")
        raise ExportFailedError


def test_a_writer_whose_block_raises_leaves_nothing(store: ExportStore) -> None:
    with pytest.raises(ExportFailedError):
        fail_while_writing(store, "saga/slice.csv")
    assert not store.exists("saga/slice.csv")
    assert store.files() == []


def test_a_failed_rewrite_keeps_the_file_that_was_there(store: ExportStore) -> None:
    store.write_bytes("saga/slice.csv", b"complete")
    with pytest.raises(ExportFailedError):
        fail_while_writing(store, "saga/slice.csv")
    assert read(store, "saga/slice.csv") == b"complete"


async def test_the_async_writer_completes_or_leaves_nothing(store: ExportStore) -> None:
    with pytest.raises(ExportFailedError):
        await fail_while_writing_async(store, "saga/failed.csv")
    async with store.async_writer("saga/done.csv") as handle:
        handle.write(b"all of it")
    assert store.files() == ["saga/done.csv"]
    assert read(store, "saga/done.csv") == b"all of it"


def test_the_writer_can_seek_back_and_overwrite(store: ExportStore) -> None:
    with store.writer("saga/bundle.bin") as handle:
        handle.write(b"hello world")
        handle.seek(0)
        handle.write(b"J")
        handle.seek(0, os.SEEK_END)
        handle.write(b"!")
    assert read(store, "saga/bundle.bin") == b"Jello world!"


def test_a_missing_key_raises_file_not_found(store: ExportStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.reader("saga/missing.csv")
    with pytest.raises(FileNotFoundError):
        store.size("saga/missing.csv")
    with pytest.raises(FileNotFoundError):
        store.sha256("saga/missing.csv")
    assert not store.exists("saga/missing.csv")


def test_count_sees_only_the_files_directly_in_a_folder(store: ExportStore) -> None:
    for key in ("s/a/0", "s/a/1", "s/a/deeper/2", "s/ab/3", "s/4"):
        store.write_bytes(key, b"x")
    assert store.count("s/a") == 2
    assert store.count("s") == 1
    assert store.count("s/none") == 0


def test_removing_a_folder_removes_everything_below_it_and_nothing_else(
    store: ExportStore,
) -> None:
    for key in ("saga/x/0", "saga/x/y/1", "saga/2", "sagas/3", "other/saga/4"):
        store.write_bytes(key, b"x")
    store.remove("saga")
    assert store.files() == ["other/saga/4", "sagas/3"]
    store.remove("sagas/3")
    store.remove("never/written")  # nothing there is fine
    assert store.files() == ["other/saga/4"]


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "", ".", ".."])
def test_keys_escaping_the_store_are_refused(store: ExportStore, key: str) -> None:
    with pytest.raises(ValueError, match="escapes"), store.writer(key):
        pass
    with pytest.raises(ValueError, match="escapes"):
        store.reader(key)
    with pytest.raises(ValueError, match="escapes"):
        store.exists(key)
    with pytest.raises(ValueError, match="escapes"):
        store.remove(key)
    with pytest.raises(ValueError, match="escapes"):
        store.count(key)
    assert store.files() == []


def test_a_key_that_stays_inside_is_normalised_alike(store: ExportStore) -> None:
    store.write_bytes("a/../b/./c.csv", b"x")
    assert store.files() == ["b/c.csv"]


def test_size_and_sha256_of_a_written_file(store: ExportStore) -> None:
    content = os.urandom(9 * 1024 * 1024)  # past the in-memory spool and a multipart upload
    with store.writer("saga/bundle/quittance-export.zip") as handle:
        for start in range(0, len(content), 1 << 20):
            handle.write(content[start : start + (1 << 20)])
    assert store.size("saga/bundle/quittance-export.zip") == len(content)
    assert store.sha256("saga/bundle/quittance-export.zip") == hashlib.sha256(content).hexdigest()
    assert read(store, "saga/bundle/quittance-export.zip") == content


def test_the_zip64_writer_makes_a_bundle_through_the_store(store: ExportStore) -> None:
    csv = b"id,amount\n" + b"".join(f"{i},{i * 3}.50\n".encode() for i in range(20_000))
    pieces = [deflate_piece(csv[:70_000]), deflate_piece(csv[70_000:])]
    with store.writer("saga/bundle/quittance-export.zip") as handle:
        bundle = Zip64Writer(handle)
        bundle.add_deflated("billing-invoice.csv", pieces, crc32=zlib.crc32(csv), size=len(csv))
        bundle.add_bytes("manifest.json", b'{"files": 1}')
        bundle.close()
    with store.reader("saga/bundle/quittance-export.zip") as handle, zipfile.ZipFile(handle) as z:
        assert z.testzip() is None
        assert z.namelist() == ["billing-invoice.csv", "manifest.json"]
        assert z.read("billing-invoice.csv") == csv
        assert z.read("manifest.json") == b'{"files": 1}'


def test_two_services_on_one_bucket_never_see_each_others_objects(
    s3_endpoint: str, s3_client: Any
) -> None:
    bucket = new_bucket(s3_client)
    billing = create_export_store(s3_settings(s3_endpoint, bucket), "billing")
    retention = create_export_store(s3_settings(s3_endpoint, bucket), "retention")
    billing.write_bytes("saga/slice.csv", b"billing's")
    retention.write_bytes("saga/slice.csv", b"retention's")
    retention.write_bytes("saga/bundle/quittance-export.zip", b"zip")

    assert billing.files() == ["saga/slice.csv"]
    assert read(billing, "saga/slice.csv") == b"billing's"
    assert billing.count("saga") == 1
    assert not billing.exists("saga/bundle/quittance-export.zip")
    billing.remove("saga")
    assert billing.files() == []
    assert retention.files() == ["saga/bundle/quittance-export.zip", "saga/slice.csv"]
    names = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(names) == [
        "retention/saga/bundle/quittance-export.zip",
        "retention/saga/slice.csv",
    ]


def test_the_s3_store_hashes_an_object_its_writer_did_not_record(
    s3_endpoint: str, s3_client: Any
) -> None:
    bucket = new_bucket(s3_client)
    store = create_export_store(s3_settings(s3_endpoint, bucket, s3_prefix="exports"), "audit")
    s3_client.put_object(Bucket=bucket, Key="exports/saga/put.csv", Body=b"put by hand")
    assert store.files() == ["saga/put.csv"]
    assert store.sha256("saga/put.csv") == hashlib.sha256(b"put by hand").hexdigest()


def test_the_s3_store_is_chosen_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://unused@127.0.0.1/unused")
    monkeypatch.setenv("EXPORT_STORE__S3_BUCKET", "quittance-exports")
    monkeypatch.setenv("EXPORT_STORE__S3_ENDPOINT_URL", "http://minio.example:9000")
    monkeypatch.setenv("EXPORT_STORE__S3_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("EXPORT_STORE__S3_SECRET_ACCESS_KEY", SECRET_KEY)
    store = create_export_store(ServiceSettings(), "notifications")
    assert isinstance(store, S3ExportStore)
    assert (store.bucket, store.prefix) == ("quittance-exports", "notifications")


def test_access_keys_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="together"):
        ExportStoreSettings(s3_bucket="b", s3_access_key_id=ACCESS_KEY)
