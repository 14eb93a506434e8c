"""S3 faults during real runs: the CLI's run goes through the fault proxy to the S3 server.

Three clients talk to S3 in a run: boto3 (landing files, listings and deletions in the lake,
Glue), delta-rs (data files it writes, and the Delta log: listings, reads, the conditional PUT
of each commit) and Arrow (data files read by the engine, and a landing table's data files,
one per source file). Transient faults on each are retried and the run succeeds; a fault
that outlasts the retries fails the run with an error naming the bucket and key, and the
published table stays exactly as it was: same Delta version, same rows, and no file of the
failed attempt named by any commit (a data file delta-rs wrote for it is left to the sweep of
untracked files)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.s3_store import S3Store
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets.tables import CUSTOMER_TRUSTED, TABLES
from stedi_assets_tests.conftest import CliLakehouse
from stedi_assets_tests.lake.conftest import LAKE_BUCKET, SOURCE_BUCKET, STALL_SECONDS, TIMEOUT_SECONDS, tables_of
from stedi_assets_tests.lake.fault_proxy import Fault, FaultProxy, Seen
from stedi_assets_tests.lake.s3_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    MotoServer,
    aws_env,
    ensure_bucket,
    glue_tables,
    keys,
    lake_at,
    upload,
)

pytestmark = pytest.mark.s3

LAKE = f"s3://{LAKE_BUCKET}/faults"
DATABASE = "stedi_faults"
ATTEMPTS = 4
TIMEOUT, STALL = TIMEOUT_SECONDS, STALL_SECONDS
DELTA_RS, BOTO3, ARROW = "object_store", "Boto3", "aws-sdk-cpp"


@pytest.fixture(scope="module")
def faulty(s3_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CliLakehouse, FaultProxy, Lake]]:
    """The bundled sample published once, without faults, on a lake reached through the proxy."""
    client = s3_server.client("s3")
    upload(client, SAMPLE_SOURCE, SOURCE_BUCKET, "sample")
    ensure_bucket(client, LAKE_BUCKET)
    with FaultProxy(s3_server.port, stall_seconds=STALL) as proxy:
        lakehouse = CliLakehouse(
            tmp_path_factory.mktemp("faults"),
            f"s3://{SOURCE_BUCKET}/sample",  # type: ignore[arg-type]  # an S3 URI, not a folder
            STEDI_LAKE=LAKE,
            STEDI_GLUE_DATABASE=DATABASE,
            STEDI_S3_MAX_ATTEMPTS=str(ATTEMPTS),
            STEDI_S3_TIMEOUT=f"{TIMEOUT:g}",
            **aws_env(proxy.url),
        )
        lakehouse.materialize("*")
        yield lakehouse, proxy, lake_at(s3_server, LAKE)


def _rerun_with(faulty: tuple[CliLakehouse, FaultProxy, Lake], *faults: Fault) -> list[Seen]:
    """Rebuild the whole graph from scratch with `faults` injected (a plain rerun on unchanged
    sources writes nothing): it must succeed, every fault must have been met as often as
    asked, and every table must hold the same rows as before in a new version. Returns the
    requests the proxy saw."""
    lakehouse, proxy, lake = faulty
    before = tables_of(lake)
    injected = proxy.inject(*faults)
    lakehouse.materialize("*", full_refresh=("*",))
    seen = list(proxy.seen)
    proxy.inject()
    assert [(f.kind, f.path or f.target, f.injected) for f in injected] == [(f.kind, f.path or f.target, f.times) for f in injected]
    after = tables_of(lake)
    assert set(after) == set(TABLES)
    for name in TABLES:
        assert after[name][0] > before[name][0], f"{name} was not committed again"
        assert after[name][1] == before[name][1], f"{name} changed"
    return seen


def test_transient_faults_on_boto3_and_arrow_requests_are_retried(faulty) -> None:
    _rerun_with(
        faulty,
        Fault("error", method="PUT", path=".zstd.parquet", agent=ARROW, times=2),  # a landing data file: 500, twice
        Fault("drop", method="PUT", path="/trusted/part-", agent=DELTA_RS, times=1),  # an upload dropped midway
        Fault("error", method="GET", path="list-type=2&prefix=sample", agent=BOTO3, status=503, times=1),  # throttled
        Fault("stall", method="GET", path="/stedi-source/sample/", agent=BOTO3, times=1),  # a landing file stalls
        Fault("truncate", method="GET", path="/stedi-source/sample/", agent=BOTO3, times=1),  # its body cut off
        Fault("error", method="GET", path=".zstd.parquet", agent=ARROW, status=503, times=1),  # the engine's read
        Fault("truncate", method="GET", path=".zstd.parquet", agent=ARROW, times=1),
        Fault("stall", method="GET", path=".zstd.parquet", agent=ARROW, times=1),
        Fault("error", method="POST", target="GetTable", times=1),  # Glue
    )


def test_transient_faults_on_delta_rs_requests_are_retried(faulty) -> None:
    seen = _rerun_with(
        faulty,
        Fault("stall", method="GET", path="/_delta_log/0", agent=DELTA_RS, times=1),  # a log entry stalls
        Fault("error", method="GET", path="_delta_log%2F", agent=DELTA_RS, status=503, times=1),  # a log listing
        Fault("truncate", method="GET", path="/_delta_log/0", agent=DELTA_RS, times=1),  # a log entry cut off
        Fault("error", method="PUT", path="/_delta_log/0", agent=DELTA_RS, times=2),  # a commit: 500, twice
        Fault("stall", method="PUT", path="/_delta_log/0", agent=DELTA_RS, times=1),  # a commit that stalls
        Fault("drop", method="PUT", path="/_delta_log/0", agent=DELTA_RS, times=1),  # a commit cut off midway
        # A commit the server made whose response never came back: delta-rs's retry is refused
        # (the entry exists) and it reports a conflict; the lake sees its own commit in the log.
        Fault("lose", method="PUT", path="/_delta_log/0", agent=DELTA_RS, times=1),
    )
    # The stalled log read was abandoned after STEDI_S3_TIMEOUT (delta-rs's `timeout`
    # option), not when the proxy hung up after STALL seconds.
    reads = [s for s in seen if s.method == "GET" and "/_delta_log/0" in s.path and DELTA_RS in (s.header("User-Agent") or "")]
    stalled = reads[0]
    retry = next(s for s in reads[1:] if s.path == stalled.path)
    assert TIMEOUT - 0.5 < retry.at - stalled.at < STALL - 1.0


LOG = f"{CUSTOMER_TRUSTED.location}/_delta_log/"
AFTER_ATTEMPTS = f"failed after {ATTEMPTS} attempts (STEDI_S3_MAX_ATTEMPTS)"
# A fault for good, and what the error must say besides the table's root.
LASTING = {
    "delta-rs commit PUT 500": (Fault("error", method="PUT", path=LOG, times=None), ["S3 PUT", "/_delta_log/", AFTER_ATTEMPTS]),
    # delta-rs does not retry a conditional PUT that timed out (it cannot know whether it was
    # made); the lake does, after reading the log, while no other writer has committed.
    "delta-rs commit PUT stall": (
        Fault("stall", method="PUT", path=LOG, times=None),
        ["S3 PUT", "/_delta_log/", f"({ATTEMPTS} commit attempts, STEDI_S3_MAX_ATTEMPTS)", "operation timed out"],
    ),
    "delta-rs data file PUT 500": (
        Fault("error", method="PUT", path=f"{CUSTOMER_TRUSTED.location}/part-", times=None),
        ["S3 PUT", "/part-", AFTER_ATTEMPTS, "InternalError"],
    ),
}


@pytest.mark.parametrize("case", list(LASTING))
def test_a_lasting_fault_fails_the_run_and_keeps_the_published_table(
    faulty: tuple[CliLakehouse, FaultProxy, Lake], s3_server: MotoServer, case: str
) -> None:
    lakehouse, proxy, lake = faulty
    fault, expected = LASTING[case]
    spec = CUSTOMER_TRUSTED.spec
    root = f"{LAKE}/{spec.location}"
    published, rows = lake.current(spec), lake.current(spec).to_arrow()
    objects = keys(s3_server, root)
    glue = glue_tables(s3_server, DATABASE)[spec.name]

    (injected,) = proxy.inject(Fault(fault.kind, method=fault.method, path=fault.path, agent=fault.agent, times=None))
    result = lakehouse.materialize(CUSTOMER_TRUSTED.name, check=False, full_refresh=(CUSTOMER_TRUSTED.name,))
    proxy.inject()

    output = result.stdout + result.stderr
    assert result.returncode != 0
    [message] = {line.strip() for line in output.splitlines() if line.strip().startswith("stedi_assets.lake.errors.")}
    assert f" {root}/" in message and all(e in message for e in expected), message
    assert injected.injected >= ATTEMPTS
    assert SECRET_KEY not in output and "\x1b[" not in message and "<Error>" not in message
    after = lake.current(spec)
    assert after.version == published.version and after.files == published.files
    assert after.to_arrow().equals(rows)
    assert lakehouse.count(spec.name) == rows.num_rows
    # Nothing of the failed attempt is published: no new log entry. Data files delta-rs wrote
    # for it may be left (the lake cannot tell them from another writer's, about to be
    # committed): named by no commit, they are what the sweep of untracked files deletes.
    left = set(keys(s3_server, root)) - set(objects)
    assert set(objects) <= set(keys(s3_server, root))
    assert {k.rsplit("/", 1)[1] for k in left} <= set(lake.vacuum(spec, 0)), left
    assert all(k.endswith(".parquet") and "/_delta_log/" not in k for k in left), left
    assert glue_tables(s3_server, DATABASE)[spec.name] == glue


def test_a_commit_whose_response_is_lost_is_kept_not_discarded(s3_server: MotoServer, fault_proxy: FaultProxy) -> None:
    """In the library itself: delta-rs reports the commit failed, the log says it landed."""
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    s3 = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION)
    lake = Lake(
        S3Store(s3.client("s3", endpoint_url=fault_proxy.url), LAKE_BUCKET, f"lost-{uuid.uuid4().hex[:8]}"),
        storage_options=s3_server.storage_options(fault_proxy.url),
    )
    spec = TableSpec("readings", "readings/trusted", pa.schema([("t", pa.int64())]))
    lake.write(spec, pa.table({"t": [0]}), {"run_id": "r0"})
    (lose,) = fault_proxy.inject(Fault("lose", method="PUT", path="/_delta_log/00000000000000000001.json", times=1))
    snapshot = lake.write(spec, pa.table({"t": [1, 2]}), {"run_id": "r1"})
    assert lose.injected == 1
    assert snapshot.version == 1 and snapshot.info["run_id"] == "r1"
    table = DeltaTable(lake.uri(spec.location), storage_options=s3_server.storage_options())
    assert table.to_pyarrow_table().to_pydict() == {"t": [1, 2]}  # its files are all there
