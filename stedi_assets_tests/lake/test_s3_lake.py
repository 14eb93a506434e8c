"""The whole lakehouse on S3 through the real CLIs: the reference counts, read back by our
`stedi sql`, by delta-rs alone and by Polars; identical reruns; a rollback that `stedi sql`
sees; `stedi versions`; `stedi vacuum`; and `stedi sql` exiting cleanly."""

from __future__ import annotations

import re

import pytest
from deltalake import DeltaTable

from stedi_assets.settings import ConsentPolicy
from stedi_assets.tables import ACCELEROMETER_TRUSTED, TABLES
from stedi_assets_tests.conftest import CliLakehouse, run_cli
from stedi_assets_tests.lake.conftest import Rerun
from stedi_assets_tests.lake.s3_server import MotoServer, keys, lake_at
from stedi_assets_tests.test_reference_counts import REFERENCE

pytestmark = [pytest.mark.s3, pytest.mark.reference]

COUNTS = REFERENCE[ConsentPolicy.ANY]


def test_reference_counts_on_s3(s3_lakehouse: CliLakehouse) -> None:
    [counts] = s3_lakehouse.sql("SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t}) AS {t}" for t in COUNTS))
    assert counts == COUNTS


def test_each_table_is_a_delta_table_at_its_location(s3_server: MotoServer, s3_lakehouse: CliLakehouse) -> None:
    lake = s3_lakehouse.env["STEDI_LAKE"]
    everything = keys(s3_server, lake)
    for table in TABLES.values():
        root = f"{lake}/{table.location}/"
        assert f"{root}_delta_log/00000000000000000000.json" in everything, table.name
        data = [k for k in everything if k.startswith(root) and "/_delta_log/" not in k]
        assert data and all(re.fullmatch(r"part-(\d{5}-)?[0-9a-f-]{36}(-c\d{3})?\.zstd\.parquet", k.removeprefix(root)) for k in data)
    # The conditional-write probe cleans up after itself.
    assert not [k for k in everything if "/_stedi_probe/" in k]


def test_delta_rs_alone_and_polars_read_the_same_counts(s3_server: MotoServer, s3_lakehouse: CliLakehouse) -> None:
    """Readers that share no code with ours, given only the location and the options."""
    polars = pytest.importorskip("polars")
    options = s3_server.storage_options()
    for name, rows in COUNTS.items():
        uri = f"{s3_lakehouse.env['STEDI_LAKE']}/{TABLES[name].location}"
        table = DeltaTable(uri, storage_options=options)
        assert table.protocol().min_reader_version == 1, name
        assert table.to_pyarrow_table().num_rows == rows, name
        assert polars.read_delta(uri, storage_options=options).height == rows, name


def test_two_runs_give_identical_tables(s3_rerun: Rerun) -> None:
    assert set(s3_rerun.before) == set(s3_rerun.after) == set(TABLES)
    for name in TABLES:
        (version_before, rows_before), (version_after, rows_after) = s3_rerun.before[name], s3_rerun.after[name]
        assert version_after > version_before, f"{name} was not committed again"
        assert rows_after == rows_before, f"{name} differs between two runs"


def test_rollback_shows_in_sql_and_versions(s3_server: MotoServer, s3_lakehouse: CliLakehouse, s3_rerun: Rerun) -> None:
    lake = lake_at(s3_server, s3_lakehouse.env["STEDI_LAKE"])
    name, spec = ACCELEROMETER_TRUSTED.name, ACCELEROMETER_TRUSTED.spec
    previous = lake.current(spec)

    s3_lakehouse.materialize(name, STEDI_CONSENT_POLICY=ConsentPolicy.SINCE_CONSENT.value)
    changed = lake.current(spec)
    assert changed.version == previous.version + 1
    assert changed.to_arrow().num_rows == REFERENCE[ConsentPolicy.SINCE_CONSENT][name]

    out = run_cli(["stedi", "rollback", name, "--apply"], s3_lakehouse.env, s3_lakehouse.root).stdout
    assert f"restored to version {previous.version} as version {previous.version + 2}" in out
    assert s3_lakehouse.count(name) == COUNTS[name]
    restored = lake.current(spec)
    assert restored.version == previous.version + 2 and restored.files == previous.files

    versions = run_cli(["stedi", "versions", name], s3_lakehouse.env, s3_lakehouse.root).stdout.splitlines()
    assert len(versions) == restored.version + 1  # newest first, every commit
    assert versions[0].split()[0] == str(restored.version) and f"restore of {previous.version}" in versions[0]
    assert "policy since_consent" in versions[1] and "policy any" in versions[2]


def test_vacuum_lists_then_deletes_on_s3(s3_server: MotoServer, s3_lakehouse: CliLakehouse, s3_rerun: Rerun) -> None:
    """Last: it deletes the files of older versions of accelerometer_trusted."""
    name, location = ACCELEROMETER_TRUSTED.name, ACCELEROMETER_TRUSTED.location
    lake = lake_at(s3_server, s3_lakehouse.env["STEDI_LAKE"])
    current = set(lake.current(ACCELEROMETER_TRUSTED.spec).files)
    args = ["stedi", "vacuum", name, "--retain-hours", "0"]

    dry = run_cli(args, s3_lakehouse.env, s3_lakehouse.root).stdout.splitlines()
    root = f"{s3_lakehouse.env['STEDI_LAKE']}/{location}/"
    listed = sorted(root + line.strip() for line in dry[1:])  # relative to the table's root
    assert dry[0] == f"{name}: would delete {len(listed)} files" and len(listed) >= 1  # the rerun's predecessor at least
    assert not set(listed) & current
    assert set(listed) <= set(keys(s3_server, root))  # still there

    applied = run_cli([*args, "--apply"], s3_lakehouse.env, s3_lakehouse.root).stdout.splitlines()
    assert applied[0] == f"{name}: deleted {len(listed)} files"
    left = set(keys(s3_server, root))
    assert not set(listed) & left and current <= left
    assert s3_lakehouse.count(name) == COUNTS[name]


def test_stedi_sql_on_s3_exits_cleanly(s3_lakehouse: CliLakehouse) -> None:
    """Arrow's S3 threads must not abort the interpreter at exit ("terminate called without
    an active exception", SIGABRT after the output): see store.arrow_buffer, Snapshot.dataset."""
    query = "SELECT (SELECT COUNT(*) FROM machine_learning_curated) + (SELECT COUNT(*) FROM accelerometer_landing) AS n"
    for _ in range(3):
        result = run_cli(["stedi", "sql", query], s3_lakehouse.env, s3_lakehouse.root, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "terminate called" not in result.stderr
        assert f"{COUNTS['machine_learning_curated'] + COUNTS['accelerometer_landing']}" in result.stdout
