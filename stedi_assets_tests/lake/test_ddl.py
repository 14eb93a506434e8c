"""`stedi ddl`: Athena's DDL for Delta tables, one statement per table at its fixed root."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner

from stedi_assets.cli import main
from stedi_assets.lake.ddl import create_table, lake_ddl
from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.store import LocalStore
from stedi_assets.tables import CUSTOMER_TRUSTED, TABLES

STATEMENT = re.compile(
    r"CREATE EXTERNAL TABLE IF NOT EXISTS `(\w+)`\.`(\w+)`\nLOCATION '((?:[^'\\]|\\.)*)'\nTBLPROPERTIES \('table_type' = 'DELTA'\);\n"
)


def test_a_statement_is_athenas_delta_ddl() -> None:
    """No columns, no format, no partitions: Athena reads those from the Delta log."""
    ddl = create_table(CUSTOMER_TRUSTED.spec, "s3://lake/customer/trusted", "stedi")
    assert ddl == (
        "CREATE EXTERNAL TABLE IF NOT EXISTS `stedi`.`customer_trusted`\n"
        "LOCATION 's3://lake/customer/trusted/'\n"
        "TBLPROPERTIES ('table_type' = 'DELTA');\n"
    )


def test_quotes_in_the_location_are_escaped() -> None:
    spec = TableSpec("t", "t/zone", pa.schema([("x", pa.int64())]))
    ddl = create_table(spec, "s3://lake/it's/t/zone/", "stedi")
    assert ddl.startswith("CREATE EXTERNAL TABLE")
    assert "LOCATION 's3://lake/it\\'s/t/zone/'" in ddl


def test_every_table_at_its_root_and_a_warning_for_those_not_published(tmp_path: Path) -> None:
    lake = Lake(LocalStore(tmp_path / "lake"))
    spec = CUSTOMER_TRUSTED.spec
    lake.write(spec, spec.schema.empty_table(), {"run_id": "r1"})

    ddl = lake_ddl(lake, [t.spec for t in TABLES.values()], "stedi")
    statements = {name: location for _, name, location in STATEMENT.findall(ddl)}
    assert statements == {name: lake.uri(t.location) + "/" for name, t in TABLES.items()}
    for name in TABLES:
        assert (f"-- {name} is not published yet" in ddl) == (name != "customer_trusted")


def test_stedi_ddl_prints_every_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["ddl", "--lake", str(tmp_path / "lake"), "--database", "analytics"], env={"STEDI_GLUE_DATABASE": None}
    )
    assert result.exit_code == 0, result.output
    assert sorted(name for db, name, _ in STATEMENT.findall(result.output) if db == "analytics") == sorted(TABLES)
