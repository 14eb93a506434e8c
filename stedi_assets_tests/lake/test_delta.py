"""The Delta library on a local lake: write, conditional writes, restore, vacuum, history and
companions, read by delta-rs, DuckDB and Polars without our code. The tests use a spec of
their own: lake/ knows nothing of the app's tables."""

from __future__ import annotations

import json
from pathlib import Path

import deltalake
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from stedi_assets.engine.duckdb_engine import DuckDBEngine
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


def parquet_files(lake: Lake, spec: TableSpec = READINGS) -> set[str]:
    return {p.name for p in Path(table_dir(lake, spec)).glob("*.parquet")}


def test_a_write_is_the_next_version_and_conforms_to_the_contract(lake):
    with pytest.raises(TableNotPublishedError, match="readings has no published version"):
        lake.current(READINGS)
    snapshot = lake.write(READINGS, readings(1, 2), {"run_id": "r1"})
    assert (snapshot.version, snapshot.rows) == (0, 2)
    assert snapshot.to_arrow().column("timestamp").to_pylist() == [1, 2]
    assert snapshot.to_arrow().schema.field("x").type == pa.float64()


def test_a_write_replaces_the_whole_previous_version_and_keeps_it_in_the_history(lake):
    lake.write(READINGS, readings(1, 2), {"run_id": "r1"})
    lake.write(READINGS, readings(3), {"run_id": "r2"})
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [3]
    assert lake.at(READINGS, 0).to_arrow().column("timestamp").to_pylist() == [1, 2]
    assert [(c.version, c.info["run_id"]) for c in lake.history(READINGS)] == [(1, "r2"), (0, "r1")]
    appended = lake.write(READINGS, readings(4), {"run_id": "r3"}, mode="append")
    assert sorted(appended.to_arrow().column("timestamp").to_pylist()) == [3, 4]


def test_the_table_is_plain_delta_at_reader_protocol_1_for_every_engine(lake):
    lake.write(READINGS, readings(1, 2, 3), {"run_id": "r1", "rules": {"unique": 0}})
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
    """File statistics are row counts only: no e-mail in the log, as bounds or otherwise,
    whether delta-rs wrote the file or Arrow did (a table written in parts)."""
    lake.write(READINGS, readings(1, user="secret.person@example.com"), {"run_id": "r1"})
    lake.write(READINGS, [readings(2, user="secret.person@example.com")], {"run_id": "r2"})
    log = b"".join(p.read_bytes() for p in (tmp_path / "lake" / "readings" / "trusted" / "_delta_log").iterdir())
    assert b"secret.person" not in log
    adds = [json.loads(line)["add"] for line in log.decode().splitlines() if '"add"' in line]
    assert len(adds) == 2
    for add in adds:
        stats = json.loads(add["stats"])
        assert stats["numRecords"] == 1 and not any(stats.get(k) for k in ("minValues", "maxValues", "nullCount"))
    assert DeltaTable(table_dir(lake)).metadata().configuration == {"delta.dataSkippingNumIndexedCols": "0"}


