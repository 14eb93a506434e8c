"""Versioned tables with write-audit-publish.

A table lives at `<lake>/<source>/<zone>/`. Each write goes to a version folder of its own,
`<location>/v_<version>/part-00000.parquet` (and `part-00001`... for a large table), with a
`_manifest.json` written last. Readers never list folders: they read the pointer
`<location>/_current.json`, a single object replaced in one PUT (or rename), naming the
published version and its files. So a reader sees the old or the new table, never a
half-written one, on a file system and on S3 alike. A staged version becomes visible only
when `publish` moves the pointer to it, which the audit step does after every blocking rule
has passed; a version that fails its audit is deleted, so its records never stay in a
trusted or curated location. Nor does a version whose run ended before its audit (a crash,
a killed process): the next publish of that table deletes it (`collect_orphans`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from stedi_assets.lake.store import Store, read_buffer, read_parquet, write_parquet
from stedi_assets.tables import TABLES, Table

POINTER = "_current.json"
MANIFEST = "_manifest.json"
# Parquet encoding runs on one core per file: a large table is written as several files at once.
ROWS_PER_FILE = 2_000_000
# A version that no pointer names and that nothing has written to for this long was staged
# by a run that never audited it. A live run audits its version within minutes of staging
# it, and another run's fresh version, still to be audited, must be left alone.
ORPHAN_AGE = dt.timedelta(hours=24)


class TableNotPublishedError(LookupError):
    pass


@dataclass(frozen=True)
class LakeTable:
    """One immutable version of a table: what readers, engines and checks receive."""

    table: Table
    version: str
    files: tuple[str, ...]  # store keys
    rows: int
    store: Store

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def location(self) -> str:
        """The folder that holds exactly this version: the Glue/Athena table location."""
        return self.store.uri(_version_prefix(self.table, self.version)) + "/"

    def local_paths(self) -> list[str] | None:
        paths = [self.store.local_path(k) for k in self.files]
        return None if any(p is None for p in paths) else paths  # type: ignore[return-value]

    def to_arrow(self) -> pa.Table:
        return read_parquet(self.store, list(self.files), self.table.arrow_schema)

    def file_schema(self) -> pa.Schema:
        """The schema actually written in the Parquet files, not the one the contract wants."""
        return pq.read_schema(pa.BufferReader(read_buffer(self.store, self.files[0])))

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "files": list(self.files), "rows": self.rows}


class Catalog(Protocol):
    """A metastore told of every publish and rollback (the Glue Data Catalog, for Athena)."""

    def publish(self, version: LakeTable) -> None: ...


def _version_prefix(table: Table, version: str) -> str:
    return f"{table.location}/v_{version}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Lake:
    def __init__(self, store: Store, keep_versions: int = 3, catalog: Catalog | None = None):
        if keep_versions < 2:
            raise ValueError("keep_versions must be at least 2 so that a rollback target exists")
        self.store = store
        self.keep_versions = keep_versions
        self.catalog = catalog

    def uri(self) -> str:
        return self.store.uri()

    # -- write ---------------------------------------------------------------------------
    def stage(self, table: Table, data: pa.Table, version: str) -> LakeTable:
        """Write `data` as a new, unpublished version of `table`, conformed to its contract."""
        data = data.select(table.column_names).cast(table.arrow_schema)
        prefix = _version_prefix(table, version)
        self.store.delete_prefix(prefix)  # a retried step rewrites its own version from scratch
        parts = {
            f"{prefix}/part-{i:05d}.parquet": data.slice(offset, ROWS_PER_FILE)
            for i, offset in enumerate(range(0, max(data.num_rows, 1), ROWS_PER_FILE))
        }
        with ThreadPoolExecutor(min(len(parts), os.cpu_count() or 1)) as pool:
            list(pool.map(lambda part: write_parquet(self.store, *part), parts.items()))
        manifest = {"table": table.name, "version": version, "files": list(parts), "rows": data.num_rows, "staged_at": _now()}
        self.store.write(f"{prefix}/{MANIFEST}", json.dumps(manifest).encode())
        return LakeTable(table, version, tuple(parts), data.num_rows, self.store)

    def staged(self, table: Table, version: str) -> LakeTable | None:
        key = f"{_version_prefix(table, version)}/{MANIFEST}"
        if not self.store.exists(key):
            return None
        manifest = json.loads(self.store.read(key))
        return LakeTable(table, version, tuple(manifest["files"]), manifest["rows"], self.store)

    def publish(self, staged: LakeTable) -> list[str]:
        """Make `staged` the current version; keep the previous ones for rollback. Returns the
        orphaned versions this deleted (see `collect_orphans`)."""
        pointer = self._pointer(staged.table)
        if pointer and pointer["version"] == staged.version:
            if self.catalog is not None:  # a re-executed audit heals a catalog update that failed
                self.catalog.publish(staged)
            return []
        history = []
        if pointer:
            history = [_entry(pointer)] + pointer.get("history", [])
        entry = {**staged.describe(), "published_at": _now()}
        kept, expired = history[: self.keep_versions - 1], history[self.keep_versions - 1 :]
        self._write_pointer(staged.table, {**entry, "history": kept})
        for old in expired:
            if old["version"] != staged.version:
                self.store.delete_prefix(_version_prefix(staged.table, old["version"]))
        return self.collect_orphans(staged.table, named={staged.version, *(old["version"] for old in kept)})

    def collect_orphans(
        self, table: Table, older_than: dt.timedelta = ORPHAN_AGE, named: set[str] | None = None
    ) -> list[str]:
        """Delete the versions of `table` that the pointer does not name (neither current nor
        history) and that nothing has written to for `older_than`; return their names.
        `named`: the versions of a pointer the caller has just written, so it is not read again."""
        if named is None:
            named = {entry["version"] for entry in self.history(table)}
        unnamed = {
            key.removeprefix(f"{table.location}/").split("/", 1)[0].removeprefix("v_")
            for key in self.store.list(f"{table.location}/")
            if key.startswith(f"{table.location}/v_")
        } - named
        cutoff = dt.datetime.now(dt.timezone.utc) - older_than
        orphans = []
        for version in sorted(unnamed):
            prefix = _version_prefix(table, version)
            written = self.store.modified(prefix)
            if written is not None and written < cutoff:
                self.store.delete_prefix(prefix)
                orphans.append(version)
        return orphans

    def discard(self, staged: LakeTable) -> None:
        """Delete a version that failed its audit (never the published one)."""
        pointer = self._pointer(staged.table)
        if pointer and staged.version in {pointer["version"], *(h["version"] for h in pointer.get("history", []))}:
            return
        self.store.delete_prefix(_version_prefix(staged.table, staged.version))

    def rollback(self, table: Table) -> LakeTable:
        """Point `table` back at its previous published version."""
        pointer = self._pointer(table)
        if not pointer or not pointer.get("history"):
            raise TableNotPublishedError(f"{table.name} has no previous version to roll back to")
        previous, *older = pointer["history"]
        self._write_pointer(table, {**previous, "published_at": _now(), "history": older + [_entry(pointer)]})
        return self.current(table)

    # -- read ----------------------------------------------------------------------------
    def current(self, table: Table) -> LakeTable:
        pointer = self._pointer(table)
        if pointer is None:
            raise TableNotPublishedError(
                f"{table.name} has no published version at {self.store.uri(table.location)}: materialize it first"
            )
        return self._version(table, pointer)

    def history(self, table: Table) -> list[dict[str, Any]]:
        """The published versions, newest (current) first."""
        pointer = self._pointer(table)
        return [] if pointer is None else [_entry(pointer)] + pointer.get("history", [])

    def published_tables(self) -> dict[str, LakeTable]:
        out = {}
        for table in TABLES.values():
            try:
                out[table.name] = self.current(table)
            except TableNotPublishedError:
                continue
        return out

    def _pointer(self, table: Table) -> dict[str, Any] | None:
        key = f"{table.location}/{POINTER}"
        if not self.store.exists(key):
            return None
        return json.loads(self.store.read(key))

    def _write_pointer(self, table: Table, pointer: dict[str, Any]) -> None:
        """Publish: the one place a table's current version changes (publish and rollback).
        The catalog follows the pointer, and before `publish` expires any old version, so
        it never names a deleted one."""
        self.store.write(f"{table.location}/{POINTER}", json.dumps(pointer, indent=1).encode())
        if self.catalog is not None:
            self.catalog.publish(self._version(table, pointer))

    def _version(self, table: Table, pointer: dict[str, Any]) -> LakeTable:
        return LakeTable(table, pointer["version"], tuple(pointer["files"]), pointer["rows"], self.store)


def _entry(pointer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pointer.items() if k != "history"}
