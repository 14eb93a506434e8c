"""Delta commits on S3 are conditional PUTs of the next log entry (`If-None-Match: *`): of two
writers of one version, one wins and the other fails. A store that ignores the header lets
both "win", and one commit vanishes without an error. The lake probes for that before its
first write and refuses such a store unless STEDI_S3_ALLOW_UNSAFE_COMMITS says one writer
runs at a time. The fault proxy plays the store that ignores the header by stripping it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from stedi_assets.lake import s3_store
from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.errors import LakeError
from stedi_assets.resources.lake import LakeResource
from stedi_assets.lake.s3_client import new_client
from stedi_assets.lake.s3_store import S3Store
from stedi_assets.settings import SAMPLE_SOURCE, UNSAFE_COMMITS_VARIABLE
from stedi_assets_tests.conftest import CliLakehouse
from stedi_assets_tests.lake.conftest import LAKE_BUCKET, SOURCE_BUCKET
from stedi_assets_tests.lake.fault_proxy import Fault, FaultProxy
from stedi_assets_tests.lake.s3_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    MotoServer,
    aws_env,
    ensure_bucket,
    keys,
    upload,
)

pytestmark = pytest.mark.s3

SPEC = TableSpec("readings", "readings/trusted", pa.schema([("t", pa.int64())]))
FIRST_COMMIT = "/_delta_log/00000000000000000001.json"


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's result is kept per process and endpoint: every test here probes anew."""
    monkeypatch.setattr(s3_store, "_CONDITIONAL_WRITES_CHECKED", set())


@pytest.fixture
def sample_on_s3(s3_server: MotoServer) -> str:
    client = s3_server.client("s3")
    upload(client, SAMPLE_SOURCE, SOURCE_BUCKET, "sample")
    ensure_bucket(client, LAKE_BUCKET)
    return f"s3://{SOURCE_BUCKET}/sample"


@pytest.fixture
def stripping_proxy(s3_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.port) as proxy:
        proxy.strip_conditional_headers()
        yield proxy


def _lakehouse(tmp_path: Path, source: str, endpoint: str, **settings: str) -> CliLakehouse:
    return CliLakehouse(
        tmp_path,
        source,  # type: ignore[arg-type]  # an S3 URI, not a folder
        STEDI_LAKE=f"s3://{LAKE_BUCKET}/commits-{uuid.uuid4().hex[:8]}",
        **settings,
        **aws_env(endpoint),
    )


def test_a_store_that_ignores_conditional_puts_is_refused_before_anything_is_written(
    sample_on_s3: str, stripping_proxy: FaultProxy, s3_server: MotoServer, tmp_path: Path
) -> None:
    lakehouse = _lakehouse(tmp_path, sample_on_s3, stripping_proxy.url)
    run = lakehouse.materialize("customer_landing", check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"the S3 store at {stripping_proxy.url} (bucket {LAKE_BUCKET}) accepted a second conditional PUT" in output
    assert f"{UNSAFE_COMMITS_VARIABLE}=true" in output
    assert keys(s3_server, lakehouse.env["STEDI_LAKE"]) == []  # not even the probe's scratch key
    # The probe really was two conditional PUTs of one key, both let through.
    probes = [s for s in stripping_proxy.seen if s.method == "PUT" and "/_stedi_probe/" in s.path]
    assert len(probes) == 2 and probes[0].path == probes[1].path
    assert all(p.header("If-None-Match") == "*" for p in probes)


def test_the_override_writes_to_such_a_store(
    sample_on_s3: str, stripping_proxy: FaultProxy, tmp_path: Path
) -> None:
    lakehouse = _lakehouse(tmp_path, sample_on_s3, stripping_proxy.url, **{UNSAFE_COMMITS_VARIABLE: "true"})
    lakehouse.materialize("customer_landing")
    assert lakehouse.count("customer_landing") > 0
    assert not [s for s in stripping_proxy.seen if "/_stedi_probe/" in s.path]  # not even probed


def test_the_probe_passes_on_a_store_that_honours_them(s3_server: MotoServer, aws_via, fault_proxy: FaultProxy) -> None:
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    prefix = f"probe-{uuid.uuid4().hex[:8]}"
    aws_via(fault_proxy.url)
    store = S3Store(new_client("s3", 3, 5.0, False), LAKE_BUCKET, prefix, 3)
    store.require_conditional_writes("X=true")
    assert keys(s3_server, f"s3://{LAKE_BUCKET}/{prefix}") == []
    first, second = [s for s in fault_proxy.seen if s.method == "PUT"]
    assert first.path == second.path and second.header("If-None-Match") == "*"

    fault_proxy.strip_conditional_headers()
    other = S3Store(new_client("s3", 3, 5.0, False), LAKE_BUCKET + "-other", prefix, 3)
    ensure_bucket(s3_server.client("s3"), other.bucket)
    with pytest.raises(LakeError, match=rf"at {fault_proxy.url} \(bucket {other.bucket}\).*X=true"):
        other.require_conditional_writes("X=true")


def _lake(server: MotoServer, endpoint: str, prefix: str) -> Lake:
    """A lake whose data files (boto3) and log (delta-rs) both go through `endpoint`."""
    s3 = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION)
    return Lake(S3Store(s3.client("s3", endpoint_url=endpoint), LAKE_BUCKET, prefix), storage_options=server.storage_options(endpoint))


