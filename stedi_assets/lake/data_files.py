"""A table's data files, read by Arrow, DuckDB and Spark where they lie: a committed version
(`Snapshot`), or files staged out of sight before their commit (`Staged`): the rules judge
exactly the files a commit adds, and delta-rs has no call that writes files without committing
them, so staged files are written by Arrow (`write_data_file`). File statistics are row counts
only, whoever writes the file: column bounds would copy names and e-mail addresses into the
log, and bounds for some columns only are worse than none (delta-rs 1.6 takes a column without
bounds as bounds of null, so a filtered scan of such a file finds no rows)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pyarrow.dataset as pa_ds

ROW_GROUP_ROWS = 1 << 20  # a data file's row groups: DuckDB and Spark scan them in parallel


@dataclass(frozen=True)
class TableSpec:
    """A table's name, folder below the lake root and columns (field metadata `comment`: the column comment)."""

    name: str
    location: str
    schema: pa.Schema

    @property
    def storage_schema(self) -> pa.Schema:
        """Dictionary columns as their values: Delta has no dictionary type (Parquet still encodes them so)."""
        fields = [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in self.schema]
        return pa.schema(fields)


@dataclass(frozen=True)
class _DataFiles:
    """Data files of one table (absolute URIs under its root `uri`) that engines scan where
    they lie: a version, or staged files."""

    spec: TableSpec
    uri: str
    files: tuple[str, ...]
    rows: int
    storage_options: Mapping[str, str] = field(repr=False, compare=False)  # S3 credentials: never in a repr

    @property
    def name(self) -> str:
        return self.spec.name

    def local_paths(self) -> list[str] | None:
        """The data files as local paths; None on S3, or if there are none (no engine scans an empty list)."""
        if self.uri.startswith("s3://") or not self.files:
            return None
        return [f.removeprefix("file://") for f in self.files]

    def dataset(self) -> pa_ds.Dataset:
        import pyarrow.dataset as pa_ds  # it imports pandas (0.2 s): only for the scans that need it

        if not self.files:
            return pa_ds.dataset(self.spec.storage_schema.empty_table())
        filesystem, paths = _arrow_paths(self.files, self.storage_options)
        return pa_ds.dataset(paths, schema=self.spec.storage_schema, format="parquet", filesystem=filesystem)

    def to_arrow(self) -> pa.Table:
        return self.dataset().to_table()

    def head(self, rows: int) -> pa.Table:
        """The first rows of the first file that has any: the dataset's `head` reads whole row
        groups of several files ahead (at 100x, 0.6 GB and 4 s for 5 rows)."""
        import pyarrow.parquet as pq

        schema = self.spec.storage_schema
        filesystem, paths = _arrow_paths(self.files, self.storage_options)
        for path in paths:
            with pq.ParquetFile(path, filesystem=filesystem) as file:
                batch = next(file.iter_batches(batch_size=rows, columns=schema.names), None)
            if batch is not None and batch.num_rows:
                return pa.Table.from_batches([batch]).cast(schema)
        return schema.empty_table()


@dataclass(frozen=True, kw_only=True)
class Snapshot(_DataFiles):
    """One committed version of a table: what readers, engines and checks receive."""

    version: int
    info: Mapping[str, Any]

    @property
    def companions(self) -> Mapping[str, int]:
        """The version of each table committed together with this one (`Lake.write`'s `companions`)."""
        return self.info.get("companions", {})

    def part(self, files: Sequence[str]) -> Snapshot:
        """This version restricted to some of its data files; `rows` unknown (-1) unless none (0)."""
        if unknown := set(files) - set(self.files):
            raise ValueError(f"{self.name} version {self.version} has no data file {sorted(unknown)[0]}")
        return replace(self, files=tuple(files), rows=-1 if files else 0)

    def without(self, files: Iterable[str]) -> Snapshot:
        """This version less some of its data files (those a commit on it removes, say)."""
        dropped = set(files)
        return self.part([f for f in self.files if f not in dropped])

    def values_by_file(self, column: str) -> dict[str, set[Any]]:
        """The distinct values of `column` in each data file (which files hold a key's rows): the
        log has no column statistics to tell."""
        return {
            file: set(pc.unique(self.part([file]).dataset().to_table(columns=[column])[column]).to_pylist())
            for file in self.files
        }


@dataclass(frozen=True, kw_only=True)
class Staged(_DataFiles):
    """Data files written into a table's folder by `Lake.stage` (or by another engine) and
    not committed: out of sight, since a Delta reader reads only the files its log names.
    The rules judge exactly the files the commit then adds (`Lake.write`); `Lake.discard`
    deletes them if nothing is committed. `adds`: their delta-rs AddActions."""

    adds: tuple[Any, ...]


def _arrow_paths(files: Sequence[str], options: Mapping[str, str]) -> tuple[Any, list[str]]:
    """Arrow's filesystem for these files and their paths on it: on S3 Arrow's own client, as
    delta-rs's filesystem is Python, whose calls from Arrow's threads can abort at exit."""
    from pyarrow import fs

    if files and files[0].startswith("s3://"):
        from stedi_assets.lake.s3_client import arrow_s3  # boto3 only for a lake on S3

        return arrow_s3(options), [f.removeprefix("s3://") for f in files]
    return fs.LocalFileSystem(), [f.removeprefix("file://") for f in files]


def write_data_file(
    spec: TableSpec, root: str, part: pa.Table | Iterable[pa.RecordBatch], storage_options: Mapping[str, str], name: str | None = None
) -> Any:
    """One Parquet data file `name` in the table folder `root` holding exactly `part` (a table,
    or record batches streamed in), and its AddAction with the row count as statistics (see
    the module). A function: Spark's executors call it."""
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    name = name or new_file_name()
    schema = spec.storage_schema
    filesystem, [path] = _arrow_paths([f"{root}/{name}"], storage_options)
    if not root.startswith("s3://"):
        os.makedirs(root, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(path, schema, filesystem=filesystem, compression="zstd") as writer:
        for batch in [part] if isinstance(part, pa.Table) else part:
            chunk = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            writer.write_table(chunk.select(spec.schema.names).cast(schema), row_group_size=ROW_GROUP_ROWS)
            rows += chunk.num_rows
    stats = json.dumps({"numRecords": rows})
    return AddAction(name, filesystem.get_file_info(path).size, {}, int(time.time() * 1000), True, stats)


def new_file_name() -> str:
    return f"part-{uuid.uuid4()}.zstd.parquet"


def rows_added(add: Any) -> int:
    """The rows of the data file an AddAction adds (its statistics)."""
    return json.loads(add.stats)["numRecords"]
