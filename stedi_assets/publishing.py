"""Write-audit-publish inside each table's own asset step.

`audited_asset` turns a function that builds a table into one Dagster step that:

1. builds the table from the published upstream tables;
2. judges every blocking rule of its `Audit` on exactly that data, in memory;
3. yields the `Output`: the IO manager stages the data as Parquet files that no Delta commit
   names yet (nothing at all if a rule failed), and the materialization's metadata says
   whether it passed its audit;
4. yields one `AssetCheckResult` per rule, with the violation count and masked sample keys:
   after the output, so Dagster records them against this materialization;
5. commits the staged files as the table's next Delta version, with the run, the rule
   outcomes and the consent policy in the commit info; or, if a rule failed, fails the step
   and everything downstream is skipped. Readers keep the previous version.

Nothing is ever judged that the step did not build, and nothing is published that the step
did not judge, whatever Dagster re-executes or selects. When only the checks of a table are
selected (the UI's check tab), the step judges the *published* version instead, reports the
checks against the materialization that produced it, and publishes nothing.
"""


import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from stedi_assets import erasure
from stedi_assets.audit import Audit, Outcome, failures
from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.erasure import Erasures
from stedi_assets.lake.delta import Lake, Snapshot, Staged
from stedi_assets.lake.errors import TableNotPublishedError
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy, now_ms
from stedi_assets.tables import CUSTOMER_LANDING, REJECTS_OF, Table

RESOURCES = frozenset({"lake", "engine", "privacy", "source"})
MATERIALIZATION_PAGES = 10  # how far back (100 each) to look for the materialization of a version


@dataclass
class Build:
    """What an asset step built: the table, its companion (a landing table's rejects), the
    relations its rules need beyond the step's inputs, and metadata for the UI."""

    data: pa.Table
    companion: pa.Table | None = None
    relations: Mapping[str, pa.Table] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)  # more for the commit info


@dataclass(frozen=True)
class AssetStep:
    """What a build function works with: the published upstream tables (a landing table's
    rejects with it, at the version it names), the resources, the erasure requests in force,
    and the moment the step judges consent at, the same for building and auditing."""

    context: dg.AssetExecutionContext
    inputs: Mapping[str, Snapshot]
    engine: SqlEngineResource
    privacy: PrivacyPolicy
    source: LandingSource
    lake: Lake
    erasures: Erasures = Erasures()
    as_of: int = field(default_factory=now_ms)

    def published(self, table: Table) -> Snapshot:
        """A table's current published version, for a read that is not an input (pictures)."""
        return self.lake.current(table.spec)

    def query(self, sql: str, *inputs: str) -> pa.Table:
        """A rule's SQL under the consent policy, over the named inputs."""
        return self.engine.engine().query(self.privacy.render(sql, self.as_of), {name: self.inputs[name] for name in inputs})


@dataclass
class Candidate:
    """A step's output as the IO manager receives it: a built table and its audit, to be
    staged only if it passed, and committed by the step after its checks are reported."""

    table: Table
    audit: Audit
    data: pa.Table
    companion: pa.Table | None
    outcomes: list[Outcome]
    staged: Staged | None = None
    staged_companion: Staged | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def stage(self, lake: Lake) -> None:
        if not self.passed:
            return  # a table that failed its audit is never written, not even unpublished
        if self.companion is not None and self.audit.companion is not None:
            self.staged_companion = lake.stage(self.audit.companion.spec, self.companion)
        self.staged = lake.stage(self.table.spec, self.data)

    def commit(self, lake: Lake, info: Mapping[str, Any]) -> Snapshot:
        """The companion first, then the table naming the companion's version, so that a
        reader pairing them (lake.companion) never sees one without the other."""
        if self.staged is None:
            raise RuntimeError(f"{self.table.name}: nothing was staged to commit")
        companions = []
        if self.staged_companion is not None:
            try:
                companions.append(lake.commit(self.staged_companion, info))
            except BaseException:
                lake.discard(self.staged)
                raise
        return lake.commit(self.staged, info, companions=companions)

    def discard(self, lake: Lake) -> None:
        for staged in (self.staged, self.staged_companion):
            if staged is not None:
                lake.discard(staged)


def conform(table: Table, data: pa.Table) -> pa.Table:
    """The columns of the contract, in its order and types: what is judged is what is written."""
    return data.select(table.column_names).cast(table.spec.schema)


