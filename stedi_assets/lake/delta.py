"""Delta Lake tables on a folder or on S3: a thin layer over delta-rs.

A table lives at `<lake>/<location>/` as a Delta table: Parquet data files and the
`_delta_log/` of commits. Athena, Spark, DuckDB, Polars and delta-rs read it without this
code. `Lake.write` has delta-rs write a version and commit it in one step, with what the
caller says stands behind it (run, audits, policy) in the commit info: replacing the
current version, appending to it, or, given the version it builds on, conditionally on
that version (an incremental change: new rows appended, the rows of a replaced source file
swapped for its new ones). So a reader sees the old version or the new one, never a
half-written one. Commits are conditional writes of the next log entry: of two writers,
one wins and the other fails (`CommitConflictError`), so no commit is lost silently. `restore` and `vacuum` are
delta-rs's. Every error from delta-rs is re-raised as a `LakeError` in one line that names
the table and, for a failed S3 request, the object (lake/delta_errors.py).

The lake keeps the reader protocol at 1 (no deletion vectors, no column mapping, no
timestamp types without time zone), so every engine reads its tables, and its file
statistics are row counts only: the log never holds a name or an e-mail address.

Example:

    >>> lake = Lake(LocalStore("/tmp/lake"))
    >>> spec = TableSpec("readings", "readings/trusted", pa.schema([("t", pa.int64())]))
    >>> snapshot = lake.write(spec, pa.table({"t": [1, 2]}), {"run_id": "r1"})
    >>> snapshot.version, snapshot.rows
    (0, 2)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.lake.delta_errors import describe, is_request_error, is_transport_error
from stedi_assets.lake.errors import (
    AwsRequestError,
    CommitConflictError,
    DamagedTableError,
    LakeError,
    TableNotPublishedError,
)
from stedi_assets.lake.store import Store

if TYPE_CHECKING:
    import pyarrow.dataset as pa_ds

LOG = "_delta_log"
INFO_KEY = "stedi"  # our part of each commit's info
WRITE_ID = "stedi_write_id"  # beside it: the id of the write that made the commit
# File statistics are row counts only (see `_stats`); other writers (Spark) collect no column bounds either.
CONFIGURATION = {"delta.dataSkippingNumIndexedCols": "0"}


@dataclass(frozen=True)
class TableSpec:
    """What the lake needs to know of a table: its name, its folder below the lake root and
    its columns. Arrow field metadata `comment` becomes the Delta column comment."""

    name: str
    location: str
    schema: pa.Schema
    description: str = ""

    @property
    def storage_schema(self) -> pa.Schema:
        """The schema as stored: dictionary columns as their values (Delta has no dictionary
        type; Parquet still dictionary-encodes them)."""
        return pa.schema(
            [
                pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, metadata=f.metadata)
                for f in self.schema
            ]
        )


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history."""

    version: int
    timestamp: dt.datetime
    operation: str
    info: Mapping[str, Any]  # what our writer recorded; {} for commits of other writers


@dataclass(frozen=True)
class Snapshot:
    """One committed version of a table: what readers, engines and checks receive."""

    spec: TableSpec
    uri: str  # the table's root
    version: int
    files: tuple[str, ...]  # absolute URIs of its data files
    rows: int
    info: Mapping[str, Any]
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def local_paths(self) -> list[str] | None:
        """The data files as local paths, or None on a remote store, or if there are none (no
        engine scans an empty list of files: they scan `dataset()` instead)."""
        return _local_paths(self.uri, self.files)

    def dataset(self) -> pa_ds.Dataset:
        """The version's data files (as its Delta log lists them) as a pyarrow dataset,
        scanned lazily, in batches, by DuckDB or Arrow; on S3 through Arrow's S3 client."""
        return _dataset(self.spec, self.uri, self.files, self.storage_options)

    def to_arrow(self) -> pa.Table:
        return self.dataset().to_table()

    def part(self, files: Sequence[str]) -> Snapshot:
        """This version restricted to some of its data files (maybe none), scanned lazily like
        the whole version. Its `rows` are unknown (-1) unless it has no file (0)."""
        unknown = set(files) - set(self.files)
        if unknown:
            raise ValueError(f"{self.name} version {self.version} has no data file {sorted(unknown)[0]}")
        return replace(self, files=tuple(files), rows=-1 if files else 0)

    def values_by_file(self, column: str) -> dict[str, set[Any]]:
        """The distinct values of `column` in each data file, reading that column only: which
        files hold the rows of, say, a given landing file."""
        return {
            file: set(pc.unique(self.part([file]).dataset().to_table(columns=[column])[column]).to_pylist())
            for file in self.files
        }


