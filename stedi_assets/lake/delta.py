"""Delta Lake tables on a folder or on S3: a thin layer over delta-rs, which writes, commits,
restores and lists what vacuum may delete. A table lives at `<lake>/<location>/`, readable by
Athena, Spark, DuckDB and Polars without this code; each commit's info says what stands behind
it (run, audits, policy). Commits are conditional PUTs of the next log entry: of two writers one
wins, the other gets `CommitConflictError`. Errors become one-line `LakeError`s (errors.py).
Reader protocol 1 (no deletion vectors, no column mapping, no timestamps without time zone), so
every engine reads the tables; file statistics are row counts only, so the log never holds a
name or an e-mail address."""

from __future__ import annotations

import contextlib
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

from stedi_assets.lake.errors import (
    AwsRequestError,
    CommitConflictError,
    DamagedTableError,
    LakeError,
    TableNotPublishedError,
    describe,
    is_request_error,
    is_transport_error,
)
from stedi_assets.lake.store import Store

if TYPE_CHECKING:
    import pyarrow.dataset as pa_ds

LOG = "_delta_log"
INFO_KEY = "stedi"  # our part of each commit's info
WRITE_ID = "stedi_write_id"  # beside it: the id of the write that made the commit
# File statistics are row counts only (see `write_data_file`); other writers (Spark) collect no column bounds either.
CONFIGURATION = {"delta.dataSkippingNumIndexedCols": "0"}
ROW_GROUP_ROWS = 1 << 20  # a staged file's row groups: DuckDB and Spark scan them in parallel


@dataclass(frozen=True)
class TableSpec:
    """A table's name, folder below the lake root and columns (field metadata `comment`: the column comment)."""

    name: str
    location: str
    schema: pa.Schema

    @property
    def storage_schema(self) -> pa.Schema:
        """Dictionary columns as their values: Delta has no dictionary type (Parquet still encodes them so)."""
        return pa.schema(
            [
                pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, metadata=f.metadata)
                for f in self.schema
            ]
        )


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history; `info`: what our writer recorded ({} for other writers')."""

    version: int
    timestamp: dt.datetime
    operation: str
    info: Mapping[str, Any]


@dataclass(frozen=True)
class _DataFiles:
    """Data files of one table (absolute URIs under its root `uri`) that engines scan where
    they lie: a version, or staged files."""

    spec: TableSpec
    uri: str
    files: tuple[str, ...]
    rows: int
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

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
        for fragment in self.dataset().get_fragments() if self.files else ():
            with pq.ParquetFile(fragment.path, filesystem=fragment.filesystem) as file:
                batch = next(file.iter_batches(batch_size=rows, columns=schema.names), None)
            if batch is not None and batch.num_rows:
                return pa.Table.from_batches([batch]).cast(schema)
        return schema.empty_table()


@dataclass(frozen=True)
class Snapshot(_DataFiles):
    """One committed version of a table: what readers, engines and checks receive."""

    version: int = -1
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def companions(self) -> Mapping[str, int]:
        """The version of each table committed together with this one (`Lake.write`'s `companions`)."""
        return self.info.get("companions", {})

    def part(self, files: Sequence[str]) -> Snapshot:
        """This version restricted to some of its data files; `rows` unknown (-1) unless none (0)."""
        unknown = set(files) - set(self.files)
        if unknown:
            raise ValueError(f"{self.name} version {self.version} has no data file {sorted(unknown)[0]}")
        return replace(self, files=tuple(files), rows=-1 if files else 0)

    def without(self, files: Iterable[str]) -> Snapshot:
        """This version less some of its data files (those a commit on it removes, say)."""
        dropped = set(files)
        return self.part([f for f in self.files if f not in dropped])

    def values_by_file(self, column: str) -> dict[str, set[Any]]:
        """The distinct values of `column` in each data file (which files hold a key's rows): the
        log has no column statistics to tell (row counts only, see `write_data_file`)."""
        return {
            file: set(pc.unique(self.part([file]).dataset().to_table(columns=[column])[column]).to_pylist())
            for file in self.files
        }


@dataclass(frozen=True)
class Staged(_DataFiles):
    """Data files written into a table's folder by `Lake.stage` (or by another engine) and
    not committed: out of sight, since a Delta reader reads only the files its log names.
    The rules judge exactly the files the commit then adds (`Lake.write`); `Lake.discard`
    deletes them if nothing is committed. `adds`: delta-rs AddActions, row counts as stats."""

    adds: tuple[Any, ...] = ()


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
    or record batches streamed in), and its AddAction. Written by Arrow: delta-rs has no call
    that writes files without committing them. A function: Spark's executors call it."""
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    name = name or _new_file_name()
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
    # Statistics: the row count only. Column bounds would copy names and e-mail addresses
    # into the log, and bounds for some columns only are worse than none: delta-rs 1.6 makes
    # a column without bounds bounds of null, so a filtered scan of such a file finds no rows.
    stats = json.dumps({"numRecords": rows})
    return AddAction(name, filesystem.get_file_info(path).size, {}, int(time.time() * 1000), True, stats)


