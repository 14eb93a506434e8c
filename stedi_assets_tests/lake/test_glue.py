"""Glue Data Catalog: every table registered once, as a Delta table at its fixed root, and
never updated by a publish or a rollback (Athena reads the current version from the log)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable

from stedi_assets.lake import glue as glue_module
from stedi_assets.lake.glue import GlueCatalog, table_input
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets.tables import CUSTOMER_CURATED, CUSTOMER_LANDING, CUSTOMER_TRUSTED, TABLES
from stedi_assets_tests.conftest import CliLakehouse, run_cli
from stedi_assets_tests.lake.conftest import GLUE_DATABASE, LAKE_BUCKET, SOURCE_BUCKET, Rerun
from stedi_assets_tests.lake.fault_proxy import Fault, FaultProxy
from stedi_assets_tests.lake.s3_server import SECRET_KEY, MotoServer, aws_env, ensure_bucket, glue_tables, upload

pytestmark = pytest.mark.s3


def _unchanged(entry: dict) -> tuple:
    """What a Glue update would change: its version, update time, location and type."""
    return entry.get("VersionId"), entry.get("UpdateTime"), entry["StorageDescriptor"]["Location"], entry["Parameters"]


@pytest.mark.reference
def test_every_table_is_a_delta_table_at_its_root(s3_server: MotoServer, s3_lakehouse: CliLakehouse) -> None:
    registered = glue_tables(s3_server, GLUE_DATABASE)
    assert set(registered) == set(TABLES)
    for name, table in TABLES.items():
        entry = registered[name]
        assert entry["Parameters"]["table_type"] == "DELTA"
        assert entry["TableType"] == "EXTERNAL_TABLE"
        assert entry["StorageDescriptor"]["Location"] == f"{s3_lakehouse.env['STEDI_LAKE']}/{table.location}/"
        columns = [(c["Name"], c["Type"]) for c in entry["StorageDescriptor"]["Columns"]]
        expected = table_input(table.spec, entry["StorageDescriptor"]["Location"])["StorageDescriptor"]["Columns"]
        assert columns == [(c["Name"], c["Type"]) for c in expected]


@pytest.mark.reference
def test_a_rerun_and_a_rollback_change_no_glue_entry(s3_server: MotoServer, s3_lakehouse: CliLakehouse, s3_rerun: Rerun) -> None:
    assert s3_rerun.glue_before and {n: _unchanged(e) for n, e in s3_rerun.glue_after.items()} == {
        n: _unchanged(e) for n, e in s3_rerun.glue_before.items()
    }
    before = glue_tables(s3_server, GLUE_DATABASE)
    run_cli(["stedi", "rollback", CUSTOMER_CURATED.name, "--apply"], s3_lakehouse.env, s3_lakehouse.root)
    after = glue_tables(s3_server, GLUE_DATABASE)
    assert {n: _unchanged(e) for n, e in after.items()} == {n: _unchanged(e) for n, e in before.items()}


@pytest.mark.reference
def test_stedi_ddl_names_the_locations_glue_has(s3_server: MotoServer, s3_lakehouse: CliLakehouse) -> None:
    ddl = run_cli(["stedi", "ddl"], s3_lakehouse.env, s3_lakehouse.root).stdout
    statements = re.findall(
        rf"CREATE EXTERNAL TABLE IF NOT EXISTS `{GLUE_DATABASE}`\.`(\w+)`\nLOCATION '([^']+)'\nTBLPROPERTIES \('table_type' = 'DELTA'\);",
        ddl,
    )
    registered = glue_tables(s3_server, GLUE_DATABASE)
    assert dict(statements) == {name: t["StorageDescriptor"]["Location"] for name, t in registered.items()}
    assert "not published yet" not in ddl


def test_a_glue_fault_at_registration_fails_clearly_and_the_next_run_heals_it(
    s3_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    client = s3_server.client("s3")
    upload(client, SAMPLE_SOURCE, SOURCE_BUCKET, "sample")
    ensure_bucket(client, LAKE_BUCKET)
    database = f"stedi_heal_{uuid.uuid4().hex[:8]}"
    lakehouse = CliLakehouse(
        tmp_path,
        f"s3://{SOURCE_BUCKET}/sample",  # type: ignore[arg-type]  # an S3 URI, not a folder
        STEDI_LAKE=f"s3://{LAKE_BUCKET}/{database}",
        STEDI_GLUE_DATABASE=database,
        STEDI_S3_MAX_ATTEMPTS="2",
        **aws_env(fault_proxy.url),
    )
    (fault,) = fault_proxy.inject(Fault("error", method="POST", target="CreateTable", times=None))
    run = lakehouse.materialize(CUSTOMER_LANDING.name, check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and fault.injected == 2
    rejects = f"{CUSTOMER_LANDING.name}_rejects"
    assert f"Glue registration of {database}.{rejects} failed after 2 attempts (STEDI_S3_MAX_ATTEMPTS): InternalError" in output
    assert f"{rejects} was committed at s3://{LAKE_BUCKET}/{database}/customer/landing_rejects" in output
    assert SECRET_KEY not in output
    assert glue_tables(s3_server, database) == {}

    fault_proxy.inject()
    lakehouse.materialize(CUSTOMER_LANDING.name)
    registered = glue_tables(s3_server, database)
    assert set(registered) == {CUSTOMER_LANDING.name, rejects, f"{CUSTOMER_LANDING.name}_files"}
    for name, entry in registered.items():
        location = entry["StorageDescriptor"]["Location"]
        assert entry["Parameters"]["table_type"] == "DELTA"
        DeltaTable(location, storage_options=s3_server.storage_options())  # a Delta table is there
    assert lakehouse.count(CUSTOMER_LANDING.name) > 0


def test_an_entry_of_the_old_layout_is_updated_once_then_left_alone(
    s3_server: MotoServer, aws_via, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_via(s3_server.url)
    database = f"stedi_old_{uuid.uuid4().hex[:8]}"
    glue = s3_server.client("glue")
    glue.create_database(DatabaseInput={"Name": database})
    root = f"s3://{LAKE_BUCKET}/{database}/{CUSTOMER_TRUSTED.location}"
    old = table_input(CUSTOMER_TRUSTED.spec, root)
    old["StorageDescriptor"]["Location"] = f"{root}/v_run1/"  # a version folder, not a Delta table
    old["Parameters"] = {"EXTERNAL": "TRUE", "classification": "parquet"}
    glue.create_table(DatabaseName=database, TableInput=old)
    version = glue.get_table(DatabaseName=database, Name=CUSTOMER_TRUSTED.name)["Table"].get("VersionId")

    catalog = GlueCatalog(database=database)
    catalog.register(CUSTOMER_TRUSTED.spec, root)
    entry = glue.get_table(DatabaseName=database, Name=CUSTOMER_TRUSTED.name)["Table"]
    assert entry["StorageDescriptor"]["Location"] == f"{root}/" and entry["Parameters"]["table_type"] == "DELTA"
    assert entry.get("VersionId") != version  # so a VersionId that did not change means no update

    monkeypatch.setattr(glue_module, "_REGISTERED", set())  # as a new process would
    catalog.register(CUSTOMER_TRUSTED.spec, root)
    assert _unchanged(glue.get_table(DatabaseName=database, Name=CUSTOMER_TRUSTED.name)["Table"]) == _unchanged(entry)

