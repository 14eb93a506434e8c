"""Glue Data Catalog: every table registered at exactly its published version."""

from __future__ import annotations

import re
import uuid

import pytest

from stedi_assets.lake.glue import GlueCatalog
from stedi_assets.lake.lake import Lake
from stedi_assets.lake.s3_store import S3Store
from stedi_assets.tables import CUSTOMER_TRUSTED, TABLES
from stedi_assets_tests.conftest import Lakehouse, run_cli
from stedi_assets_tests.lake.conftest import GLUE_DATABASE
from stedi_assets_tests.lake.s3_server import MotoServer, ensure_bucket, glue_tables, lake_at

pytestmark = pytest.mark.s3


@pytest.mark.reference
def test_every_table_is_in_glue_at_exactly_its_published_version(s3_server: MotoServer, s3_lakehouse: Lakehouse) -> None:
    lake = lake_at(s3_server, s3_lakehouse.env["STEDI_LAKE"])
    registered = glue_tables(s3_server, GLUE_DATABASE)
    assert set(registered) == set(TABLES)
    s3 = s3_server.client("s3")
    for name, table in TABLES.items():
        current = lake.current(table)
        storage = registered[name]["StorageDescriptor"]
        assert [(c["Name"], c["Type"]) for c in storage["Columns"]] == [(c.name.lower(), c.athena_type) for c in table.columns]
        assert storage["Location"] == current.location
        bucket, _, prefix = storage["Location"].removeprefix("s3://").partition("/")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
        # What Athena reads there: every object whose name does not start with _ or .
        read_by_athena = [k for k in keys if not k.rsplit("/", 1)[-1].startswith(("_", "."))]
        assert read_by_athena == [lake.store.uri(f).removeprefix(f"s3://{bucket}/") for f in current.files]


@pytest.mark.reference
def test_stedi_ddl_names_the_locations_glue_has(s3_server: MotoServer, s3_lakehouse: Lakehouse) -> None:
    ddl = run_cli(["stedi", "ddl"], s3_lakehouse.env, s3_lakehouse.root).stdout
    locations = dict(re.findall(rf"`{GLUE_DATABASE}`\.`(\w+)` \(.*?LOCATION '([^']+)'", ddl, re.S))
    registered = glue_tables(s3_server, GLUE_DATABASE)
    assert locations == {name: t["StorageDescriptor"]["Location"] for name, t in registered.items()}


def test_publish_creates_the_database_and_rollback_moves_the_location(s3_server: MotoServer, aws_via) -> None:
    aws_via(s3_server.url)
    database = f"stedi_unit_{uuid.uuid4().hex[:8]}"
    ensure_bucket(s3_server.client("s3"), "stedi-glue-unit")
    lake = Lake(S3Store(s3_server.client("s3"), "stedi-glue-unit", database), catalog=GlueCatalog(database=database))
    empty = CUSTOMER_TRUSTED.arrow_schema.empty_table()

    first = lake.stage(CUSTOMER_TRUSTED, empty, "r1")
    lake.publish(first)
    assert glue_tables(s3_server, database)[CUSTOMER_TRUSTED.name]["StorageDescriptor"]["Location"] == first.location

    second = lake.stage(CUSTOMER_TRUSTED, empty, "r2")
    lake.publish(second)
    entry = glue_tables(s3_server, database)[CUSTOMER_TRUSTED.name]
    assert entry["StorageDescriptor"]["Location"] == second.location
    assert entry["Parameters"]["stedi_version"] == "r2"

    lake.rollback(CUSTOMER_TRUSTED)
    assert glue_tables(s3_server, database)[CUSTOMER_TRUSTED.name]["StorageDescriptor"]["Location"] == first.location
