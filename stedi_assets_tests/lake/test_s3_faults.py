"""S3 faults during real runs: the CLI's run goes through the fault proxy to the S3 server.
Transient faults are retried and the run succeeds; a fault that outlasts the retries fails
the run with an error naming the object, and the published table stays as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stedi_assets.lake.lake import Lake, LakeTable
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets.tables import CUSTOMER_TRUSTED, TABLES
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.conftest import Lakehouse
from stedi_assets_tests.lake.conftest import LAKE_BUCKET, SOURCE_BUCKET
from stedi_assets_tests.lake.fault_proxy import Fault, FaultProxy
from stedi_assets_tests.lake.s3_server import SECRET_KEY, MotoServer, aws_env, ensure_bucket, glue_tables, lake_at, upload

pytestmark = pytest.mark.s3

LAKE = f"s3://{LAKE_BUCKET}/faults"
DATABASE = "stedi_faults"
ATTEMPTS = 4


@pytest.fixture(scope="module")
def faulty(s3_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lakehouse, FaultProxy, Lake]]:
    """The bundled sample published once, without faults, on a lake reached through the proxy."""
    client = s3_server.client("s3")
    upload(client, SAMPLE_SOURCE, SOURCE_BUCKET, "sample")
    ensure_bucket(client, LAKE_BUCKET)
    with FaultProxy(s3_server.port, stall_seconds=7.0) as proxy:
        lakehouse = Lakehouse(
            tmp_path_factory.mktemp("faults"),
            f"s3://{SOURCE_BUCKET}/sample",  # type: ignore[arg-type]  # an S3 URI, not a folder
            STEDI_LAKE=LAKE,
            STEDI_GLUE_DATABASE=DATABASE,
            STEDI_S3_MAX_ATTEMPTS=str(ATTEMPTS),
            STEDI_S3_TIMEOUT="3",
            **aws_env(proxy.url),
        )
        lakehouse.materialize("*")
        yield lakehouse, proxy, lake_at(s3_server, LAKE)


def test_transient_faults_are_retried_and_the_run_succeeds(faulty: tuple[Lakehouse, FaultProxy, Lake]) -> None:
    lakehouse, proxy, lake = faulty
    faults = proxy.inject(
        Fault("error", method="PUT", path="part-00000.parquet", times=2),
        Fault("drop", method="PUT", path="/trusted/v_", times=1),  # in the middle of the upload
        Fault("error", method="GET", path="list-type=2", status=503, times=1),  # throttled
        Fault("stall", method="GET", path="_current.json", times=1),  # past the timeout
        Fault("truncate", method="GET", path="part-00000.parquet", times=1),  # body cut off
        Fault("error", method="POST", target="UpdateTable", times=1),  # Glue
    )
    lakehouse.materialize("*")
    assert [f.injected for f in faults] == [f.times for f in faults]
    for table in TABLES.values():
        current, previous, *_ = lake.history(table)
        assert current["version"] != previous["version"]
        assert _rows(lake, table, current) == _rows(lake, table, previous), f"{table.name} changed"


def test_a_lasting_fault_fails_the_run_and_keeps_the_published_table(
    faulty: tuple[Lakehouse, FaultProxy, Lake], s3_server: MotoServer
) -> None:
    """The publish itself fails: the pointer PUT gets 500s for good (a lasting stall is
    covered in test_s3_store.py, without the cost of another run)."""
    lakehouse, proxy, lake = faulty
    published = lake.current(CUSTOMER_TRUSTED)
    rows = published.to_arrow()

    (fault,) = proxy.inject(Fault("error", method="PUT", path=f"{CUSTOMER_TRUSTED.location}/_current.json", times=None))
    result = lakehouse.materialize(CUSTOMER_TRUSTED.name, check=False)
    proxy.inject()

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"S3 PUT {LAKE}/{CUSTOMER_TRUSTED.location}/_current.json failed after {ATTEMPTS} attempts" in output
    assert fault.injected == ATTEMPTS
    assert SECRET_KEY not in output
    after = lake.current(CUSTOMER_TRUSTED)
    assert after.version == published.version
    assert after.to_arrow().equals(rows)
    assert lakehouse.count(CUSTOMER_TRUSTED.name) == rows.num_rows
    assert glue_tables(s3_server, DATABASE)[CUSTOMER_TRUSTED.name]["StorageDescriptor"]["Location"] == published.location


def _rows(lake: Lake, table, entry: dict):
    version = LakeTable(table, entry["version"], tuple(entry["files"]), entry["rows"], lake.store)
    return sorted_rows(version.to_arrow())