def audited_asset(
    audit: Audit,
    *,
    group: str,
    kinds: set[str],
    inputs: Sequence[Table] = (),
    description: str | None = None,
) -> Callable[[Callable[[AssetStep], Build]], dg.AssetsDefinition]:
    """An asset whose step builds, audits and publishes `audit.table` (see the module).
    `inputs`: the published tables the build function reads, besides those the audit reads.
    The description defaults to the build function's docstring."""
    table = audit.table
    reads = list({t.name: t for t in [*inputs, *audit.reads]}.values())

    def decorator(build: Callable[[AssetStep], Build]) -> dg.AssetsDefinition:
        @dg.multi_asset(
            name=table.name,
            outs={
                table.name: dg.AssetOut(
                    group_name=group,
                    kinds=kinds,
                    description=description or inspect.getdoc(build),
                    is_required=False,  # not output when only the checks run
                )
            },
            ins={t.name: dg.AssetIn(t.name) for t in reads},
            check_specs=audit.check_specs(),
            can_subset=True,
            required_resource_keys=set(RESOURCES),
            # One writer per table at a time (with a pool limit in dagster.yaml); the Delta
            # commit underneath refuses a second writer of the same version anyway.
            pool=f"stedi_{table.name}",
        )
        def _step(context: dg.AssetExecutionContext, **snapshots: Snapshot):
            lake, privacy = context.resources.lake.lake(), context.resources.privacy
            try:
                erasures = erasure.load(lake, privacy)
            except erasure.SubjectKeyChangedError as error:
                raise dg.Failure(description=str(error)) from None
            step = AssetStep(
                context,
                {**snapshots, **with_rejects(lake, snapshots)},
                context.resources.engine,
                privacy,
                context.resources.source,
                lake,
                erasures.with_serials(erasure.erased_serials(snapshots.get(CUSTOMER_LANDING.name))),
            )
            if dg.AssetKey(table.name) in context.selected_asset_keys:
                started = time.perf_counter()
                built = build(step)
                yield from _publish(step, audit, built, build_seconds=time.perf_counter() - started)
            else:
                yield from _judge_published(step, audit)

        return _step

    return decorator


def with_rejects(lake: Lake, snapshots: Mapping[str, Snapshot]) -> dict[str, Snapshot]:
    """The rejects of each landing table among `snapshots`, at the version it names."""
    return {
        REJECTS_OF[name].name: lake.companion(snapshot, REJECTS_OF[name].spec)
        for name, snapshot in snapshots.items()
        if name in REJECTS_OF
    }


def _publish(step: AssetStep, audit: Audit, built: Build, build_seconds: float):
    table, context = audit.table, step.context
    started = time.perf_counter()
    data = conform(table, built.data)
    companion = conform(audit.companion, built.companion) if audit.companion and built.companion is not None else None
    relations = {**step.inputs, **step.erasures.relations(), **built.relations, table.name: data}
    if audit.companion is not None and companion is not None:
        relations[audit.companion.name] = companion
    outcomes = audit.judge(relations, step.engine, step.privacy, step.as_of)
    audit_seconds = time.perf_counter() - started
    candidate = Candidate(table, audit, data, companion, outcomes)
    started = time.perf_counter()
    yield dg.Output(candidate, output_name=table.name, metadata=dict(built.metadata))
    write_seconds = time.perf_counter() - started
    for outcome in outcomes:
        if _selected(context, table, outcome):
            yield _result(table, outcome, published=candidate.passed)
    if not candidate.passed:
        raise dg.Failure(
            description=f"{table.name} was not published ({failures(outcomes)}); readers keep its previous version.",
            metadata={o.rule.name: o.violations for o in outcomes},
        )
    lake = context.resources.lake.lake()
    info = {
        "run_id": context.run.run_id,
        "asset": table.name,
        "rows": data.num_rows,
        "rules": {o.rule.name: o.violations for o in outcomes},
        "consent_policy": step.privacy.consent_policy.value,
        ERASURES_APPLIED: step.erasures.requested_until,
        **built.info,
    }
    started = time.perf_counter()
    previous = _current_or_none(lake, table)
    try:
        snapshot = candidate.commit(lake, info)
    except BaseException:
        candidate.discard(lake)
        raise
    committed = time.perf_counter() - started
    context.log.info(
        f"{table.name}: committed as Delta version {snapshot.version} ({snapshot.rows} rows); "
        f"build {build_seconds:.3f} s, audit {audit_seconds:.3f} s, write {write_seconds:.3f} s, "
        f"commit {committed:.3f} s"
    )
    _forget_history(context, lake, audit, step, previous)


