"""Fixtures of the S3 tests: one moto server and one lakehouse on S3 for the session, a
fault proxy per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stedi_assets.lake.delta import Lake
from stedi_assets.lake.s3_client import shared_client
from stedi_assets.tables import TABLES
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.conftest import CliLakehouse
from stedi_assets_tests.lake.fault_proxy import FaultProxy
from stedi_assets_tests.lake.s3_server import MotoServer, aws_env, ensure_bucket, glue_tables, lake_at, upload

# Stalls: a client gives up after TIMEOUT_SECONDS (STEDI_S3_TIMEOUT), the fault proxy hangs up
# after STALL_SECONDS, well past it, so a retry proves the timeout fired. Short, so that the
# tests of every stall and lasting stall wait seconds, not minutes.
TIMEOUT_SECONDS = 1.0
STALL_SECONDS = 3.0
SOURCE_BUCKET = "stedi-source"
LAKE_BUCKET = "stedi-lake"
GLUE_DATABASE = "stedi_test"


@pytest.fixture(scope="session")
def no_aws_settings() -> Iterator[None]:
    """The developer's own AWS settings (a profile, a region) must not leak into the tests:
    every process gets its AWS_* variables from aws_env() only."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def s3_server(no_aws_settings: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def fault_proxy(s3_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.port, stall_seconds=STALL_SECONDS) as proxy:
        yield proxy


@pytest.fixture
def aws_via(monkeypatch: pytest.MonkeyPatch):
    """Point this process's AWS clients at an endpoint (fresh clients: the cache is cleared)."""

    def point(endpoint: str) -> dict[str, str]:
        env = aws_env(endpoint)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        shared_client.cache_clear()
        return env

    yield point
    shared_client.cache_clear()


@pytest.fixture(scope="session")
def s3_lakehouse(s3_server: MotoServer, reference_data: Path, tmp_path_factory: pytest.TempPathFactory) -> CliLakehouse:
    """The real STEDI data uploaded to S3 and the whole graph run once on it through the CLI,
    with the lake on S3 and every table registered in Glue."""
    client = s3_server.client("s3")
    upload(client, reference_data, SOURCE_BUCKET, "reference")
    ensure_bucket(client, LAKE_BUCKET)
    lakehouse = CliLakehouse(
        tmp_path_factory.mktemp("s3_lakehouse"),
        f"s3://{SOURCE_BUCKET}/reference",  # type: ignore[arg-type]  # an S3 URI, not a folder
        STEDI_LAKE=f"s3://{LAKE_BUCKET}/reference",
        STEDI_GLUE_DATABASE=GLUE_DATABASE,
        **aws_env(s3_server.url),
    )
    lakehouse.materialize("*")
    return lakehouse



@dataclass(frozen=True)
class Rerun:
    """The session's S3 lake before and after a second run of the whole graph: each table's
    (version, sorted rows), and its Glue entry before and after."""

    before: dict[str, tuple[int, list[dict]]]
    after: dict[str, tuple[int, list[dict]]]
    glue_before: dict[str, dict]
    glue_after: dict[str, dict]


@pytest.fixture(scope="session")
def s3_rerun(s3_server: MotoServer, s3_lakehouse: CliLakehouse) -> Rerun:
    """The whole graph rebuilt from scratch a second time on the session's S3 lake (once, for
    every test that needs a rerun: it costs a whole run). A full refresh, since a plain rerun
    on unchanged sources commits nothing new."""
    lake = lake_at(s3_server, s3_lakehouse.env["STEDI_LAKE"])
    before, glue_before = tables_of(lake), glue_tables(s3_server, GLUE_DATABASE)
    s3_lakehouse.materialize("*", full_refresh=("*",))
    return Rerun(before, tables_of(lake), glue_before, glue_tables(s3_server, GLUE_DATABASE))


def tables_of(lake: Lake) -> dict[str, tuple[int, list[dict]]]:
    """Each published table's version and rows, in a fixed order."""
    return {
        name: (snapshot.version, sorted_rows(snapshot.to_arrow()))
        for name, snapshot in lake.current_versions([t.spec for t in TABLES.values()]).items()
    }
