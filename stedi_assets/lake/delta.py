"""Delta Lake tables with write-audit-publish, on a folder or on S3.

A table lives at `<lake>/<location>/` as a Delta table: Parquet data files and the
`_delta_log/` of commits. Athena, Spark, DuckDB, Polars and delta-rs read it without this
code. Each version is written in two steps:

- `stage` writes the data files beside the others. No commit names them, so no Delta reader
  sees them;
- `commit` makes them the table's next version in one atomic commit that replaces every
  file of the previous one, or, given the version it builds on, adds them to that version
  and removes the files it names (an incremental change: new rows appended, the rows of a
  replaced source file swapped for its new ones), and records in the commit info what the
  caller says stands behind it (run, audits, policy). `discard` deletes staged files that
  will not be committed.

So a reader sees the old version or the new one, never a half-written one, and a version
becomes visible only when its caller commits it. Commits are conditional writes of the next
log entry: of two writers, one wins and the other fails, so no commit is lost silently.

Staged files are deleted only when no commit names them: after a failed commit the lake
reads the log to see whether the commit landed all the same (its response lost, its retry
refused as a conflict with itself), and keeps the files if it cannot tell. Every error from
delta-rs is re-raised as a `LakeError` in one line that names the table and, for a failed
S3 request, the object (lake/delta_errors.py).

The lake keeps the reader protocol at 1 (no deletion vectors, no column mapping, no
timestamp types without time zone), so every engine reads its tables, and its file
statistics are row counts only: the log never holds a name or an e-mail address.

Example:

    >>> lake = Lake(LocalStore("/tmp/lake"))
    >>> spec = TableSpec("readings", "readings/trusted", pa.schema([("t", pa.int64())]))
    >>> snapshot = lake.commit(lake.stage(spec, pa.table({"t": [1, 2]})), {"run_id": "r1"})
    >>> snapshot.version, snapshot.rows
    (0, 2)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.lake.delta_errors import describe, is_request_error, is_transport_error
from stedi_assets.lake.errors import (
    AwsRequestError,
    DamagedTableError,
    LakeError,
    LegacyLayoutError,
    TableNotPublishedError,
)
from stedi_assets.lake.store import Store, write_parquet

if TYPE_CHECKING:
    import pyarrow.dataset as pa_ds

# Parquet encoding runs on one core per file: a large table is written as several files at once.
ROWS_PER_FILE = 2_000_000
LOG = "_delta_log"
INFO_KEY = "stedi"  # our part of each commit's info
# The layout Delta tables replaced: a pointer per table naming its current version folder.
LEGACY_POINTER = "_current.json"


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

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "committed_at": self.timestamp.isoformat(timespec="seconds"),
            "operation": self.operation,
            **self.info,
        }


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
        """The data files as local paths, or None on a remote store."""
        if self.uri.startswith("s3://"):
            return None
        return [f.removeprefix("file://") for f in self.files]

    def dataset(self) -> pa_ds.Dataset:
        """The version's data files (as its Delta log lists them) as a pyarrow dataset,
        scanned lazily, in batches, by DuckDB or Arrow; on S3 through Arrow's S3 client."""
        import pyarrow.dataset as pa_ds  # it imports pandas (0.2 s): only for the scans that need it

        paths = self.local_paths()
        if paths is not None:
            return pa_ds.dataset(paths, schema=self.spec.storage_schema, format="parquet")
        from stedi_assets.lake.s3_client import arrow_dataset  # boto3 only for a lake on S3

        return arrow_dataset(self.files, self.spec.storage_schema, self.storage_options)

    def to_arrow(self) -> pa.Table:
        return self.dataset().to_table()

    def part(self, files: Sequence[str]) -> Snapshot | pa.Table:
        """The rows of some of this version's data files, scanned lazily like the whole
        version (an empty table if there are none: no engine scans an empty list of files).
        `rows` of the part is unknown (-1)."""
        if not files:
            return self.spec.storage_schema.empty_table()
        unknown = set(files) - set(self.files)
        if unknown:
            raise ValueError(f"{self.name} version {self.version} has no data file {sorted(unknown)[0]}")
        return replace(self, files=tuple(files), rows=-1)

    def values_by_file(self, column: str) -> dict[str, set[Any]]:
        """The distinct values of `column` in each data file, reading that column only: which
        files hold the rows of, say, a given landing file."""
        return {
            file: set(pc.unique(self.part([file]).dataset().to_table(columns=[column])[column]).to_pylist())  # type: ignore[union-attr]
            for file in self.files
        }


