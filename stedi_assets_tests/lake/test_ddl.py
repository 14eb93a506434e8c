"""`stedi ddl`: Athena DDL generated from the column contracts, at the published versions."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from stedi_assets.cli import main
from stedi_assets.lake.ddl import create_table, lake_ddl
from stedi_assets.lake.lake import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.tables import CUSTOMER_TRUSTED, TABLES


def test_a_statement_has_the_contract_columns_in_order() -> None:
    ddl = create_table(CUSTOMER_TRUSTED, "s3://lake/customer/trusted/v_1/", "stedi")
    assert ddl.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `stedi`.`customer_trusted` (\n")
    columns = re.findall(r"^  `(\w+)` (\w+) COMMENT '((?:[^'\\]|\\.)*)'", ddl, re.M)
    assert [(n, t) for n, t, _ in columns] == [(c.name.lower(), c.athena_type) for c in CUSTOMER_TRUSTED.columns]
    assert r"customer\'s step trainer" in ddl  # quotes in a description are escaped
    assert "STORED AS PARQUET\nLOCATION 's3://lake/customer/trusted/v_1/'" in ddl


def test_published_tables_get_their_version_folder_and_the_others_a_warning(tmp_path: Path) -> None:
    lake = Lake(LocalStore(tmp_path / "lake"))
    published = lake.stage(CUSTOMER_TRUSTED, CUSTOMER_TRUSTED.arrow_schema.empty_table(), "r1")
    lake.publish(published)

    ddl = lake_ddl(lake, "stedi")
    locations = dict(re.findall(r"`stedi`\.`(\w+)` \(.*?LOCATION '([^']+)'", ddl, re.S))
    assert set(locations) == set(TABLES)
    assert locations["customer_trusted"] == published.location
    for name, table in TABLES.items():
        if name != "customer_trusted":
            assert locations[name] == lake.store.uri(table.location) + "/"
            assert f"-- {name} is not published yet" in ddl
    assert "-- customer_trusted is not published yet" not in ddl


def test_stedi_ddl_prints_every_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["ddl", "--lake", str(tmp_path / "lake"), "--database", "analytics"], env={"STEDI_GLUE_DATABASE": None}
    )
    assert result.exit_code == 0, result.output
    assert sorted(re.findall(r"`analytics`\.`(\w+)`", result.output)) == sorted(TABLES)