@dataclass(frozen=True)
class Staged:
    """Data files written into a table's folder by `Lake.stage` (or by another engine) and
    not committed: out of sight, since a Delta reader reads only the files its log names.
    Engines read them where they lie, as they read a version (`local_paths`, `dataset`), so
    the rules judge exactly the files the commit then adds as they are (`Lake.write`);
    `Lake.discard` deletes them if nothing is to be committed. `adds`: delta-rs AddActions
    with row-count statistics."""

    spec: TableSpec
    uri: str  # the table's root
    files: tuple[str, ...]  # absolute URIs
    adds: tuple[Any, ...]
    rows: int
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def local_paths(self) -> list[str] | None:
        return _local_paths(self.uri, self.files)

    def dataset(self) -> pa_ds.Dataset:
        return _dataset(self.spec, self.uri, self.files, self.storage_options)

    def to_arrow(self) -> pa.Table:
        return self.dataset().to_table()

    def head(self, rows: int) -> pa.Table:
        """The first rows of the first file that has any. Not the dataset's `head`: it reads
        whole row groups of several files ahead (at 100x, 0.6 GB and 4 s for 5 rows, the peak
        of a landing step); one file's first batch costs a few milliseconds."""
        import pyarrow.parquet as pq

        schema = self.spec.storage_schema
        for fragment in self.dataset().get_fragments() if self.files else ():
            with pq.ParquetFile(fragment.path, filesystem=fragment.filesystem) as file:
                batch = next(file.iter_batches(batch_size=rows, columns=schema.names), None)
            if batch is not None and batch.num_rows:
                return pa.Table.from_batches([batch]).cast(schema)
        return schema.empty_table()


def _local_paths(uri: str, files: Sequence[str]) -> list[str] | None:
    if uri.startswith("s3://") or not files:
        return None
    return [f.removeprefix("file://") for f in files]


def _dataset(spec: TableSpec, uri: str, files: Sequence[str], storage_options: Mapping[str, str]) -> pa_ds.Dataset:
    import pyarrow.dataset as pa_ds  # it imports pandas (0.2 s): only for the scans that need it

    if not files:
        return pa_ds.dataset(spec.storage_schema.empty_table())
    paths = _local_paths(uri, files)
    if paths is not None:
        return pa_ds.dataset(paths, schema=spec.storage_schema, format="parquet")
    from stedi_assets.lake.s3_client import arrow_dataset  # boto3 only for a lake on S3

    return arrow_dataset(list(files), spec.storage_schema, storage_options)


# A staged data file's row groups: DuckDB and Spark scan a file's row groups in parallel.
ROW_GROUP_ROWS = 1 << 20