@dataclass
class Staged:
    """Data files written for the next version of a table, named by no commit yet. `data` is
    the table they hold, as it was written. `state`: "staged"; "committed" (a commit names
    the files: never to be deleted); "kept" (a commit failed and whether it landed could not
    be told: left for `vacuum`, which deletes them, once old enough, only if no commit names
    them);
    "discarded" (deleted)."""

    spec: TableSpec
    files: list[str]  # keys in the store
    data: pa.Table
    actions: list[Any]  # deltalake AddAction per file
    state: str = "staged"


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
        return kind(f"{what}: {describe(error, bucket, secrets)}")

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
            if self.store.exists(f"{spec.location}/{LEGACY_POINTER}"):
                raise LegacyLayoutError(
                    f"{spec.name} at {uri} was written by the versioned-Parquet layout, not as a Delta table: "
                    "run `stedi migrate --apply` to commit each table's current version as its first Delta "
                    "version, or delete the lake folder and materialize again"
                ) from None
            raise TableNotPublishedError(f"{spec.name} has no published version at {uri}: materialize it first") from None
        except Exception as error:
            if is_request_error(error):
                raise self._failure(f"{spec.name} at {uri} cannot be read", error) from None
            if version is not None and "version" in str(error).lower():
                raise TableNotPublishedError(f"{spec.name} has no version {version} at {uri}: {describe(error)}") from None
            raise DamagedTableError(f"{spec.name} at {uri} cannot be read: {describe(error)}") from None

    # -- write ---------------------------------------------------------------------------
    def stage(self, spec: TableSpec, data: pa.Table | Sequence[pa.Table]) -> Staged:
        """Write `data`, conformed to the spec, as data files no commit names yet. A sequence
        of tables is written as (at least) one data file per table, so that a later commit
        can remove the rows of one of them alone (a landing table: one per source file); a
        single table, and an empty sequence, give at least one file."""
        from deltalake.transaction import AddAction

        self._writing()
        tables = [data] if isinstance(data, pa.Table) else list(data) or [spec.schema.empty_table()]
        tables = [t.select(spec.schema.names).cast(spec.schema) for t in tables]
        run = uuid.uuid4()
        slices = [t.slice(offset, ROWS_PER_FILE) for t in tables for offset in range(0, max(t.num_rows, 1), ROWS_PER_FILE)]
        parts = {f"{spec.location}/part-{i:05d}-{run}.zstd.parquet": part for i, part in enumerate(slices)}
        staged = Staged(spec, list(parts), pa.concat_tables(tables), [])
        try:
            with ThreadPoolExecutor(min(len(parts), os.cpu_count() or 1)) as pool:
                sizes = list(pool.map(lambda part: write_parquet(self.store, *part), parts.items()))
        except BaseException:
            self.discard(staged)
            raise
        now = int(time.time() * 1000)
        staged.actions = [
            AddAction(key.rsplit("/", 1)[1], size, {}, now, True, json.dumps(_stats(part)))
            for (key, part), size in zip(parts.items(), sizes)
        ]
        return staged

    def commit(
        self,
        staged: Staged | None,
        info: Mapping[str, Any],
        companions: Sequence[Snapshot] = (),
        mode: str = "overwrite",
        base: Snapshot | None = None,
        removes: Sequence[str] = (),
    ) -> Snapshot:
        """Make `staged` the table's next version with `info` in the commit. Without `base`,
        it replaces the current version whole (or, with `mode="append"`, adds to it). With
        `base` (the version the caller read), the next version is `base`'s files less
        `removes` plus the staged ones (an append commit with remove actions; `staged` may be
        None), and it is committed only if it is the version right after `base`: a writer that
        lost the race fails, nothing is merged blindly. `companions`: versions of other tables
        that belong with this one (a landing table's rejects), recorded so that readers pair
        them (`companion`).

        If the commit fails, the staged files are deleted, unless the log shows that it
        landed after all (then this returns as if it had succeeded) or the log cannot be read
        (then they are kept, and the error says so). A commit without `base` whose request
        timed out or lost its connection, and did not land, is tried again while no other
        writer has committed meanwhile (delta-rs does not retry those itself: it cannot tell
        whether the conditional PUT was made), up to `max_retries` times. A catalog is told of
        the table after its commit; if that fails the commit stands and the error says so."""
        from deltalake import DeltaTable, Schema
        from deltalake.transaction import CommitProperties, RemoveAction, create_table_with_add_actions

        if staged is None and base is None:
            raise ValueError("nothing to commit: no staged files and no base version")
        spec = staged.spec if staged is not None else base.spec  # type: ignore[union-attr]
        if staged is not None and staged.state != "staged":
            raise LakeError(f"{spec.name}: these staged files are {staged.state}, not to be committed again")
        recorded = {**info, **({"companions": {c.name: c.version for c in companions}} if companions else {})}
        properties = CommitProperties(custom_metadata={INFO_KEY: recorded})
        uri = self.uri(spec.location)
        options = self.storage_options or None
        schema = Schema.from_arrow(spec.storage_schema)
        failed = f"commit of {spec.name} at {uri} failed, nothing was published"
        adds = staged.actions if staged is not None else []
        # On a base version, no retries: a retry would commit on top of a version this change never saw.
        attempts = 1 if base is not None else int(self.storage_options.get("max_retries", "0")) + 1
        try:
            self._writing()
            table = self._latest(uri) if base is None else None
            if base is not None and (unknown := set(removes) - set(base.files)):
                raise LakeError(f"{spec.name} version {base.version} has no data file {sorted(unknown)[0]}")
        except BaseException as error:
            if staged is not None:
                self.discard(staged)
            raise self._wrapped(failed, error) from error
        read_version = base.version if base is not None else table.version() if table is not None else -1
        for attempt in range(1, attempts + 1):
            try:
                if base is not None:
                    root = base.uri.rstrip("/") + "/"
                    now = int(time.time() * 1000)
                    drops = [RemoveAction(_relative(f, root), True, now, None, None) for f in removes]
                    once = CommitProperties(custom_metadata={INFO_KEY: recorded}, max_commit_retries=0)
                    DeltaTable(uri, version=base.version, storage_options=options).create_write_transaction(
                        [*adds, *drops], mode="append", schema=schema, commit_properties=once
                    )
                elif table is not None:
                    table.create_write_transaction(adds, mode=mode, schema=schema, commit_properties=properties)
                else:
                    create_table_with_add_actions(
                        uri,
                        schema,
                        adds,
                        mode="error",
                        name=spec.name,
                        description=spec.description or None,
                        # Other writers (Spark) should not collect column bounds either.
                        configuration={"delta.dataSkippingNumIndexedCols": "0"},
                        storage_options=options,
                        commit_properties=properties,
                    )
                break
            except BaseException as error:
                if staged is None:  # nothing staged: nothing to keep or delete
                    raise self._wrapped(failed, error) from error
                try:
                    landed, latest = self._landed(staged, read_version)
                except Exception:
                    landed, latest = None, None
                if landed is None:
                    staged.state = "kept"
                    if not isinstance(error, Exception):
                        raise
                    raise LakeError(
                        f"commit of {spec.name} at {uri} failed ({describe(error)}), and its log could not be "
                        "read back to tell whether it landed: its staged data files are kept (`stedi vacuum "
                        "--apply` deletes them once older than --retain-hours, if no commit names them)"
                    ) from error
                if landed:
                    # In the log although delta-rs reported it failed: the response was lost,
                    # and the retry of the conditional PUT was refused by the entry it had made.
                    break
                if attempt < attempts and latest == read_version and is_transport_error(error):
                    time.sleep(random.random() * 0.1 * 2**attempt)
                    table = self._latest(uri)
                    continue
                self.discard(staged)
                if base is not None and latest is not None and latest > base.version:
                    failed += f" (version {base.version + 1} was committed by another writer since version {base.version} was read)"
                elif attempt > 1 and isinstance(error, Exception):
                    failed += f" ({attempt} commit attempts, STEDI_S3_MAX_ATTEMPTS)"
                raise self._wrapped(failed, error) from error
        if staged is not None:
            staged.state = "committed"
        if self.catalog is not None:
            try:
                self.catalog.register(spec, uri)
            except Exception as error:
                raise LakeError(
                    f"{spec.name} was committed at {uri}, but its catalog registration failed "
                    f"(the next commit of the table registers it): {error}"
                ) from error
        return self.current(spec)

    def _latest(self, uri: str) -> Any:
        """The table at its latest version, or None if there is no table yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def _landed(self, staged: Staged, base: int) -> tuple[bool, int]:
        """Whether a commit after version `base` names the staged files; and the latest version."""
        table = self._latest(self.uri(staged.spec.location))
        latest = table.version() if table is not None else -1
        names = {action.path for action in staged.actions}
        for version in range(base + 1, latest + 1):
            entry = self.store.read(f"{staged.spec.location}/{LOG}/{version:020d}.json").decode()
            for line in entry.splitlines():
                add = json.loads(line).get("add")
                if add and urllib.parse.unquote(add["path"]) in names:
                    return True, latest
        return False, latest

    def missing(self, files: Sequence[str]) -> list[str]:
        """Which of these data files (as a Snapshot names them) are gone: vacuumed, say, so
        the old version that named them can no longer be read whole."""
        root = self.store.uri().rstrip("/") + "/"
        return [f for f in files if not self.store.exists(_relative(f, root))]

    def discard(self, staged: Staged) -> None:
        """Delete staged files that will not be committed; never files a commit names
        (or may name: see `commit`)."""
        if staged.state != "staged":
            return
        for key in staged.files:
            self.store.delete_prefix(key)
        staged.state = "discarded"

    def restore(self, spec: TableSpec, version: int, info: Mapping[str, Any]) -> Snapshot:
        """Make an earlier version current again, as a new commit (Delta restore): the
        history keeps the versions in between."""
        from deltalake.transaction import CommitProperties

        self._writing()
        table = self._open(spec)
        try:
            table.restore(version, commit_properties=CommitProperties(custom_metadata={INFO_KEY: dict(info)}))
        except Exception as error:
            raise self._failure(f"restore of {spec.name} at {table.table_uri} to version {version} failed", error) from None
        return self.current(spec)

    def vacuum(self, spec: TableSpec, retain_hours: int, apply: bool = False, untracked: bool = True) -> list[str]:
        """The files of versions replaced more than `retain_hours` ago, and (`untracked`)
        files no commit ever named that are as old (staged by a run that died: a younger one
        may be another writer's, about to be committed); deleted only with `apply` (default:
        a dry run)."""
        table = self._open(spec)
        try:
            files = table.vacuum(retention_hours=retain_hours, dry_run=True, enforce_retention_duration=False, full=untracked)
        except Exception as error:
            raise self._failure(f"vacuum of {spec.name} at {table.table_uri} failed", error) from None
        if apply:
            # Deleted here rather than by delta-rs, which would add two commits (VACUUM START,
            # VACUUM END) to every vacuum: versions without data, that would push the one
            # that stands behind the data out of `current`.
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
            snapshot = self.at(spec, version)
        except (TableNotPublishedError, DamagedTableError):
            return False
        # Data files lie at the table's root (the lake writes no partitions).
        return all(self.store.exists(f"{spec.location}/{f.rsplit('/', 1)[1]}") for f in snapshot.files)

    def commit_time(self, spec: TableSpec, version: int) -> int | None:
        """When `version` was committed (epoch ms), from its log entry; None if unknown."""
        for line in self._log_entry(spec, version):
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"].get("timestamp")
        return None

    def history(self, spec: TableSpec, limit: int | None = None) -> list[Commit]:
        """The table's commits, newest first."""
        table = self._open(spec)
        try:
            return [_commit(entry) for entry in table.history(limit)]
        except Exception as error:
            raise self._failure(f"history of {spec.name} at {table.table_uri} cannot be read", error) from None

    def published(self, specs: Sequence[TableSpec]) -> dict[str, Snapshot]:
        """The current version of each table that has one."""
        out = {}
        for spec in specs:
            try:
                out[spec.name] = self.current(spec)
            except TableNotPublishedError:
                continue
        return out

    def _snapshot(self, spec: TableSpec, table: Any) -> Snapshot:
        actions = pa.table(table.get_add_actions(flatten=True))
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
        for line in self._log_entry(spec, version):
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"].get(INFO_KEY) or {}
        return {}

    def _log_entry(self, spec: TableSpec, version: int) -> list[str]:
        key = f"{spec.location}/{LOG}/{version:020d}.json"
        try:
            return self.store.read(key).decode().splitlines()
        except (FileNotFoundError, LakeError):
            return []


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


def _stats(data: pa.Table) -> dict[str, Any]:
    """Delta file statistics: the row count only. Column bounds would copy names and e-mail
    addresses into the log, and bounds for some columns only are worse than none: delta-rs
    1.6 turns a column without bounds into bounds of null in its pyarrow datasets, so a
    filtered scan (DuckDB, Polars) of such a file returns no rows."""
    return {"numRecords": data.num_rows}
