"""Converting a lake written by the versioned-Parquet layout (`<location>/_current.json`
naming a `v_<run>/` folder of Parquet files) into Delta tables."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from stedi_assets.lake.delta import LEGACY_POINTER, Lake, TableSpec
from stedi_assets.lake.store import read_buffer


def migrate_lake(lake: Lake, specs: Sequence[TableSpec], apply: bool = False) -> Iterator[str]:
    """For each table in the old layout: commit its current version as the first Delta
    version (commit info `migrated_from`: the old version), then delete the old pointer and
    version folders. Without `apply`, only say what would be done (a dry run)."""
    store = lake.store
    found = False
    for spec in specs:
        pointer_key = f"{spec.location}/{LEGACY_POINTER}"
        if not store.exists(pointer_key):
            continue
        found = True
        pointer = json.loads(store.read(pointer_key))
        folders = sorted({key.split("/")[len(spec.location.split("/"))] for key in store.list(spec.location + "/") if "/v_" in key})
        if not apply:
            yield f"{spec.name}: would commit version {pointer['version']} ({pointer['rows']} rows) as Delta version 0 and delete {len(folders)} old version folders"
            continue
        parts = [pq.read_table(pa.BufferReader(read_buffer(store, key))) for key in pointer["files"]]
        data = pa.concat_tables(parts, promote_options="permissive") if parts else spec.schema.empty_table()
        snapshot = lake.write(spec, data, {"migrated_from": pointer["version"], "rows": data.num_rows})
        for folder in folders:
            store.delete_prefix(f"{spec.location}/{folder}")
        store.delete_prefix(pointer_key)
        yield f"{spec.name}: committed version {pointer['version']} as Delta version {snapshot.version} ({snapshot.rows} rows)"
    if not found:
        yield f"nothing to migrate: no table in {lake.uri()} is in the versioned-Parquet layout"
    elif not apply:
        yield "dry run: run again with --apply to convert"
