"""The IO manager of every zone table: Delta tables on a local folder or on S3."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import dagster as dg

from stedi_assets import erasure
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.errors import CommitConflictError
from stedi_assets.resources.lake import LakeResource
from stedi_assets.publishing import Audited, NextVersion
from stedi_assets.tables import LAKE_TABLES, TABLES, Table

COMMIT_RETRIES = 5  # times a step whose commit was refused (another run committed first) is run again

# Files a run that died left behind, and no commit names, are deleted once this old: a
# younger one may be another writer's, still to be committed.
UNTRACKED_FILE_HOURS = 1


class DeltaLakeIOManager(dg.ConfigurableIOManager):
    """The one place that writes a table to the lake: an output that passed its audit (publishing.py)
    is committed as the table's next Delta version; None writes nothing. Inputs are the tables' published
    versions. Runs are serialised by the Delta commit, not a concurrency pool (whose slot a killed run would
    hold for good): a refused commit retries the step, which builds and judges again on the new version."""

    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj: Audited | None) -> None:
        if obj is None:
            return
        lake = self.lake.lake()
        started = time.perf_counter()
        try:
            snapshot = write(lake, obj)
        except CommitConflictError as error:
            context.log.warning(f"{error}: the step is built again on the new version")
            # A random wait, so that two runs that collided do not collide again in step.
            raise dg.RetryRequested(max_retries=COMMIT_RETRIES, seconds_to_wait=random.uniform(0.2, 2.0)) from error
        name, base = obj.table.name, obj.base
        if snapshot is None and base is not None:
            context.log.info(f"{name}: nothing changed, stays at Delta version {base.version} ({base.rows} rows); {obj.timings}")
        else:
            context.log.info(
                f"{name}: committed as Delta version {snapshot.version} ({snapshot.rows} rows, {obj.info['build']} build); "
                f"{obj.timings}, commit {time.perf_counter() - started:.3f} s"
            )
        tables = (obj.table, *(c.table for c in obj.companions))
        for line in forget_history(lake, tables, obj.retention_hours, list(obj.info.get("inputs", {}))):
            context.log.info(line)

    def load_input(self, context: dg.InputContext) -> Snapshot:
        return self.lake.lake().current(TABLES[context.asset_key.path[-1]].spec)


def write(lake: Lake, out: Audited) -> Snapshot | None:
    """Commit `out`: its companions first (each restored first to the version its table names,
    `_paired_again`), then the table naming their versions, so a reader pairing them never
    sees one without the other. An increment that changes nothing is not committed (None)."""
    companions = [_paired_again(lake, c, out.info) for c in out.companions]
    if out.changes_nothing:
        return None
    # A companion that changes nothing is paired at its `base`.
    versions = [lake.write(c.table.spec, c.data, out.info, base=c.base, removes=c.removes) if c.changes else c.base
                for c in companions]
    return lake.write(out.table.spec, out.data, out.info, companions=versions, base=out.base, removes=out.removes)


def _paired_again(lake: Lake, companion: NextVersion, info: Mapping[str, Any]) -> NextVersion:
    """`companion` on its latest version, restored first to the version its table names if
    another was committed since (by a run that died between the two commits, or one between
    them now); the new commit builds on the restore."""
    base = companion.base
    if base is None or (latest := lake.current(companion.table.spec)).version == base.version:
        return companion
    restored = {**base.info, "restored_version": base.version, "unpaired_version": latest.version, "run_id": info["run_id"]}
    return replace(companion, base=lake.restore(companion.table.spec, base.version, restored, on=latest.version))


def forget_history(lake: Lake, tables: Sequence[Table], retention_hours: int, inputs: Sequence[str] = ()) -> list[str]:
    """At every run, committed or not: versions of a step's tables (the first, and its companions)
    older than STEDI_RETENTION_HOURS leave the history, and versions built before erasure requests
    the current one applies leave at once (`erasure.purge`: a run that died first leaves it to the
    next), the step's own table's and its `inputs`' once it, their last reader, no longer needs them."""
    lines = []
    for name in (tables[0].name, *inputs):
        pending, purged = erasure.purge(lake, name)
        for purged_name, gone in purged.items():
            untracked = lake.vacuum(LAKE_TABLES[purged_name].spec, UNTRACKED_FILE_HOURS, apply=True)  # a dead run's, maybe from before
            lines.append(f"{purged_name}: erasure applied; deleted every earlier version ({len(gone) + len(untracked)} files; "
                         f"{name} versions {min(pending)}-{max(pending)} were built before it)")
    for table in tables:
        gone = lake.vacuum(table.spec, retention_hours, apply=True, untracked_hours=UNTRACKED_FILE_HOURS)
        if gone:
            lines.append(f"{table.name}: {len(gone)} files past the {retention_hours} h retention, or of a dead run, deleted")
    return lines
