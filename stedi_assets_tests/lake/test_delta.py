"""The Delta library on a local lake: stage, commit, discard, restore, vacuum, history and
companions, read by delta-rs, DuckDB and Polars without our code. The tests use a spec of
their own: lake/ knows nothing of the app's tables."""

from __future__ import annotations

import json

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, Schema

from stedi_assets.lake import delta as delta_module
from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.errors import LakeError, TableNotPublishedError
from stedi_assets.lake.store import LocalStore

READINGS = TableSpec(
    "readings",
    "readings/trusted",
    pa.schema(
        [
            pa.field("user", pa.string(), metadata={"comment": "e-mail of the owner"}),
            pa.field("timestamp", pa.int64()),
            pa.field("x", pa.float64()),
            pa.field("source_file", pa.dictionary(pa.int32(), pa.string())),
        ]
    ),
)
REJECTS = TableSpec("readings_rejects", "readings/rejects", pa.schema([pa.field("raw", pa.string())]))


def readings(*timestamps: int, user: str = "ann@example.com") -> pa.Table:
    n = len(timestamps)
    return pa.table(
        {
            "x": [1] * n,  # an int column where the contract has a double: conformed on staging
            "timestamp": list(timestamps),
            "user": [user] * n,
            "source_file": pa.array(["a.json"] * n).dictionary_encode(),
        }
    )


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(LocalStore(tmp_path / "lake"))


def table_dir(lake: Lake, spec: TableSpec = READINGS) -> str:
    return lake.uri(spec.location)


def test_staged_files_are_invisible_until_committed(lake, tmp_path):
    staged = lake.stage(READINGS, readings(1, 2))
    assert all((tmp_path / "lake" / key).is_file() for key in staged.files)
    with pytest.raises(TableNotPublishedError, match="readings has no published version"):
        lake.current(READINGS)
    snapshot = lake.commit(staged, {"run_id": "r1"})
    assert (snapshot.version, snapshot.rows) == (0, 2)
    assert snapshot.to_arrow().column("timestamp").to_pylist() == [1, 2]


def test_a_commit_replaces_the_whole_previous_version_and_keeps_it_in_the_history(lake):
    lake.commit(lake.stage(READINGS, readings(1, 2)), {"run_id": "r1"})
    lake.commit(lake.stage(READINGS, readings(3)), {"run_id": "r2"})
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [3]
    assert lake.at(READINGS, 0).to_arrow().column("timestamp").to_pylist() == [1, 2]
    assert [(c.version, c.info["run_id"]) for c in lake.history(READINGS)] == [(1, "r2"), (0, "r1")]


def test_the_table_is_plain_delta_at_reader_protocol_1_for_every_engine(lake):
    lake.commit(lake.stage(READINGS, readings(1, 2, 3)), {"run_id": "r1", "rules": {"unique": 0}})
    uri = table_dir(lake)
    table = DeltaTable(uri)
    assert table.protocol().min_reader_version == 1
    assert table.protocol().reader_features is None
    assert table.to_pyarrow_table().num_rows == 3
    assert table.history(1)[0]["stedi"] == {"run_id": "r1", "rules": {"unique": 0}}
    assert pl.read_delta(uri).height == 3
    assert pl.scan_delta(uri).filter(pl.col("user") != "nobody").collect().height == 3  # filters see the rows
    files = [f.removeprefix("file://") for f in table.file_uris()]
    assert duckdb.sql(f"SELECT COUNT(*) FROM read_parquet({files!r}) WHERE user <> 'x'").fetchone() == (3,)
    # Column descriptions are Delta column comments; the contract's types are the stored ones.
    fields = {f.name: f for f in table.schema().fields}
    assert fields["user"].metadata == {"comment": "e-mail of the owner"}
    assert str(fields["x"].type) == 'PrimitiveType("double")'


def test_the_log_holds_no_personal_values(lake, tmp_path):
    """File statistics are row counts only: no e-mail in the log, as bounds or otherwise."""
    lake.commit(lake.stage(READINGS, readings(1, user="secret.person@example.com")), {"run_id": "r1"})
    log = b"".join(p.read_bytes() for p in (tmp_path / "lake" / "readings" / "trusted" / "_delta_log").iterdir())
    assert b"secret.person" not in log
    add = next(json.loads(line)["add"] for line in log.decode().splitlines() if '"add"' in line)
    assert json.loads(add["stats"]) == {"numRecords": 1}


def test_a_large_table_is_written_as_several_files(lake, monkeypatch):
    monkeypatch.setattr(delta_module, "ROWS_PER_FILE", 2)
    snapshot = lake.commit(lake.stage(READINGS, readings(1, 2, 3, 4, 5)), {})
    assert len(snapshot.files) == 3 and snapshot.rows == 5
    assert sorted(snapshot.to_arrow().column("timestamp").to_pylist()) == [1, 2, 3, 4, 5]