class Lake:
    """The Delta tables under one root. `storage_options` are delta-rs's (S3 access);
    `catalog` is told of every table the lake creates; `before_write` runs once before the
    first write (the conditional-write probe of an S3 store)."""

    def __init__(
        self,
        store: Store,
        storage_options: Mapping[str, str] | None = None,
        catalog: Any | None = None,
        before_write: Callable[[], None] | None = None,
    ):
        self.store = store
        self.storage_options = dict(storage_options or {})
        self.catalog = catalog
        self._before_write = before_write

    def uri(self, location: str = "") -> str:
        return self.store.uri(location)

    def _failure(self, what: str, error: BaseException) -> LakeError:
        """`error` from delta-rs as a LakeError: `<what>: <the cause in one line>`."""
        bucket = self.uri().removeprefix("s3://").split("/", 1)[0] if self.uri().startswith("s3://") else None
        secrets = [self.storage_options.get(k, "") for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
        kind = AwsRequestError if is_request_error(error) else LakeError
        return kind(f"{what}: {' '.join(describe(error, bucket, secrets).split())}")  # a conflict's help is a second line

    def _wrapped(self, what: str, error: BaseException) -> BaseException:
        """`error` itself if it is the lake's own (or an interrupt), else `_failure`."""
        if isinstance(error, LakeError) or not isinstance(error, Exception):
            return error
        return self._failure(what, error)

    def _writing(self) -> None:
        """Run `before_write` (the probe) once, before this lake's first write."""
        if self._before_write is not None:
            self._before_write()
            self._before_write = None

    def _open(self, spec: TableSpec, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri = self.uri(spec.location)
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options or None)
        except TableNotFoundError:
            raise TableNotPublishedError(f"{spec.name} has no published version at {uri}: materialize it first") from None
        except Exception as error:
            if is_request_error(error):
                raise self._failure(f"{spec.name} at {uri} cannot be read", error) from None
            if version is not None and "version" in str(error).lower():
                raise TableNotPublishedError(f"{spec.name} has no version {version} at {uri}: {describe(error)}") from None
            raise DamagedTableError(f"{spec.name} at {uri} cannot be read: {describe(error)}") from None

    # -- write ---------------------------------------------------------------------------
    def write(
        self,
        spec: TableSpec,
        data: pa.Table | Sequence[pa.Table] | Staged | None,
        info: Mapping[str, Any],
        *,
        mode: str = "overwrite",
        base: Snapshot | None = None,
        removes: Sequence[str] = (),
        companions: Sequence[Snapshot] = (),
    ) -> Snapshot:
        """Write `data`, conformed to the spec, and commit it as the table's next version with
        `info` in the commit. Without `base` it replaces the current version whole (or, with
        `mode="append"`, adds to it). With `base` (the version the caller read) the next
        version is `base`'s files less `removes` plus the new ones, committed only if it is
        the version right after `base`: a writer that lost the race fails, nothing is merged
        blindly. A table is written by delta-rs; a sequence of tables as one data file each
        (`commit_files`), so that a later commit can remove the rows of one of them alone (a
        landing table: one per source file); `Staged` files are committed as they are.
        `companions`: versions of other tables that
        belong with this one (a landing table's rejects), recorded so that readers pair them.

        A commit refused because another writer committed since the version the change was
        built on (`base`, else the latest when the write began) raises `CommitConflictError`:
        build again on the new version. Many writers may write one table at once.

        Each write carries a unique id in its commit: a commit whose response was lost (it
        landed, the client saw an error) is found in the log by it and returns as if it had
        succeeded. A write that did not land deletes the data files Arrow wrote for it (their
        names are ours); those delta-rs wrote are named by no commit and left to `vacuum`'s
        sweep of untracked files (delta-rs does not say which files a failed write made, and
        a file that appeared meanwhile may be another writer's, about to be committed). One
        without `base` whose request got no answer is tried again while no other writer has
        committed meanwhile (delta-rs does not retry a conditional PUT that may have been
        made), up to `max_retries` times. If the log cannot be read back, the files are left
        for `vacuum` and the error says so. A catalog is told of the table after its commit;
        if that fails the commit stands and the error says so."""
        from deltalake import CommitProperties

        uri = self.uri(spec.location)
        failed = f"commit of {spec.name} at {uri} failed, nothing was published"
        write_id = uuid.uuid4().hex
        recorded = {**info, **({"companions": {c.name: c.version for c in companions}} if companions else {})}
        # On a base version, no retries: a retry would commit on top of a version this change never saw.
        properties = CommitProperties(
            custom_metadata={INFO_KEY: recorded, WRITE_ID: write_id}, max_commit_retries=0 if base is not None else None
        )
        attempts = 1 if base is not None else int(self.storage_options.get("max_retries", "0")) + 1
        try:
            self._writing()
            if base is not None and (unknown := set(removes) - set(base.files)):
                raise LakeError(f"{spec.name} version {base.version} has no data file {sorted(unknown)[0]}")
            latest = self._latest(uri)
            latest_version = latest.version() if latest is not None else -1
            read_version = base.version if base is not None else latest_version
            if latest_version > read_version:  # refused now, before writing files for nothing
                raise _conflict(failed, read_version)
        except BaseException as error:
            if isinstance(data, Staged):  # no commit was tried: its files will never be named
                self.discard(data)
            # `from None` here and below: the message already says the cause in one line, and
            # delta-rs's own text may quote an endpoint with its credentials (privacy.md).
            raise self._wrapped(failed, error) from None
        for attempt in range(1, attempts + 1):
            written: list[str] = []  # the data files Arrow writes for this attempt
            try:
                self._write_once(spec, data, properties, mode, base, removes, written)
                break
            except BaseException as error:
                try:
                    landed, latest_version = self._landed(spec, write_id, read_version)
                except Exception:
                    landed, latest_version = None, None
                if landed is not None:
                    break
                if latest_version is None:
                    if not isinstance(error, Exception):
                        raise
                    raise LakeError(
                        f"commit of {spec.name} at {uri} failed ({' '.join(describe(error).split())}), and its log could not be "
                        "read back to tell whether it landed: its data files are kept (`stedi vacuum --apply` "
                        "deletes them once older than --retain-hours, if no commit names them)"
                    ) from None
                for name in written:  # named by no commit: the write did not land
                    self.store.delete_prefix(f"{spec.location}/{name}")
                if attempt < attempts and latest_version == read_version and is_transport_error(error):
                    time.sleep(random.random() * 0.1 * 2**attempt)
                    continue
                if isinstance(data, Staged):  # the write did not land and is not tried again
                    self.discard(data)
                if latest_version > read_version and isinstance(error, Exception):
                    raise _conflict(failed, read_version) from None
                if attempt > 1 and isinstance(error, Exception):
                    failed += f" ({attempt} commit attempts, STEDI_S3_MAX_ATTEMPTS)"
                raise self._wrapped(failed, error) from None
        if self.catalog is not None:
            try:
                self.catalog.register(spec, uri)
            except Exception as error:
                raise LakeError(
                    f"{spec.name} was committed at {uri}, but its catalog registration failed "
                    f"(the next commit of the table registers it): {error}"
                ) from None
        # The version this write committed, not the latest: another writer may have committed since.
        committed, _ = self._landed(spec, write_id, read_version)
        if committed is None:
            raise DamagedTableError(f"{spec.name} at {uri}: the commit of this write is not in its log")
        return committed

    def _write_once(
        self,
        spec: TableSpec,
        data: Any,
        properties: Any,
        mode: str,
        base: Snapshot | None,
        removes: Sequence[str],
        written: list[str],
    ) -> None:
        from deltalake import DeltaTable, WriterProperties, write_deltalake

        options = self.storage_options or None
        table = DeltaTable(self.uri(spec.location), version=base.version, storage_options=options) if base else None
        # delta-rs writes no file for no rows, and engines cannot scan a version of no files.
        if isinstance(data, pa.Table) and data.num_rows and (base is None or not removes or set(removes) == set(base.files)):
            if base is not None:
                mode = "overwrite" if removes else "append"
            write_deltalake(
                table if table is not None else self.uri(spec.location),
                data.select(spec.schema.names).cast(spec.storage_schema),
                mode=mode,  # type: ignore[arg-type]
                name=spec.name,
                description=spec.description or None,
                configuration=CONFIGURATION,
                schema_mode="overwrite" if mode == "overwrite" and base is None else None,
                storage_options=options if table is None else None,
                writer_properties=WriterProperties(compression="ZSTD"),
                commit_properties=properties,
            )
            return
        if isinstance(data, Staged):
            self.commit_files(spec, data.adds, properties, mode, table, removes)
            return
        parts = [] if data is None else [data] if isinstance(data, pa.Table) else list(data) or [spec.schema.empty_table()]
        adds = []
        for part in parts:
            written.append(_new_file_name())  # before writing: a half-written file is ours too
            adds.append(self._write_file(spec, part, written[-1]))
        self.commit_files(spec, adds, properties, mode, table, removes)

    def _write_file(self, spec: TableSpec, part: pa.Table | Iterable[pa.RecordBatch], name: str) -> Any:
        """One Parquet data file `name` holding exactly `part` (a table, or record batches
        streamed into it one at a time), written by Arrow: delta-rs chooses where its files
        end, and a part must stay one file of its own."""
        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        schema = spec.storage_schema
        root = self.uri(spec.location)
        if root.startswith("s3://"):
            from stedi_assets.lake.s3_client import arrow_s3  # boto3 only for a lake on S3

            filesystem, path = arrow_s3(self.storage_options), f"{root.removeprefix('s3://')}/{name}"
        else:
            os.makedirs(root, exist_ok=True)
            filesystem, path = None, f"{root}/{name}"
        rows = 0
        with pq.ParquetWriter(path, schema, filesystem=filesystem, compression="zstd") as writer:
            for batch in [part] if isinstance(part, pa.Table) else part:
                chunk = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
                writer.write_table(chunk.select(spec.schema.names).cast(schema), row_group_size=ROW_GROUP_ROWS)
                rows += chunk.num_rows
        size = (filesystem.get_file_info(path).size if filesystem is not None else os.path.getsize(path))
        return AddAction(name, size, {}, int(time.time() * 1000), True, json.dumps(_stats(rows)))

    def stage(self, spec: TableSpec, parts: Iterable[pa.Table | Iterable[pa.RecordBatch]]) -> Staged:
        """Write each part with rows as one data file into the table's folder, without
        committing it (see `Staged`), holding one record batch at a time: a part may be a
        stream of batches (an engine's result, a file parsed chunk by chunk) and `parts` a
        generator. At least one file, empty if there are no rows: no engine scans a list of
        no files."""
        self._writing()  # a store that cannot commit safely is refused before any file is written
        root = self.uri(spec.location)
        adds = []
        for part in parts:
            add = self._write_file(spec, part, _new_file_name())
            if json.loads(add.stats)["numRecords"]:
                adds.append(add)
            else:  # a part of no rows (a source file of rejects only) has no data file
                self.store.delete_prefix(f"{spec.location}/{add.path}")
        adds = adds or [self._write_file(spec, spec.schema.empty_table(), _new_file_name())]
        return Staged(
            spec,
            root,
            tuple(f"{root}/{a.path}" for a in adds),
            tuple(adds),
            sum(json.loads(a.stats)["numRecords"] for a in adds),
            self.storage_options,
        )

    def discard(self, staged: Staged) -> None:
        """Delete staged files that will not be committed (a failed audit, nothing to add)."""
        root = self.store.uri().rstrip("/") + "/"
        for file in staged.files:
            self.store.delete_prefix(_relative(file, root))

    def commit_files(
        self, spec: TableSpec, adds: Sequence[Any], properties: Any, mode: str = "overwrite",
        base: Any | None = None, removes: Sequence[str] = (),
    ) -> None:
        """Commit data files another engine wrote (Arrow here, Spark) as the table's next
        version: `adds` are delta-rs AddActions with row-count stats. On `base` (a DeltaTable
        at the version the change was built from) an append that removes `removes`;
        otherwise `mode` on the latest version, creating the table if there is none."""
        from deltalake import Schema
        from deltalake.transaction import RemoveAction, create_table_with_add_actions

        schema = Schema.from_arrow(spec.storage_schema)
        if base is not None:
            root = base.table_uri.rstrip("/") + "/"
            now = int(time.time() * 1000)
            drops = [RemoveAction(_relative(f, root), True, now, None, None) for f in removes]
            base.create_write_transaction([*adds, *drops], mode="append", schema=schema, commit_properties=properties)
        elif (table := self._latest(self.uri(spec.location))) is not None:
            table.create_write_transaction(adds, mode=mode, schema=schema, commit_properties=properties)
        else:
            create_table_with_add_actions(
                self.uri(spec.location),
                schema,
                list(adds),
                mode="error",
                name=spec.name,
                description=spec.description or None,
                configuration=CONFIGURATION,
                storage_options=self.storage_options or None,
                commit_properties=properties,
            )

    def _latest(self, uri: str) -> Any:
        """The table at its latest version, or None if there is no table yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def _landed(self, spec: TableSpec, write_id: str, base: int) -> tuple[Snapshot | None, int]:
        """The version after `base` whose commit carries `write_id` (this write's own, wherever
        other writers' commits landed around it), or None; and the latest version. The log
        entries are read through the store: delta-rs's `history` holds the GIL while it
        waits on S3."""
        table = self._latest(self.uri(spec.location))
        latest = table.version() if table is not None else -1
        for version in range(latest, base, -1):
            if self._commit_info(spec, version).get(WRITE_ID) == write_id:
                return (self._snapshot(spec, table) if version == latest else self.at(spec, version)), latest
        return None, latest

    def missing(self, files: Sequence[str]) -> list[str]:
        """Which of these data files (as a Snapshot names them) are gone: vacuumed, say, so
        the old version that named them can no longer be read whole."""
        root = self.store.uri().rstrip("/") + "/"
        return [f for f in files if not self.store.exists(_relative(f, root))]

    def restore(self, spec: TableSpec, version: int, info: Mapping[str, Any], on: int | None = None) -> Snapshot:
        """Make an earlier version current again, as a new commit (Delta restore) on version
        `on` (default: the latest): the history keeps the versions in between. Conditional,
        like a write on a base: if another writer committed meanwhile, `CommitConflictError`."""
        from deltalake.transaction import CommitProperties

        self._writing()
        table = self._open(spec, on)
        on_version = table.version()
        failed = f"restore of {spec.name} at {table.table_uri} to version {version} failed"
        try:
            table.restore(version, commit_properties=CommitProperties(custom_metadata={INFO_KEY: dict(info)}, max_commit_retries=0))
        except Exception as error:
            latest = self._latest(table.table_uri)
            if latest is not None and latest.version() > on_version:
                raise _conflict(failed, on_version) from None
            raise self._failure(failed, error) from None
        return self.at(spec, on_version + 1)  # conditional: the restore is the version right after

    def vacuum(self, spec: TableSpec, retain_hours: int, apply: bool = False, untracked: bool = True) -> list[str]:
        """The files of versions replaced more than `retain_hours` ago, and (`untracked`)
        files no commit ever named that are as old (written by a run that died: a younger one
        may be another writer's, about to be committed); deleted only with `apply` (default:
        a dry run)."""
        table = self._open(spec)
        try:
            files = table.vacuum(retention_hours=retain_hours, dry_run=True, enforce_retention_duration=False, full=untracked)
        except Exception as error:
            raise self._failure(f"vacuum of {spec.name} at {table.table_uri} failed", error) from None
        # delta-rs (1.6.6) lists a file for every remove action in the log, whether the file is
        # still there or not, and once per action: one listing of the folder says which are left.
        present = set(self.store.list(spec.location))
        files = {name for name in files if f"{spec.location}/{name}" in present}
        if apply:
            # delta-rs lists them (above); they are deleted here rather than by delta-rs, which
            # (1.6.6) adds two commits, VACUUM START and END, to every vacuum, even one with
            # nothing left to delete: versions without data that would push the one standing
            # behind the data out of `current`, make every run look like a change to the
            # tables that read it, and need a conditional-put store for a vacuum.
            for name in files:
                self.store.delete_prefix(f"{spec.location}/{name}")
        return sorted(files)

    # -- read ----------------------------------------------------------------------------
    def current(self, spec: TableSpec) -> Snapshot:
        return self._snapshot(spec, self._open(spec))

    def at(self, spec: TableSpec, version: int) -> Snapshot:
        return self._snapshot(spec, self._open(spec, version))

    def companion(self, snapshot: Snapshot, spec: TableSpec) -> Snapshot:
        """The version of `spec` committed together with `snapshot` (see `commit`)."""
        version = snapshot.info.get("companions", {}).get(spec.name)
        if version is None:
            raise TableNotPublishedError(f"{snapshot.name} version {snapshot.version} names no version of {spec.name}")
        return self.at(spec, version)

    def restorable(self, spec: TableSpec, version: int) -> bool:
        """Whether every data file of `version` is still there (vacuum deletes the files of
        versions past the retention window, and of all earlier versions after an erasure)."""
        try:
            return not self.missing(self.at(spec, version).files)
        except (TableNotPublishedError, DamagedTableError):
            return False

    def commit_time(self, spec: TableSpec, version: int) -> int | None:
        """When `version` was committed (epoch ms), from its log entry; None if unknown."""
        return self._commit_info(spec, version).get("timestamp")

    def history(self, spec: TableSpec, limit: int | None = None) -> list[Commit]:
        """The table's commits, newest first."""
        table = self._open(spec)
        try:
            return [_commit(entry) for entry in table.history(limit)]
        except Exception as error:
            raise self._failure(f"history of {spec.name} at {table.table_uri} cannot be read", error) from None

    def current_versions(self, specs: Sequence[TableSpec]) -> dict[str, Snapshot]:
        """The current version of each table that has one."""
        out = {}
        for spec in specs:
            try:
                out[spec.name] = self.current(spec)
            except TableNotPublishedError:
                continue
        return out

    def _snapshot(self, spec: TableSpec, table: Any) -> Snapshot:
        # An arro3 table: read through the Arrow C stream (`pa.table()` on it would import pandas, 0.2 s).
        actions = pa.RecordBatchReader.from_stream(table.get_add_actions(flatten=True)).read_all()
        rows = pc.sum(actions["num_records"]).as_py() if actions.num_rows else 0
        return Snapshot(
            spec,
            table.table_uri.rstrip("/"),
            table.version(),
            tuple(table.file_uris()),
            int(rows or 0),
            self._info(spec, table.version()),
            self.storage_options,
        )

    def _info(self, spec: TableSpec, version: int) -> Mapping[str, Any]:
        """Our part of a version's commit info, read from its log entry (gone once the log
        is cleaned up past a checkpoint: then {}). A restore commit records the version it
        restored; the info that stands behind the data is that version's."""
        return self._commit_info(spec, version).get(INFO_KEY) or {}

    def _commit_info(self, spec: TableSpec, version: int) -> Mapping[str, Any]:
        for line in self._log_entry(spec, version):
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"]
        return {}

    def _log_entry(self, spec: TableSpec, version: int) -> list[str]:
        key = f"{spec.location}/{LOG}/{version:020d}.json"
        try:
            return self.store.read(key).decode().splitlines()
        except (FileNotFoundError, LakeError):
            return []


def _conflict(failed: str, read: int) -> CommitConflictError:
    if read < 0:
        return CommitConflictError(f"{failed} (another writer created the table meanwhile)")
    return CommitConflictError(f"{failed} (version {read + 1} was committed by another writer since version {read} was read)")


def _relative(file: str, root: str) -> str:
    """A data file's path in the Delta log: relative to the table root, as the log names it."""
    for prefix in (root, root.removeprefix("file://"), "file://" + root):
        if file.startswith(prefix):
            return file[len(prefix) :]
    raise LakeError(f"data file {file} is not under the table at {root}")


def _commit(entry: Mapping[str, Any]) -> Commit:
    return Commit(
        version=int(entry["version"]),
        timestamp=dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.timezone.utc),
        operation=str(entry.get("operation", "")),
        info=entry.get(INFO_KEY) or {},
    )


def _new_file_name() -> str:
    return f"part-{uuid.uuid4()}.zstd.parquet"


def _stats(rows: int) -> dict[str, Any]:
    """Delta file statistics (as `_write_file` writes them): the row count only. Column
    bounds would copy names and e-mail addresses into the log, and bounds for some columns only are worse than none: delta-rs
    1.6 turns a column without bounds into bounds of null in its pyarrow datasets, so a
    filtered scan (DuckDB, Polars) of such a file returns no rows."""
    return {"numRecords": rows}
