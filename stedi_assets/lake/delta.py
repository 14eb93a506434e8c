"""Delta Lake tables on a folder or on S3: a thin layer over delta-rs, which writes tables of
rows, commits, restores and lists what vacuum may delete (staged files: lake/data_files.py).
A table lives at `<lake>/<location>/`, readable by Athena, Spark, DuckDB and Polars without
this code (reader protocol 1: no deletion vectors, no column mapping, no timestamps without
time zone); each commit's info says what stands behind it (run, audits, policy). Commits are
conditional PUTs of the next log entry: of two writers one wins, the other gets
`CommitConflictError`. Errors become one-line `LakeError`s (errors.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.lake.data_files import Snapshot, Staged, TableSpec, new_file_name, rows_added, write_data_file
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

LOG = "_delta_log"
INFO_KEY = "stedi"  # our part of each commit's info
WRITE_ID = "stedi_write_id"  # beside it: the id of the write that made the commit
CONFIGURATION = {"delta.dataSkippingNumIndexedCols": "0"}  # statistics: row counts only (lake/data_files.py)


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history; `info`: what our writer recorded ({} for other writers')."""

    version: int
    timestamp: dt.datetime
    operation: str
    info: Mapping[str, Any]


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
        return (AwsRequestError if is_request_error(error) else LakeError)(f"{what}: {describe(error, bucket, secrets)}")

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
        on the new version). delta-rs writes a table of rows itself (no file for no rows: no engine
        scans a version of no files); the rest is staged (a sequence of tables as a file each, that a
        later commit can remove alone: a landing table's per source file) and committed as add
        actions. `companions`: versions of other tables that readers pair with this one (a landing
        table's rejects). Staged files of a write that did not land are deleted; delta-rs's are left
        to `vacuum` (it does not say which it wrote). A catalog registration that fails after the
        commit leaves the commit standing, and the error says so."""
        from deltalake import CommitProperties, Schema, WriterProperties, write_deltalake
        from deltalake.transaction import RemoveAction, create_table_with_add_actions

        uri = self.uri(spec.location)
        failed = f"commit of {spec.name} at {uri} failed, nothing was published"
        # Each write's id in its commit: a commit whose response was lost (it landed, the
        # client saw an error) is found in the log by it, not committed twice (`_landed`).
        write_id = uuid.uuid4().hex
        recorded = {**info, **({"companions": {c.name: c.version for c in companions}} if companions else {})}
        # On a base version, no retries: a retry would commit on top of a version this change never saw.
        properties = CommitProperties(custom_metadata={INFO_KEY: recorded, WRITE_ID: write_id},
                                      max_commit_retries=0 if base is not None else None)
        attempts = 1 if base is not None else int(self.storage_options.get("max_retries", "0")) + 1
        staged = data if isinstance(data, Staged) else None
        try:
            self._writing()
            if base is not None and (unknown := set(removes) - set(base.files)):
                raise LakeError(f"{spec.name} version {base.version} has no data file {sorted(unknown)[0]}")
            table = self._latest(uri)
            latest_version = table.version() if table is not None else -1
            read_version = base.version if base is not None else latest_version
            if latest_version > read_version:  # refused now, before writing files for nothing
                raise _conflict(failed, read_version)  # (else on `base` the table is at `base.version`)
            whole = isinstance(data, pa.Table) and data.num_rows and (base is None or set(removes) in (set(), set(base.files)))
            if not whole and staged is None and data is not None:
                staged = self.stage(spec, [data] if isinstance(data, pa.Table) else data)
            now, root = int(time.time() * 1000), uri.rstrip("/") + "/"
            removed = [RemoveAction(_relative(f, root), True, now, None, None) for f in removes]
            actions = [*(staged.adds if staged is not None else ()), *removed]
        except BaseException as error:
            if staged is not None:  # no commit was tried: its files will never be named
                self.discard(staged)
            # `from None` here and below: the message says the cause in one line, and delta-rs's
            # own text may quote an endpoint with its credentials (privacy.md).
            raise self._failure(failed, error) from None
        landed, schema = None, Schema.from_arrow(spec.storage_schema)
        for attempt in range(1, attempts + 1):
            try:
                if whole:
                    write_deltalake(
                        table if base is not None else uri, data.select(spec.schema.names).cast(spec.storage_schema),
                        mode=("overwrite" if removes else "append") if base is not None else mode,  # type: ignore[arg-type]
                        schema_mode="overwrite" if mode == "overwrite" and base is None else None,
                        storage_options=self.storage_options or None, writer_properties=WriterProperties(compression="ZSTD"),
                        commit_properties=properties, name=spec.name, configuration=CONFIGURATION,
                    )
                elif table is None:
                    create_table_with_add_actions(uri, schema, actions, mode="error", name=spec.name, configuration=CONFIGURATION,
                                                  storage_options=self.storage_options or None, commit_properties=properties)
                else:  # on `base`: an append that removes `removes`
                    table.create_write_transaction(actions, mode="append" if base is not None else mode, schema=schema,
                                                   commit_properties=properties)
                break
            except BaseException as error:
                try:
                    landed, latest_version = self._landed(spec, write_id, read_version)
                except Exception:
                    raise self._failure(
                        f"commit of {spec.name} at {uri} failed, and its log could not be read back to tell whether it "
                        "landed: its data files are kept (`stedi vacuum --apply` deletes them once older than "
                        "--retain-hours, if no commit names them)", error) from None
                if landed is not None:
                    break
                # delta-rs does not retry a conditional PUT that got no answer (it may have been
                # made): tried again here, while no other writer has committed meanwhile.
                if attempt < attempts and latest_version == read_version and is_transport_error(error):
                    time.sleep(random.random() * 0.1 * 2**attempt)
                    continue
                if staged is not None:  # the write did not land and is not tried again
                    self.discard(staged)
                if latest_version > read_version and isinstance(error, Exception):
                    raise _conflict(failed, read_version) from None
                if attempt > 1:
                    failed += f" ({attempt} commit attempts, STEDI_S3_MAX_ATTEMPTS)"
                raise self._failure(failed, error) from None
        if self.catalog is not None:
            try:
                self.catalog.register(spec, uri)
            except Exception as error:
                raise LakeError(f"{spec.name} was committed at {uri}, but its catalog registration failed (the next "
                                f"commit of the table registers it): {error}") from None
        # The version this write committed, not the latest: another writer may have committed since.
        committed = landed or self._landed(spec, write_id, read_version)[0]
        if committed is None:
            raise DamagedTableError(f"{spec.name} at {uri}: the commit of this write is not in its log")
        return committed

    def stage(self, spec: TableSpec, parts: Iterable[pa.Table | Iterable[pa.RecordBatch]]) -> Staged:
        """Each part with rows (a table, or a stream of batches, held one at a time) as one
        uncommitted data file (see `Staged`); at least one file, empty if there are no rows. If
        writing fails, the files written for it are deleted."""
        self._writing()  # a store that cannot commit safely is refused before any file is written
        names, adds = [], []
        try:
            for part in parts:
                names.append(new_file_name())  # before writing: a half-written file is ours too
                adds.append(write_data_file(spec, self.uri(spec.location), part, self.storage_options, names[-1]))
                if not rows_added(adds[-1]):  # a part of no rows (a source file of rejects only) has no data file
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
        self._writing()
        return self._staged(spec, list(write(self.uri(spec.location), self.storage_options)))

    def _staged(self, spec: TableSpec, adds: list[Any]) -> Staged:
        root = self.uri(spec.location)
        adds = adds or [write_data_file(spec, root, spec.schema.empty_table(), self.storage_options)]
        return Staged(spec=spec, uri=root, files=tuple(f"{root}/{a.path}" for a in adds), rows=sum(map(rows_added, adds)),
                      storage_options=self.storage_options, adds=tuple(adds))

    def discard(self, staged: Staged) -> None:
        """Delete staged files that will not be committed (a failed audit, nothing to add)."""
        for file in staged.files:
            self.store.delete_prefix(self._key(file))

    def missing(self, files: Sequence[str]) -> list[str]:
        """Which of these data files (as a Snapshot names them) are gone (vacuumed): delta-rs
        opens a version from its log alone, and fails only when a scan reaches a lost file."""
        return [f for f in files if not self.store.exists(self._key(f))]

    def _key(self, file: str) -> str:
        return _relative(file, self.store.uri().rstrip("/") + "/")

    def _landed(self, spec: TableSpec, write_id: str, base: int) -> tuple[Snapshot | None, int]:
        """The version after `base` whose commit carries `write_id`, or None; and the latest
        version. delta-rs returns no version from a write, nor anything when a response was lost."""
        table = self._latest(self.uri(spec.location))
        latest = table.version() if table is not None else -1
        for version in range(latest, base, -1):
            if self._commit_info(spec, version).get(WRITE_ID) == write_id:
                return (self._snapshot(spec, table) if version == latest else self.at(spec, version)), latest
        return None, latest

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
        with contextlib.suppress(TableNotPublishedError, DamagedTableError):
            return not self.missing(self.at(spec, version).files)
        return False

    def commit_time(self, spec: TableSpec, version: int) -> int | None:
        """When `version` was committed (epoch ms), from its log entry; None if unknown."""
        return self._commit_info(spec, version).get("timestamp")

    def history(self, spec: TableSpec, limit: int | None = None) -> list[Commit]:
        """The table's commits, newest first."""
        table = self._open(spec)
        try:
            return [Commit(int(e["version"]), dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc),
                           str(e.get("operation", "")), e.get(INFO_KEY) or {}) for e in table.history(limit)]
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
        # `info`: our part of its commit info (gone once the log is cleaned up past a checkpoint: {}).
        return Snapshot(spec=spec, uri=table.table_uri.rstrip("/"), files=tuple(table.file_uris()), rows=int(rows or 0),
                        storage_options=self.storage_options, version=table.version(),
                        info=self._commit_info(spec, table.version()).get(INFO_KEY) or {})

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