def test_discard_deletes_staged_files_and_a_failed_commit_leaves_nothing(lake, tmp_path, monkeypatch):
    lake.commit(lake.stage(READINGS, readings(1)), {})
    before = set((tmp_path / "lake" / "readings" / "trusted").glob("*.parquet"))
    lake.discard(lake.stage(READINGS, readings(666)))
    assert set((tmp_path / "lake" / "readings" / "trusted").glob("*.parquet")) == before

    def refuse(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", refuse)
    with pytest.raises(LakeError, match="commit of readings .* failed, nothing was published: disk on fire"):
        lake.commit(lake.stage(READINGS, readings(7)), {})
    assert set((tmp_path / "lake" / "readings" / "trusted").glob("*.parquet")) == before
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [1]


def test_two_writers_of_the_same_version_cannot_both_commit(lake):
    """Delta's commits are conditional: the second writer of version 1 is refused, nothing is lost."""
    lake.commit(lake.stage(READINGS, readings(1)), {"run_id": "r0"})
    first, second = DeltaTable(table_dir(lake)), DeltaTable(table_dir(lake))  # both read version 0
    a, b = lake.stage(READINGS, readings(2)), lake.stage(READINGS, readings(3))
    schema = Schema.from_arrow(READINGS.storage_schema)
    first.create_write_transaction(a.actions, mode="overwrite", schema=schema)
    with pytest.raises(Exception, match="(?i)conflict|concurrent|version"):
        second.create_write_transaction(b.actions, mode="overwrite", schema=schema)
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [2]
    assert len(lake.history(READINGS)) == 2


def test_a_companion_is_read_at_the_version_its_table_names(lake):
    first_rejects = lake.commit(lake.stage(REJECTS, pa.table({"raw": ["bad 1"]})), {})
    lake.commit(lake.stage(READINGS, readings(1)), {}, companions=[first_rejects])
    # A later rejects commit whose table commit never happened (a failure between the two):
    lake.commit(lake.stage(REJECTS, pa.table({"raw": ["bad 2", "bad 3"]})), {})
    paired = lake.companion(lake.current(READINGS), REJECTS)
    assert paired.version == first_rejects.version
    assert paired.to_arrow().column("raw").to_pylist() == ["bad 1"]


def test_restore_is_a_new_commit_and_keeps_the_history(lake):
    lake.commit(lake.stage(READINGS, readings(1)), {"run_id": "r1"})
    lake.commit(lake.stage(READINGS, readings(2)), {"run_id": "r2"})
    restored = lake.restore(READINGS, 0, {"restored_version": 0, "run_id": "r1"})
    assert restored.version == 2
    assert restored.to_arrow().column("timestamp").to_pylist() == [1]
    assert [c.operation for c in lake.history(READINGS)] == ["RESTORE", "WRITE", "CREATE TABLE"]
    assert restored.info == {"restored_version": 0, "run_id": "r1"}


def test_vacuum_is_a_dry_run_unless_applied(lake, tmp_path):
    lake.commit(lake.stage(READINGS, readings(1)), {})
    lake.commit(lake.stage(READINGS, readings(2)), {})
    orphan = lake.stage(READINGS, readings(3))  # staged by a run that died before committing
    folder = tmp_path / "lake" / "readings" / "trusted"
    files = sorted(p.name for p in folder.glob("*.parquet"))
    listed = lake.vacuum(READINGS, retain_hours=0)
    assert len(listed) == 2 and orphan.files[0].rsplit("/", 1)[1] in listed
    assert sorted(p.name for p in folder.glob("*.parquet")) == files  # nothing deleted
    assert lake.vacuum(READINGS, retain_hours=0, apply=True) == listed
    assert len(list(folder.glob("*.parquet"))) == 1
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [2]


def test_tables_staged_as_a_sequence_get_a_data_file_each(lake):
    snapshot = lake.commit(lake.stage(READINGS, [readings(1, 2), readings(3, user="bob@example.com")]), {})
    assert len(snapshot.files) == 2
    assert sorted(map(sorted, snapshot.values_by_file("user").values())) == [["ann@example.com"], ["bob@example.com"]]


def test_a_commit_on_a_base_version_removes_the_files_it_names_and_keeps_the_others(lake):
    first = lake.commit(lake.stage(READINGS, [readings(1, 2), readings(3, user="bob@example.com")]), {"run_id": "r1"})
    ann = [f for f, users in first.values_by_file("user").items() if users == {"ann@example.com"}]
    second = lake.commit(lake.stage(READINGS, [readings(4)]), {"run_id": "r2"}, base=first, removes=ann)
    assert (second.version, second.rows) == (1, 2)
    assert sorted(second.to_arrow().column("timestamp").to_pylist()) == [3, 4]
    assert DeltaTable(table_dir(lake)).history(1)[0]["operationParameters"]["mode"] == "Append"
    # Nothing staged: a commit that only removes files.
    third = lake.commit(None, {"run_id": "r3"}, base=second, removes=[f for f in second.files if f not in first.files])
    assert sorted(third.to_arrow().column("timestamp").to_pylist()) == [3]


def test_a_commit_on_a_stale_base_fails_and_publishes_nothing(lake, tmp_path):
    first = lake.commit(lake.stage(READINGS, readings(1)), {})
    lake.commit(lake.stage(READINGS, readings(2)), {}, base=first)
    staged = lake.stage(READINGS, readings(3))
    with pytest.raises(LakeError, match="committed by another writer since version 0 was read"):
        lake.commit(staged, {}, base=first)
    assert sorted(lake.current(READINGS).to_arrow().column("timestamp").to_pylist()) == [1, 2]
    assert not any((tmp_path / "lake" / key).exists() for key in staged.files)  # discarded
    with pytest.raises(LakeError, match="has no data file"):
        lake.commit(None, {}, base=lake.current(READINGS), removes=["/elsewhere/part.parquet"])


def test_a_part_of_a_version_is_read_like_the_version(lake):
    snapshot = lake.commit(lake.stage(READINGS, [readings(1), readings(2, 3)]), {})
    assert snapshot.part([]).num_rows == 0  # an empty table, not a scan of no files
    [bigger] = [f for f in snapshot.files if snapshot.part([f]).dataset().count_rows() == 2]
    assert sorted(snapshot.part([bigger]).to_arrow().column("timestamp").to_pylist()) == [2, 3]
