"""S3Store against a real S3 protocol server, directly and through the fault proxy."""

from __future__ import annotations

import os
import uuid

import pytest

from stedi_assets.lake import s3_store
from stedi_assets.lake.errors import AwsRequestError
from stedi_assets.lake.s3_client import new_client
from stedi_assets.lake.s3_store import S3Store
from stedi_assets_tests.lake.conftest import TIMEOUT_SECONDS
from stedi_assets_tests.lake.fault_proxy import Fault, FaultProxy
from stedi_assets_tests.lake.s3_server import SECRET_KEY, MotoServer, ensure_bucket

pytestmark = pytest.mark.s3

BUCKET = "stedi-store-tests"
ATTEMPTS = 4  # one more than the most faults a test injects: a slow response on a busy machine is no failure
DATA = os.urandom(256 * 1024)  # big enough that a dropped upload is cut in the middle


@pytest.fixture
def store(s3_server: MotoServer, fault_proxy: FaultProxy, aws_via) -> S3Store:
    """A fresh prefix, reached through the fault proxy with the tests' short timeout."""
    ensure_bucket(s3_server.client("s3"), BUCKET)
    aws_via(fault_proxy.url)
    return S3Store(new_client("s3", ATTEMPTS, TIMEOUT_SECONDS, False), BUCKET, f"run-{uuid.uuid4().hex}/lake", ATTEMPTS)


def test_whole_object_operations_and_listing(store: S3Store, s3_server: MotoServer) -> None:
    for key in ("t/v_1/part.parquet", "t/v_12/part.parquet", "t/_current.json", "other/x.json"):
        store.write(key, key.encode())
    s3_server.client("s3").put_object(Bucket=BUCKET, Key=f"{store.prefix}/t/empty-folder/", Body=b"")

    assert store.list("t/v_1") == ["t/v_1/part.parquet"]  # not its sibling v_12
    assert store.list("t/") == ["t/_current.json", "t/v_1/part.parquet", "t/v_12/part.parquet"]
    assert store.list("t/_current.json") == ["t/_current.json"]
    assert store.read("t/v_12/part.parquet") == b"t/v_12/part.parquet"
    assert store.exists("t/_current.json") and not store.exists("t/missing.json")
    assert store.uri("t/v_1") == f"s3://{BUCKET}/{store.prefix}/t/v_1"

    store.delete_prefix("t/v_1")
    assert store.list("t/") == ["t/_current.json", "t/v_12/part.parquet"]
    assert store.list("other/") == ["other/x.json"]


def test_delete_prefix_goes_in_batches(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_store, "_DELETE_BATCH", 2)
    for i in range(5):
        store.write(f"v/{i}", b"x")
    store.delete_prefix("v")
    assert store.list("v/") == []


TRANSIENT = [
    Fault("error", method="PUT", status=500, times=2),
    Fault("error", method="GET", status=503, times=1),  # SlowDown: throttling
    Fault("drop", method="PUT", times=1),
    Fault("stall", method="GET", times=1),
    Fault("truncate", method="GET", times=2),  # a body cut off after its headers
]


@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f"{f.kind}-{f.method}-{f.status}")
def test_transient_faults_are_retried(store: S3Store, fault_proxy: FaultProxy, fault: Fault) -> None:
    (injected,) = fault_proxy.inject(Fault(fault.kind, method=fault.method, status=fault.status, times=fault.times))
    store.write("t/v_1/part.parquet", DATA)
    assert store.read("t/v_1/part.parquet") == DATA
    assert injected.injected == fault.times


LASTING = [
    Fault("error", method="PUT", times=None),
    Fault("stall", method="PUT", times=None),
    Fault("truncate", method="GET", times=None),
]


@pytest.mark.parametrize("fault", LASTING, ids=lambda f: f"{f.kind}-{f.method}")
def test_a_lasting_fault_fails_naming_bucket_and_key(store: S3Store, fault_proxy: FaultProxy, fault: Fault) -> None:
    if fault.method == "GET":
        store.write("t/_current.json", DATA)
    (injected,) = fault_proxy.inject(Fault(fault.kind, method=fault.method, times=None))
    with pytest.raises(AwsRequestError) as raised:
        if fault.method == "GET":
            store.read("t/_current.json")
        else:
            store.write("t/_current.json", DATA)
    message = str(raised.value)
    assert f"s3://{BUCKET}/{store.prefix}/t/_current.json" in message
    assert f"after {ATTEMPTS} attempts" in message
    assert injected.injected == ATTEMPTS
    assert SECRET_KEY not in message