def test_a_commit_whose_response_was_lost_is_recognised_by_its_write_id(lake, monkeypatch):
    """The commit landed but the client saw an error: the write id in the commit tells."""
    lake.write(READINGS, readings(1), {"run_id": "r0"})
    real = deltalake.write_deltalake

    def lost_response(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError("connection reset by peer")

    monkeypatch.setattr(deltalake, "write_deltalake", lost_response)
    snapshot = lake.write(READINGS, readings(2, 3), {"run_id": "r1"})
    assert (snapshot.version, snapshot.rows, snapshot.info["run_id"]) == (1, 2, "r1")
    assert len(parquet_files(lake)) == 2  # its file kept: the commit names it

    def refused(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(deltalake, "write_deltalake", refused)
    with pytest.raises(LakeError, match="commit of readings .* failed, nothing was published: disk on fire"):
        lake.write(READINGS, readings(7), {})
    assert lake.current(READINGS).version == 1


def test_a_companion_is_read_at_the_version_its_table_names(lake):
    first_rejects = lake.write(REJECTS, pa.table({"raw": ["bad 1"]}), {})
    lake.write(READINGS, readings(1), {}, companions=[first_rejects])
    # A later rejects commit whose table commit never happened (a failure between the two):
    lake.write(REJECTS, pa.table({"raw": ["bad 2", "bad 3"]}), {})
    paired = lake.companion(lake.current(READINGS), REJECTS)
    assert paired.version == first_rejects.version
    assert paired.to_arrow().column("raw").to_pylist() == ["bad 1"]


def test_restore_is_a_new_commit_and_keeps_the_history(lake):
    lake.write(READINGS, readings(1), {"run_id": "r1"})
    lake.write(READINGS, readings(2), {"run_id": "r2"})
    restored = lake.restore(READINGS, 0, {"restored_version": 0, "run_id": "r1"})
    assert restored.version == 2
    assert restored.to_arrow().column("timestamp").to_pylist() == [1]
    assert [c.operation for c in lake.history(READINGS)] == ["RESTORE", "WRITE", "WRITE"]
    assert restored.info == {"restored_version": 0, "run_id": "r1"}


def test_vacuum_is_a_dry_run_unless_applied(lake, tmp_path):
    lake.write(READINGS, readings(1), {})
    lake.write(READINGS, readings(2), {})
    folder = tmp_path / "lake" / "readings" / "trusted"
    pq.write_table(readings(3), folder / "part-orphan.zstd.parquet")  # written by a run that died before committing
    files = sorted(p.name for p in folder.glob("*.parquet"))
    listed = lake.vacuum(READINGS, retain_hours=0)
    assert len(listed) == 2 and "part-orphan.zstd.parquet" in listed
    assert sorted(p.name for p in folder.glob("*.parquet")) == files  # nothing deleted
    assert lake.vacuum(READINGS, retain_hours=0, apply=True) == listed
    assert len(list(folder.glob("*.parquet"))) == 1
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [2]


def test_tables_written_as_a_sequence_get_a_data_file_each(lake):
    snapshot = lake.write(READINGS, [readings(1, 2), readings(3, user="bob@example.com")], {})
    assert len(snapshot.files) == 2
    assert sorted(map(sorted, snapshot.values_by_file("user").values())) == [["ann@example.com"], ["bob@example.com"]]


def test_a_write_on_a_base_version_removes_the_files_it_names_and_keeps_the_others(lake):
    first = lake.write(READINGS, [readings(1, 2), readings(3, user="bob@example.com")], {"run_id": "r1"})
    ann = [f for f, users in first.values_by_file("user").items() if users == {"ann@example.com"}]
    second = lake.write(READINGS, [readings(4)], {"run_id": "r2"}, base=first, removes=ann)
    assert (second.version, second.rows) == (1, 2)
    assert sorted(second.to_arrow().column("timestamp").to_pylist()) == [3, 4]
    assert DeltaTable(table_dir(lake)).history(1)[0]["operationParameters"]["mode"] == "Append"
    # Nothing to add: a commit that only removes files.
    third = lake.write(READINGS, None, {"run_id": "r3"}, base=second, removes=[f for f in second.files if f not in first.files])
    assert sorted(third.to_arrow().column("timestamp").to_pylist()) == [3]
    # A table on a base: appended, or replacing every file of the base (delta-rs writes both).
    fourth = lake.write(READINGS, readings(5), {"run_id": "r4"}, base=third)
    assert sorted(fourth.to_arrow().column("timestamp").to_pylist()) == [3, 5]
    fifth = lake.write(READINGS, readings(6), {"run_id": "r5"}, base=fourth, removes=fourth.files)
    assert fifth.to_arrow().column("timestamp").to_pylist() == [6] and fifth.info == {"run_id": "r5"}


@pytest.mark.parametrize("parts", [False, True], ids=["delta-rs", "parts"])
def test_two_writers_of_one_base_cannot_both_commit_and_the_loser_leaves_nothing(lake, parts):
    """Commits on a base are conditional: the second writer of version 1 is refused, with
    nothing merged blindly, nothing lost, and no data file of its own left behind."""
    data = (lambda *t: [readings(*t)]) if parts else readings
    first = lake.write(READINGS, data(1), {})
    lake.write(READINGS, data(2), {}, base=first)
    files = parquet_files(lake)
    with pytest.raises(LakeError, match="committed by another writer since version 0 was read"):
        lake.write(READINGS, data(3), {}, base=first)
    assert sorted(lake.current(READINGS).to_arrow().column("timestamp").to_pylist()) == [1, 2]
    assert len(lake.history(READINGS)) == 2
    assert parquet_files(lake) == files
    with pytest.raises(LakeError, match="has no data file"):
        lake.write(READINGS, None, {}, base=lake.current(READINGS), removes=["/elsewhere/part.parquet"])


def test_a_part_of_a_version_is_read_like_the_version(lake):
    snapshot = lake.write(READINGS, [readings(1), readings(2, 3)], {})
    empty = snapshot.part([])  # a version of no file: engines scan its empty dataset, not a list of no files
    assert (empty.rows, empty.local_paths(), empty.to_arrow().num_rows) == (0, None, 0)
    assert DuckDBEngine().query("SELECT COUNT(*) AS n FROM t", {"t": empty}).to_pylist() == [{"n": 0}]
    [bigger] = [f for f in snapshot.files if snapshot.part([f]).dataset().count_rows() == 2]
    assert sorted(snapshot.part([bigger]).to_arrow().column("timestamp").to_pylist()) == [2, 3]
    assert snapshot.without([bigger]).to_arrow().column("timestamp").to_pylist() == [1]
    assert snapshot.without(snapshot.files).rows == 0


def test_a_vacuum_lists_each_file_left_once_and_never_one_it_deleted(lake):
    first = lake.write(READINGS, [readings(1), readings(2)], {})
    gone = first.files[0].rsplit("/", 1)[1]
    second = lake.write(READINGS, None, {}, base=first, removes=[first.files[0]])
    restored = lake.restore(READINGS, first.version, {}, on=second.version)  # the file is in again
    lake.write(READINGS, None, {}, base=restored, removes=[first.files[0]])  # and removed a second time
    assert lake.vacuum(READINGS, retain_hours=0) == [gone]  # once, though two commits remove it
    assert lake.vacuum(READINGS, retain_hours=0, apply=True) == [gone]
    assert lake.vacuum(READINGS, retain_hours=0) == []  # the same dry run: nothing left to list
    assert lake.current(READINGS).to_arrow().column("timestamp").to_pylist() == [2]


def test_a_write_returns_the_version_it_committed_though_another_writer_committed_since(tmp_path):
    """What a landing table's commit names as its rejects' version must be its own rejects'."""
    lake, other = Lake(LocalStore(tmp_path / "lake")), Lake(LocalStore(tmp_path / "lake"))

    class AnotherWriterCommitsRightAfter:  # the catalog is told of each commit right after it
        def register(self, spec: TableSpec, uri: str) -> None:
            other.write(spec, readings(9), {"run_id": "other"}, mode="append")

    lake.catalog = AnotherWriterCommitsRightAfter()
    mine = lake.write(READINGS, readings(1), {"run_id": "mine"})
    assert (mine.version, mine.info, mine.rows) == (0, {"run_id": "mine"}, 1)
    assert lake.current(READINGS).version == 1


def test_a_stage_that_fails_midway_deletes_the_files_it_wrote_and_no_other(lake, tmp_path):
    lake.write(READINGS, readings(1), {})
    files = parquet_files(lake)

    def parts():
        yield readings(2)
        yield iter([readings(3).to_batches()[0], pa.record_batch({"timestamp": ["not a number"]})])

    with pytest.raises(Exception):
        lake.stage(READINGS, parts())
    assert parquet_files(lake) == files
    with pytest.raises(LakeError):
        lake.write(READINGS, parts(), {})
    assert parquet_files(lake) == files and lake.current(READINGS).version == 0


def test_the_head_of_staged_files_is_the_first_rows_of_the_first_file_in_the_contract(lake):
    staged = lake.stage(READINGS, [readings(1, 2, 3), readings(4, user="bob@example.com")])
    head = staged.head(2)
    assert head.schema == READINGS.storage_schema
    assert head.column("timestamp").to_pylist() == [1, 2]
    assert staged.head(10).num_rows == 3  # one file's rows: a preview, not a scan of every file
    empty = lake.stage(READINGS, [])
    assert empty.head(5).schema == READINGS.storage_schema and empty.head(5).num_rows == 0
