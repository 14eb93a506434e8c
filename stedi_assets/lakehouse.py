"""The lakehouse as its users see it: every table's published version for queries, its
history, and rollbacks that are audited like any other publish."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from stedi_assets import erasure
from stedi_assets.audit import Audit, failures
from stedi_assets.curated import checks as curated
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.errors import DamagedTableError, LakeError, TableNotPublishedError
from stedi_assets.landing import checks as landing
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy, now_ms
from stedi_assets.tables import LAKE_TABLES, Table
from stedi_assets.trusted import checks as trusted

if TYPE_CHECKING:  # the engine resource is Dagster's: `stedi sql` and the like load no Dagster
    from stedi_assets.engine.resource import SqlEngineResource

# Every table's audit, as its zone declares it, upstream zones first.
AUDITS: dict[str, Audit] = {a.table.name: a for a in (
    landing.CUSTOMER_LANDING_AUDIT, landing.ACCELEROMETER_LANDING_AUDIT, landing.STEP_TRAINER_LANDING_AUDIT,
    trusted.CUSTOMER_TRUSTED_AUDIT, trusted.ACCELEROMETER_TRUSTED_AUDIT, trusted.STEP_TRAINER_TRUSTED_AUDIT,
    curated.CUSTOMER_CURATED_AUDIT, curated.MACHINE_LEARNING_CURATED_AUDIT,
)}
# The table each companion (a landing table's rejects and ledger) is published with.
OWNERS: dict[str, Table] = {t.name: a.table for a in AUDITS.values() for t in (a.companion, a.ledger) if t is not None}


class QueryError(LakeError):
    pass


def published(lake: Lake, names: Iterable[str]) -> dict[str, Snapshot]:
    """The published version of each named table that has one; a rejects or ledger table at
    the version its landing table names, so they always come from one step."""
    out = {}
    for name in names:
        spec = LAKE_TABLES[name].spec
        with contextlib.suppress(TableNotPublishedError):
            out[name] = lake.companion(lake.current(OWNERS[name].spec), spec) if name in OWNERS else lake.current(spec)
    return out


def query(lake: Lake, sql: str) -> pa.Table:
    """`sql` over the published tables it names. Only those are opened, so a damaged table
    fails the queries that read it, with its name, and no other."""
    try:
        names = [n for n in duckdb.get_table_names(sql) if n in LAKE_TABLES]
    except duckdb.Error as error:
        raise QueryError(str(error)) from None
    relations = published(lake, names)
    if missing := [n for n in names if n not in relations]:
        raise QueryError(f"not published yet in {lake.uri()}: {', '.join(missing)}; materialize the assets first")
    try:
        return DuckDBEngine().query(sql, relations)
    except Exception as error:  # DuckDB's or Arrow's message names the problem
        message = str(error)
        if isinstance(error, duckdb.CatalogException) and (unknown := re.search(r"Table with name (\S+) does not exist", message)):
            # Not DuckDB's guess (pg_tables, a system view): the tables this lake has.
            raise QueryError(f"no table {unknown[1]} in the lake: query one of {', '.join(sorted(LAKE_TABLES))}") from None
        damaged = [s.name for s in relations.values() if any(f.removeprefix("file://") in message or f in message for f in s.files)]
        if damaged:
            raise DamagedTableError(f"{', '.join(damaged)} cannot be read (a data file is damaged): {message}") from None
        raise QueryError(message) from None


def rollback(lake: Lake, name: str, engine: SqlEngineResource, privacy: PrivacyPolicy, source: LandingSource,
             to_version: int | None = None, apply: bool = False) -> tuple[Snapshot, Snapshot | None]:
    """Restore an earlier version of `name` (default: the one before the current) as a new commit,
    only if it passes the table's blocking rules against today's upstream tables, source and
    erasure requests (docs/storage.md#versions-and-rollback). Without `apply` a dry run. Returns
    the version judged and the restore (None: a dry run); refused, a LakeError says why."""
    if name in OWNERS:
        raise LakeError(f"{name} is published with {OWNERS[name].name}: roll that table back instead")
    audit = AUDITS[name]
    current = lake.current(audit.table.spec)
    target_version = current.version - 1 if to_version is None else to_version
    if current.version == 0:
        raise TableNotPublishedError(f"{name} has only one version: there is nothing to roll back to")
    if not 0 <= target_version < current.version:
        raise TableNotPublishedError(f"{name} is at version {current.version}: roll back to one of versions 0 to {current.version - 1}")
    target = lake.at(audit.table.spec, target_version)
    if gone := _why_gone(lake, audit.table, target, current, privacy):
        raise LakeError(f"{name} version {target_version} {gone}: it left the history and cannot be restored")
    relations: dict[str, Any] = {
        **published(lake, [t.name for t in (*audit.reads, *audit.paired)]),
        **audit.published_relations(lake, target, source),
    }
    # With the serial keys only erased people own, as the versions read recorded them (as a step does).
    relations.update(erasure.load(lake, privacy, [s for s in relations.values() if isinstance(s, Snapshot)]).relations())
    outcomes = audit.judge(relations, engine, privacy, now_ms())
    if not all(o.passed for o in outcomes):
        raise LakeError(f"rollback of {name} to version {target_version} refused: it breaks today's rules "
                        f"({failures(outcomes)}); nothing was changed")
    if not apply:
        return target, None
    info = {**target.info, "restored_version": target.version, "rules": {o.rule.name: o.violations for o in outcomes},
            "consent_policy": privacy.consent_policy.value, "published_by": "stedi rollback"}
    # The rejects and the ledger go back with their landing table, as the version names them.
    versions = dict(target.companions)
    for companion, version in versions.items():
        if lake.current(LAKE_TABLES[companion].spec).version != version:
            versions[companion] = lake.restore(LAKE_TABLES[companion].spec, version, info).version
    return target, lake.restore(audit.table.spec, target.version, {**info, **({"companions": versions} if versions else {})})


def _why_gone(lake: Lake, table: Table, target: Snapshot, current: Snapshot, privacy: PrivacyPolicy) -> str | None:
    """Why `target`'s data files are gone (past the retention window, purged for erasure
    requests, or vacuumed), or None if they are all there."""
    window = now_ms() - privacy.retention_hours * 3_600_000
    replaced = lake.commit_time(table.spec, target.version + 1)
    if replaced is not None and replaced < window:
        return f"is past the retention window (STEDI_RETENTION_HOURS={privacy.retention_hours})"
    if lake.restorable(table.spec, target.version):
        return None
    if target.info.get(erasure.ERASURES_APPLIED) != current.info.get(erasure.ERASURES_APPLIED):
        return "was purged when erasure requests were applied (no version from before an erasure is kept)"
    return "lost its data files to a vacuum (stedi vacuum --retain-hours)"


def purge(lake: Lake) -> list[str]:
    """`stedi forget --purge`: complete the purge of every table that awaits one, with its
    companions, whether or not its readers have followed yet (their next build is a full one)."""
    lines = []
    for name in AUDITS:
        with contextlib.suppress(TableNotPublishedError):
            _, purged = erasure.purge(lake, name, force=True)
            lines.extend(f"{table}: deleted every version built before the erasure requests it applies ({len(gone)} files)"
                         for table, gone in purged.items())
    return lines
