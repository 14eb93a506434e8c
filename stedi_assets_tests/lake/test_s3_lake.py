"""The whole lakehouse on S3 through the real CLIs: the reference counts, identical reruns,
and a rollback that `stedi sql` and Glue both see."""

from __future__ import annotations

import pytest

from stedi_assets.lake.lake import Lake
from stedi_assets.settings import ConsentPolicy
from stedi_assets.tables import ACCELEROMETER_TRUSTED, TABLES
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.conftest import Lakehouse, run_cli
from stedi_assets_tests.lake.conftest import GLUE_DATABASE
from stedi_assets_tests.lake.s3_server import MotoServer, glue_tables, lake_at
from stedi_assets_tests.test_reference_counts import REFERENCE

pytestmark = [pytest.mark.s3, pytest.mark.reference]


def test_reference_counts_on_s3(s3_lakehouse: Lakehouse) -> None:
    expected = REFERENCE[ConsentPolicy.ANY]
    [counts] = s3_lakehouse.sql("SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t}) AS {t}" for t in expected))
    assert counts == expected


def test_two_runs_give_identical_tables(s3_server: MotoServer, s3_lakehouse: Lakehouse) -> None:
    lake = lake_at(s3_server, s3_lakehouse.env["STEDI_LAKE"])
    before = _snapshot(lake)
    s3_lakehouse.materialize("*")
    after = _snapshot(lake)
    assert set(before) == set(after) == set(TABLES)
    for name in TABLES:
        assert after[name][0] != before[name][0], f"{name} was not published again"
        assert after[name][1] == before[name][1], f"{name} differs between two runs"


def test_rollback_shows_in_sql_and_glue(s3_server: MotoServer, s3_lakehouse: Lakehouse) -> None:
    lake = lake_at(s3_server, s3_lakehouse.env["STEDI_LAKE"])
    name = ACCELEROMETER_TRUSTED.name
    previous = lake.current(ACCELEROMETER_TRUSTED)

    s3_lakehouse.materialize(name, STEDI_CONSENT_POLICY=ConsentPolicy.SINCE_CONSENT.value)
    published = lake.current(ACCELEROMETER_TRUSTED)
    assert s3_lakehouse.count(name) == REFERENCE[ConsentPolicy.SINCE_CONSENT][name]
    assert _glue_location(s3_server, name) == published.location

    run_cli(["stedi", "rollback", name], s3_lakehouse.env, s3_lakehouse.root)
    assert lake.current(ACCELEROMETER_TRUSTED).version == previous.version
    assert s3_lakehouse.count(name) == REFERENCE[ConsentPolicy.ANY][name]
    assert _glue_location(s3_server, name) == previous.location


def _snapshot(lake: Lake) -> dict[str, tuple[str, list[dict]]]:
    """Each published table's version and rows, in a fixed order."""
    return {name: (t.version, sorted_rows(t.to_arrow())) for name, t in lake.published_tables().items()}


def _glue_location(server: MotoServer, name: str) -> str:
    return glue_tables(server, GLUE_DATABASE)[name]["StorageDescriptor"]["Location"]