ERASURES_APPLIED = "erasures_applied"  # the newest erasure request a version was built with
# Files a run that died left behind, and no commit names, are deleted once this old: a
# younger one may be another writer's, still to be committed.
UNTRACKED_FILE_HOURS = 1


def _current_or_none(lake: Lake, table: Table) -> Snapshot | None:
    try:
        return lake.current(table.spec)
    except TableNotPublishedError:
        return None


def _forget_history(
    context: dg.AssetExecutionContext, lake: Lake, audit: Audit, step: AssetStep, previous: Snapshot | None
) -> None:
    """After a commit: older versions leave the history once they are STEDI_RETENTION_HOURS
    old; all of them at once after the first commit that applied a new erasure request, so no
    old version keeps an erased person (time travel to before the erasure is gone)."""
    specs = [audit.table.spec] + ([audit.companion.spec] if audit.companion is not None else [])
    purge = previous is not None and step.erasures.requested_until > previous.info.get(ERASURES_APPLIED, 0)
    for spec in specs:
        if purge:
            gone = lake.vacuum(spec, 0, apply=True, untracked=False) + lake.vacuum(spec, UNTRACKED_FILE_HOURS, apply=True)
            context.log.info(f"{spec.name}: erasure applied; deleted every earlier version ({len(gone)} files)")
        else:
            gone = lake.vacuum(spec, step.privacy.retention_hours, apply=True)
            if gone:
                context.log.info(f"{spec.name}: {len(gone)} files past the {step.privacy.retention_hours} h retention deleted")


def _judge_published(step: AssetStep, audit: Audit):
    """Checks run alone: judge the published version, report against its materialization."""
    table, context = audit.table, step.context
    lake = context.resources.lake.lake()
    try:
        published = lake.current(table.spec)
    except TableNotPublishedError as error:
        raise dg.Failure(description=f"{error}; there is nothing to check yet") from None
    relations: dict[str, Any] = {**step.inputs, **step.erasures.relations(), table.name: published}
    if audit.companion is not None:
        relations[audit.companion.name] = lake.companion(published, audit.companion.spec)
    if audit.from_source is not None:
        relations.update(audit.from_source(step.source, published))
    if table.name == CUSTOMER_LANDING.name:  # the serial keys only erased people own: from its commit
        relations.update(step.erasures.with_serials(erasure.erased_serials(published)).relations())
    target = _materialization_of(context, table, published)
    for outcome in audit.judge(relations, step.engine, step.privacy, step.as_of):
        if _selected(context, table, outcome):
            result = _result(table, outcome, published=True, version=published.version)
            yield dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(table.name),
                check_name=outcome.rule.name,
                passed=outcome.passed,
                metadata=result.metadata,
                target_materialization_data=target,
                severity=dg.AssetCheckSeverity.ERROR,
                blocking=True,
            )


def _selected(context: dg.AssetExecutionContext, table: Table, outcome: Outcome) -> bool:
    return dg.AssetCheckKey(dg.AssetKey(table.name), outcome.rule.name) in context.selected_asset_check_keys


def _result(table: Table, outcome: Outcome, published: bool, version: int | None = None) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {
        "violations": outcome.violations,
        "sample_keys": dg.MetadataValue.json(outcome.sample),
        "published": published,
    }
    if version is not None:
        metadata["judged_version"] = version
    return dg.AssetCheckResult(
        check_name=outcome.rule.name,
        asset_key=table.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _materialization_of(
    context: dg.AssetExecutionContext, table: Table, snapshot: Snapshot
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization that produced `snapshot` (by the run id in its commit), if this
    Dagster instance recorded it: among the asset's materializations, newest first (storage
    ids as the asset index numbers them, which is what check targets refer to)."""
    run_id = snapshot.info.get("run_id")
    if not run_id:
        return None
    cursor = None
    for _ in range(MATERIALIZATION_PAGES):
        page = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(table.name)), limit=100, cursor=cursor
        )
        for record in page.records:
            if record.run_id == run_id:
                return AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=run_id, timestamp=record.timestamp
                )
        if not page.has_more:
            break
        cursor = page.cursor
    return None