class Lake:
    """The Delta tables under one root. `storage_options`: delta-rs's (S3 access); `catalog`
    is told of every table committed; `before_write` runs once before the first write (the
    conditional-write probe of an S3 store)."""

    def __init__(self, store: Store, storage_options: Mapping[str, str] | None = None, catalog: Any | None = None,
                 before_write: Callable[[], None] | None = None):
        self.store = store
        self.storage_options = dict(storage_options or {})
        self.catalog = catalog
        self._before_write = before_write

    def uri(self, location: str = "") -> str:
        return self.store.uri(location)

    def _failure(self, what: str, error: BaseException) -> BaseException:
        """`error` from delta-rs as a LakeError: `<what>: <the cause in one line>`; the lake's
        own errors and interrupts as they are."""
        if isinstance(error, LakeError) or not isinstance(error, Exception):
            return error
        bucket = self.uri().removeprefix("s3://").split("/", 1)[0] if self.uri().startswith("s3://") else None
        secrets = [self.storage_options.get(k, "") for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
        kind = AwsRequestError if is_request_error(error) else LakeError
        return kind(f"{what}: {' '.join(describe(error, bucket, secrets).split())}")  # a conflict's help is a second line

    def _writing(self) -> None:
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

    def _latest(self, uri: str) -> Any:
        """The table at its latest version, or None if there is no table yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        with contextlib.suppress(TableNotFoundError):
            return DeltaTable(uri, storage_options=self.storage_options or None)
        return None

    def write(self, spec: TableSpec, data: pa.Table | Sequence[pa.Table] | Staged | None, info: Mapping[str, Any], *,
              mode: str = "overwrite", base: Snapshot | None = None, removes: Sequence[str] = (),
              companions: Sequence[Snapshot] = ()) -> Snapshot:
        """Commit `data`, conformed to the spec, as the table's next version with `info` in the
        commit: replacing the current version (or, `mode="append"`, adding to it), or, given
        `base` (the version the caller read), as `base`'s files less `removes` plus the new
        ones, only if no other writer committed since (else `CommitConflictError`: build again
        on the new version). A table of rows is written by delta-rs; a sequence of tables
        becomes a data file each (a later commit can remove one alone: a landing table's per
        source file); `Staged` files are committed as they are. `companions`: versions of other
        tables recorded so that readers pair them (a landing table's rejects). Staged files of
        a write that did not land are deleted; files delta-rs wrote are left to `vacuum`'s
        sweep (it does not say which files a failed write made). A catalog registration that
        fails after the commit leaves the commit standing, and the error says so."""
        from deltalake import CommitProperties

        uri = self.uri(spec.location)
        failed = f"commit of {spec.name} at {uri} failed, nothing was published"
        # Each write's id in its commit: a commit whose response was lost (it landed, the
        # client saw an error) is found in the log by it, not committed twice (`_landed`).
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
            # delta-rs writes a table of rows on its own; it chooses where its files end and
            # writes none for no rows (no engine scans a version of no files): the rest is staged.
            whole = isinstance(data, pa.Table) and data.num_rows and (base is None or set(removes) in (set(), set(base.files)))
            if not whole and data is not None and not isinstance(data, Staged):
                data = self.stage(spec, [data] if isinstance(data, pa.Table) else data)
        except BaseException as error:
            if isinstance(data, Staged):  # no commit was tried: its files will never be named
                self.discard(data)
            # `from None` here and below: the message says the cause in one line, and delta-rs's
            # own text may quote an endpoint with its credentials (privacy.md).
            raise self._failure(failed, error) from None
        for attempt in range(1, attempts + 1):
            try:
                self._commit(spec, data, properties, mode, base, removes)
                break
            except BaseException as error:
                try:
                    landed, latest_version = self._landed(spec, write_id, read_version)
                except Exception:
                    if not isinstance(error, Exception):
                        raise error from None
                    raise LakeError(
                        f"commit of {spec.name} at {uri} failed ({' '.join(describe(error).split())}), and its log could not be "
                        "read back to tell whether it landed: its data files are kept (`stedi vacuum --apply` "
                        "deletes them once older than --retain-hours, if no commit names them)"
                    ) from None
                if landed is not None:
                    break
                # delta-rs does not retry a conditional PUT that got no answer (it may have been
                # made): tried again here, while no other writer has committed meanwhile.
                if attempt < attempts and latest_version == read_version and is_transport_error(error):
                    time.sleep(random.random() * 0.1 * 2**attempt)
                    continue
                if isinstance(data, Staged):  # the write did not land and is not tried again
                    self.discard(data)
                if latest_version > read_version and isinstance(error, Exception):
                    raise _conflict(failed, read_version) from None
                if attempt > 1 and isinstance(error, Exception):
                    failed += f" ({attempt} commit attempts, STEDI_S3_MAX_ATTEMPTS)"
                raise self._failure(failed, error) from None
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

    def _commit(self, spec: TableSpec, data: pa.Table | Staged | None, properties: Any, mode: str, base: Snapshot | None,
                removes: Sequence[str]) -> None:
        from deltalake import DeltaTable, Schema, WriterProperties, write_deltalake
        from deltalake.transaction import RemoveAction, create_table_with_add_actions

        uri, options = self.uri(spec.location), self.storage_options or None
        table = DeltaTable(uri, version=base.version, storage_options=options) if base else None
        created = {"name": spec.name, "configuration": CONFIGURATION}
        if isinstance(data, pa.Table):
            write_deltalake(
                table if table is not None else uri,
                data.select(spec.schema.names).cast(spec.storage_schema),
                mode=("overwrite" if removes else "append") if base is not None else mode,  # type: ignore[arg-type]
                schema_mode="overwrite" if mode == "overwrite" and base is None else None,
                storage_options=options if table is None else None,
                writer_properties=WriterProperties(compression="ZSTD"),
                commit_properties=properties,
                **created,
            )
            return
        # Files Arrow or Spark wrote: delta-rs commits only its own files, but for add actions.
        adds, schema = list(data.adds if data is not None else ()), Schema.from_arrow(spec.storage_schema)
        if table is not None:  # on `base`: an append that removes `removes`
            now, root = int(time.time() * 1000), table.table_uri.rstrip("/") + "/"
            adds += [RemoveAction(_relative(f, root), True, now, None, None) for f in removes]
            table.create_write_transaction(adds, mode="append", schema=schema, commit_properties=properties)
        elif (table := self._latest(uri)) is not None:
            table.create_write_transaction(adds, mode=mode, schema=schema, commit_properties=properties)
        else:
            create_table_with_add_actions(
                uri, schema, adds, mode="error", storage_options=options, commit_properties=properties, **created
            )

    def stage(self, spec: TableSpec, parts: Iterable[pa.Table | Iterable[pa.RecordBatch]]) -> Staged:
        """Each part with rows (a table, or a stream of batches, held one at a time) as one
        uncommitted data file (see `Staged`); at least one file, empty if there are no rows. If
        writing fails, the files written for it are deleted."""
        self._writing()  # a store that cannot commit safely is refused before any file is written
        names, adds = [], []
        try:
            for part in parts:
                names.append(_new_file_name())  # before writing: a half-written file is ours too
                adds.append(write_data_file(spec, self.uri(spec.location), part, self.storage_options, names[-1]))
                if not _rows(adds[-1]):  # a part of no rows (a source file of rejects only) has no data file
                    self.store.delete_prefix(f"{spec.location}/{names.pop()}")
                    adds.pop()
            return self._staged(spec, adds)
        except BaseException:
            for name in names:
                self.store.delete_prefix(f"{spec.location}/{name}")
            raise

    def stage_with(self, spec: TableSpec, write: Callable[[str, Mapping[str, str]], Sequence[Any]]) -> Staged:
        """Data files another engine writes, staged as `stage` stages its own: `write(root,
        storage_options)` writes them (Spark's executors, with `write_data_file`) and returns their AddActions."""
        self._writing()  # as in `stage`: refused before any file is written
        return self._staged(spec, list(write(self.uri(spec.location), self.storage_options)))

    def _staged(self, spec: TableSpec, adds: list[Any]) -> Staged:
        root = self.uri(spec.location)
        adds = adds or [write_data_file(spec, root, spec.schema.empty_table(), self.storage_options)]
        return Staged(spec, root, tuple(f"{root}/{a.path}" for a in adds), sum(map(_rows, adds)), self.storage_options, tuple(adds))

    def discard(self, staged: Staged) -> None:
        """Delete staged files that will not be committed (a failed audit, nothing to add)."""
        root = self.store.uri().rstrip("/") + "/"
        for file in staged.files:
            self.store.delete_prefix(_relative(file, root))

    def _landed(self, spec: TableSpec, write_id: str, base: int) -> tuple[Snapshot | None, int]:
        """The version after `base` whose commit carries `write_id`, or None; and the latest
        version. delta-rs returns no version from a write, nor anything when a response was lost."""
        table = self._latest(self.uri(spec.location))
        latest = table.version() if table is not None else -1
        for version in range(latest, base, -1):
            if self._commit_info(spec, version).get(WRITE_ID) == write_id:
                return (self._snapshot(spec, table) if version == latest else self.at(spec, version)), latest
        return None, latest

    def missing(self, files: Sequence[str]) -> list[str]:
        """Which of these data files (as a Snapshot names them) are gone (vacuumed): delta-rs
        opens a version from its log alone, and fails only when a scan reaches a lost file."""
        root = self.store.uri().rstrip("/") + "/"
        return [f for f in files if not self.store.exists(_relative(f, root))]

    def restore(self, spec: TableSpec, version: int, info: Mapping[str, Any], on: int | None = None) -> Snapshot:
        """Make an earlier version current again, as a new commit (Delta restore) on version
        `on` (default: the latest); if another writer committed meanwhile, `CommitConflictError`."""
        from deltalake.transaction import CommitProperties

        self._writing()
        table = self._open(spec, on)
        on_version = table.version()
        failed = f"restore of {spec.name} at {table.table_uri} to version {version} failed"
        try:  # delta-rs's restore; on `on` without commit retries, it is refused if another writer committed
            table.restore(version, commit_properties=CommitProperties(custom_metadata={INFO_KEY: dict(info)}, max_commit_retries=0))
        except Exception as error:
            latest = self._latest(table.table_uri)
            if latest is not None and latest.version() > on_version:
                raise _conflict(failed, on_version) from None
            raise self._failure(failed, error) from None
        return self.at(spec, on_version + 1)  # conditional: the restore is the version right after

    def vacuum(self, spec: TableSpec, retain_hours: int, apply: bool = False, untracked: bool = True,
               untracked_hours: int | None = None) -> list[str]:
        """The files of versions replaced more than `retain_hours` ago, and (`untracked`) files
        no commit named as old, or `untracked_hours` if given (a dead run's: a younger one may be
        another writer's, about to be committed); deleted only with `apply`."""
        table = self._open(spec)

        def listed(hours: int, full: bool) -> set[str]:
            return set(table.vacuum(retention_hours=hours, dry_run=True, enforce_retention_duration=False, full=full))

        try:
            hours = retain_hours if untracked_hours is None else untracked_hours
            # A full vacuum lists the untracked files and the replaced ones as old: the latter
            # are taken at their own age.
            files = listed(retain_hours, untracked and hours == retain_hours)
            if untracked and hours != retain_hours:
                files |= listed(hours, True) - listed(hours, False)
        except Exception as error:
            raise self._failure(f"vacuum of {spec.name} at {table.table_uri} failed", error) from None
        # delta-rs (1.6.6) lists a file once per remove action, whether it is still there or not.
        present = set(self.store.list(spec.location))
        files = {name for name in files if f"{spec.location}/{name}" in present}
        # Deleted here, not by delta-rs, which (1.6.6) commits VACUUM START and END to every
        # vacuum, even an empty one: versions without data that make every run look like a
        # change to the tables that read it, and that need a conditional-put store.
        for name in files if apply else ():
            self.store.delete_prefix(f"{spec.location}/{name}")
        return sorted(files)

    def current(self, spec: TableSpec) -> Snapshot:
        return self._snapshot(spec, self._open(spec))

    def at(self, spec: TableSpec, version: int) -> Snapshot:
        return self._snapshot(spec, self._open(spec, version))

    def companion(self, snapshot: Snapshot, spec: TableSpec) -> Snapshot:
        """The version of `spec` committed together with `snapshot` (`write`'s `companions`)."""
        version = snapshot.companions.get(spec.name)
        if version is None:
            raise TableNotPublishedError(f"{snapshot.name} version {snapshot.version} names no version of {spec.name}")
        return self.at(spec, version)

    def restorable(self, spec: TableSpec, version: int) -> bool:
        """Whether every data file of `version` is still there (not vacuumed)."""
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
            return [
                Commit(int(e["version"]), dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc),
                       str(e.get("operation", "")), e.get(INFO_KEY) or {})
                for e in table.history(limit)
            ]
        except Exception as error:
            raise self._failure(f"history of {spec.name} at {table.table_uri} cannot be read", error) from None

    def current_versions(self, specs: Sequence[TableSpec]) -> dict[str, Snapshot]:
        """The current version of each table that has one."""
        out = {}
        for spec in specs:
            with contextlib.suppress(TableNotPublishedError):
                out[spec.name] = self.current(spec)
        return out

    def _snapshot(self, spec: TableSpec, table: Any) -> Snapshot:
        # An arro3 table: read through the Arrow C stream (`pa.table()` on it would import pandas, 0.2 s).
        actions = pa.RecordBatchReader.from_stream(table.get_add_actions(flatten=True)).read_all()
        rows = pc.sum(actions["num_records"]).as_py() if actions.num_rows else 0
        return Snapshot(
            spec,
            table.table_uri.rstrip("/"),
            tuple(table.file_uris()),
            int(rows or 0),
            self.storage_options,
            table.version(),
            # Our part of its commit info (gone once the log is cleaned up past a checkpoint: {}).
            self._commit_info(spec, table.version()).get(INFO_KEY) or {},
        )

    def _commit_info(self, spec: TableSpec, version: int) -> Mapping[str, Any]:
        """A version's commit info, read from its log entry through the store: delta-rs has no
        call for one version's, and its `history` holds the GIL while it waits on S3."""
        try:
            lines = self.store.read(f"{spec.location}/{LOG}/{version:020d}.json").decode().splitlines()
        except (FileNotFoundError, LakeError):
            return {}
        return next((action["commitInfo"] for action in map(json.loads, lines) if "commitInfo" in action), {})


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


def _new_file_name() -> str:
    return f"part-{uuid.uuid4()}.zstd.parquet"


def _rows(add: Any) -> int:
    return json.loads(add.stats)["numRecords"]