def test_log_entries_are_conditional_puts_and_two_writers_of_one_version_cannot_both_win(
    s3_server: MotoServer, fault_proxy: FaultProxy
) -> None:
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    lake = _lake(s3_server, fault_proxy.url, prefix)
    lake.write(SPEC, pa.table({"t": [0]}), {"run_id": "first"})
    log_puts = [s for s in fault_proxy.seen if s.method == "PUT" and "/_delta_log/" in s.path]
    assert log_puts and all(s.header("If-None-Match") == "*" for s in log_puts)

    # Two writers write, then commit version 1 at the same moment: the proxy holds both PUTs
    # of 00000000000000000001.json until both have arrived.
    writers = [_lake(s3_server, fault_proxy.url, prefix) for _ in range(2)]
    (held,) = fault_proxy.inject(Fault("hold", method="PUT", path=FIRST_COMMIT, times=2, hold_seconds=20))

    def commit(i: int):
        try:
            return writers[i].write(SPEC, pa.table({"t": [10 + i]}), {"run_id": f"writer{i}"})
        except LakeError as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(commit, range(2)))
    assert held.injected == 2
    failures = [o for o in outcomes if isinstance(o, LakeError)]
    assert len(failures) == 1, outcomes
    assert "commit of readings" in str(failures[0]) and "nothing was published" in str(failures[0])
    [winner] = [o for o in outcomes if not isinstance(o, LakeError)]

    table = DeltaTable(f"s3://{LAKE_BUCKET}/{prefix}/{SPEC.location}", storage_options=s3_server.storage_options())
    assert [h["version"] for h in table.history()] == [1, 0]  # every successful commit is there
    assert table.version() == winner.version == 1
    assert table.to_pyarrow_table().to_pydict() == winner.to_arrow().to_pydict()
    # The loser's data file (delta-rs's: the lake cannot tell it from another writer's about
    # to be committed) is named by no commit, and the sweep of untracked files deletes it alone.
    named = {f.rsplit("/", 1)[1] for v in (0, 1) for f in DeltaTable(table.table_uri, version=v, storage_options=s3_server.storage_options()).file_uris()}

    def data_files() -> set[str]:
        return {k.rsplit("/", 1)[1] for k in keys(s3_server, f"s3://{LAKE_BUCKET}/{prefix}/{SPEC.location}") if k.endswith(".parquet")}

    [loser] = data_files() - named
    assert loser in lake.vacuum(SPEC, 0)  # a dry run lists it (with version 0's, replaced): no commit names it
    lake.vacuum(SPEC, 0, apply=True, untracked=True)
    assert data_files() == {f.rsplit("/", 1)[1] for f in winner.files}


def _six_concurrent_appends(server: MotoServer, proxy: FaultProxy) -> tuple[list, DeltaTable]:
    """Six appenders of version 1 of a fresh table, racing: the proxy holds their six PUTs of
    the log entry until all have arrived, then relays them at once."""
    uri = f"s3://{LAKE_BUCKET}/appends-{uuid.uuid4().hex[:8]}"
    options = server.storage_options(proxy.url)
    write_deltalake(uri, pa.table({"t": [0]}), storage_options=options)
    proxy.inject(Fault("hold", method="PUT", path=FIRST_COMMIT, times=6, hold_seconds=20))

    def append(i: int):
        write_deltalake(uri, pa.table({"t": [i]}), storage_options=options, mode="append")
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(append, range(1, 7)))
    return results, DeltaTable(uri, storage_options=server.storage_options())


def test_concurrent_appends_all_land_on_a_store_that_honours_conditional_puts(
    s3_server: MotoServer, fault_proxy: FaultProxy
) -> None:
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    results, table = _six_concurrent_appends(s3_server, fault_proxy)
    assert results == ["ok"] * 6
    assert len(table.history()) == 7
    assert sorted(table.to_pyarrow_table()["t"].to_pylist()) == [0, 1, 2, 3, 4, 5, 6]


def test_without_conditional_puts_concurrent_appends_vanish_silently(
    s3_server: MotoServer, stripping_proxy: FaultProxy
) -> None:
    """Why the probe exists: every appender is told it succeeded, five of six commits are gone."""
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    results, table = _six_concurrent_appends(s3_server, stripping_proxy)
    assert results == ["ok"] * 6
    assert len(table.history()) == 2  # version 0 and one of the six
    assert len(table.to_pyarrow_table()) == 2


def test_a_rollback_is_refused_too_and_a_vacuum_writes_no_log_entry(
    s3_server: MotoServer, stripping_proxy: FaultProxy, aws_via
) -> None:
    """Every write of the log probes first, not only a table's. A vacuum writes none: it lists
    the files to delete and deletes them, so it may run."""
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    aws_via(stripping_proxy.url)
    root = f"s3://{LAKE_BUCKET}/refused-{uuid.uuid4().hex[:8]}"
    unsafe = LakeResource(root=root, allow_unconditional_writes=True).lake()
    for i in range(2):
        unsafe.write(SPEC, pa.table({"t": [i]}), {"run_id": f"r{i}"})

    lake = LakeResource(root=root, unconditional_writes_setting="X=true").lake()
    assert lake.vacuum(SPEC, retain_hours=0) != []  # a dry run lists version 0's file
    with pytest.raises(LakeError, match="X=true"):
        lake.restore(SPEC, 0, {"published_by": "test"})
    table = DeltaTable(f"{root}/{SPEC.location}", storage_options=s3_server.storage_options())
    assert table.version() == 1 and len(table.file_uris()) == 1
    assert len([k for k in keys(s3_server, f"{root}/{SPEC.location}") if k.endswith(".parquet")]) == 2
    LakeResource(root=root, unconditional_writes_setting="X=true").lake().vacuum(SPEC, retain_hours=0, apply=True)
    table = DeltaTable(f"{root}/{SPEC.location}", storage_options=s3_server.storage_options())
    assert table.version() == 1 and len(table.file_uris()) == 1  # no commit of its own
    assert len([k for k in keys(s3_server, f"{root}/{SPEC.location}") if k.endswith(".parquet")]) == 1
