"""The lakehouse as its users see it: every table's published version for queries, its
history, and rollbacks that are audited like any other publish."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from stedi_assets.audit import Audit, Outcome, failures
from stedi_assets.curated.checks import CUSTOMER_CURATED_AUDIT, MACHINE_LEARNING_CURATED_AUDIT
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.errors import DamagedTableError, LakeError, TableNotPublishedError
from stedi_assets.landing.checks import (
    ACCELEROMETER_LANDING_AUDIT,
    CUSTOMER_LANDING_AUDIT,
    STEP_TRAINER_LANDING_AUDIT,
)
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy, now_ms
from stedi_assets import erasure
from stedi_assets.tables import CUSTOMER_LANDING, LAKE_TABLES, REJECTS_OF, Table
from stedi_assets.trusted.checks import ACCELEROMETER_TRUSTED_AUDIT, CUSTOMER_TRUSTED_AUDIT, STEP_TRAINER_TRUSTED_AUDIT

if TYPE_CHECKING:  # the engine resource is Dagster's: `stedi sql` and the like load no Dagster
    from stedi_assets.engine.resource import SqlEngineResource

AUDITS: dict[str, Audit] = {
    audit.table.name: audit
    for audit in (
        CUSTOMER_LANDING_AUDIT,
        ACCELEROMETER_LANDING_AUDIT,
        STEP_TRAINER_LANDING_AUDIT,
        CUSTOMER_TRUSTED_AUDIT,
        ACCELEROMETER_TRUSTED_AUDIT,
        STEP_TRAINER_TRUSTED_AUDIT,
        CUSTOMER_CURATED_AUDIT,
        MACHINE_LEARNING_CURATED_AUDIT,
    )
}
# A companion (a landing table's rejects and its ledger of source files) is read at the
# version its table's commit names.
OWNERS: dict[str, Table] = {t.name: a.table for a in AUDITS.values() for t in a.companions}


class QueryError(LakeError):
    pass


def published(lake: Lake, names: Iterable[str]) -> dict[str, Snapshot]:
    """The published version of each named table that has one; a rejects or ledger table at
    the version its landing table names, so they always come from one step."""
    out = {}
    for name in names:
        spec = LAKE_TABLES[name].spec
        try:
            out[name] = lake.companion(lake.current(OWNERS[name].spec), spec) if name in OWNERS else lake.current(spec)
        except TableNotPublishedError:
            continue
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


@dataclass(frozen=True)
class RollbackResult:
    table: Table
    target: Snapshot
    outcomes: list[Outcome]
    restored: Snapshot | None  # None: refused, or a dry run

    @property
    def refused(self) -> bool:
        return not all(o.passed for o in self.outcomes)


def rollback(
    lake: Lake,
    name: str,
    engine: SqlEngineResource,
    privacy: PrivacyPolicy,
    source: LandingSource,
    to_version: int | None = None,
    apply: bool = False,
) -> RollbackResult:
    """Restore an earlier version of `name` as a new commit, only if it passes the table's
    blocking rules against today's upstream tables (and, for a landing table, today's
    source) and today's erasure requests: a rollback is a publish, so it can never bring back
    what today's rules forbid, such as the readings of a customer who has withdrawn consent
    or been erased since. Never past the retention window. Default target: the version
    before the current one. Without `apply` a dry run: judged, nothing restored (like
    delta-rs's destructive operations, since a restore replaces what every reader sees)."""
    if name in OWNERS:
        raise LakeError(f"{name} is published with {OWNERS[name].name}: roll that table back instead")
    audit = AUDITS[name]
    current = lake.current(audit.table.spec)
    target_version = current.version - 1 if to_version is None else to_version
    if current.version == 0:
        raise TableNotPublishedError(f"{name} has only one version: there is nothing to roll back to")
    if not 0 <= target_version < current.version:
        raise TableNotPublishedError(
            f"{name} is at version {current.version}: roll back to one of versions 0 to {current.version - 1}"
        )
    target = lake.at(audit.table.spec, target_version)
    if gone := _why_gone(lake, audit.table, target, current, privacy):
        raise LakeError(f"{name} version {target_version} {gone}: it left the history and cannot be restored")
    reads = [t.name for t in audit.reads]
    relations: dict[str, Any] = {
        **published(lake, reads + [REJECTS_OF[n].name for n in reads if n in REJECTS_OF]),
        **audit.published_relations(lake, target, source),
    }
    erasures = erasure.load(lake, privacy)
    serials_from = target if name == CUSTOMER_LANDING.name else relations.get(CUSTOMER_LANDING.name)
    relations.update(erasures.with_serials(erasure.erased_serials(serials_from)).relations())
    outcomes = audit.judge(relations, engine, privacy, now_ms())
    judged = RollbackResult(audit.table, target, outcomes, None)
    if not apply or judged.refused:
        return judged
    info: Mapping[str, Any] = {
        **target.info,
        "restored_version": target.version,
        "rules": {o.rule.name: o.violations for o in outcomes},
        "consent_policy": privacy.consent_policy.value,
        "published_by": "stedi rollback",
    }
    versions = {}
    for table in audit.companions:  # the rejects and the ledger go back with their landing table
        try:
            paired = lake.companion(target, table.spec)
        except TableNotPublishedError:  # a version from before the table had a ledger
            continue
        if lake.current(table.spec).version != paired.version:
            paired = lake.restore(table.spec, paired.version, info)
        versions[table.name] = paired.version
    if versions:
        info = {**info, "companions": versions}
    return replace(judged, restored=lake.restore(audit.table.spec, target.version, info))


def _why_gone(lake: Lake, table: Table, target: Snapshot, current: Snapshot, privacy: PrivacyPolicy) -> str | None:
    """Why `target`'s data files are gone, or None if they are all there: replaced longer
    ago than the retention window, purged with every version from before erasure requests
    that the current version applies, or deleted by a vacuum (`stedi vacuum --retain-hours`)."""
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
    """Complete the purge of every table that awaits one (erasure.awaiting_purge), with its
    companions, whether or not the tables reading it have followed yet (their next build is
    then a full one): what `stedi forget --purge` does."""
    lines = []
    for name in AUDITS:
        try:
            _, purged = erasure.purge(lake, name, force=True)
        except TableNotPublishedError:
            continue
        for table, gone in purged.items():
            lines.append(f"{table}: deleted every version built before the erasure requests it applies ({len(gone)} files)")
    return lines


def refusal(result: RollbackResult) -> str:
    return (
        f"rollback of {result.table.name} to version {result.target.version} refused: it breaks today's rules "
        f"({failures(result.outcomes)}); nothing was changed"
    )
