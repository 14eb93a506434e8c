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
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from stedi_assets import erasure
from stedi_assets.audit import Audit, Outcome, failures
from stedi_assets.charts import Pictures
from stedi_assets.engine import Relation
from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.erasure import Erasures
from stedi_assets.lake.delta import Lake, Snapshot, Staged
from stedi_assets.lake.errors import TableNotPublishedError
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy, now_ms
from stedi_assets.tables import CUSTOMER_LANDING, REJECTS_OF, Table

RESOURCES = frozenset({"lake", "engine", "privacy", "source"})
MATERIALIZATION_PAGES = 10  # how far back (100 each) to look for the materialization of a version
ERASURES_APPLIED = "erasures_applied"  # a fingerprint of the erasure requests a version was built with
REBUILD_AT = "rebuild_at"  # epoch ms from which a version may be out of date though no input changed
# Files a run that died left behind, and no commit names, are deleted once this old: a
# younger one may be another writer's, still to be committed.
UNTRACKED_FILE_HOURS = 1


class StepConfig(dg.Config):
    """Run config of every table's step."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild the table from scratch: a landing table re-parses every source file, a trusted or "
        "curated table recomputes every row. By default each step changes only what its inputs changed.",
    )


@dataclass(frozen=True)
class Increment:
    """A build that changes the published version `base` rather than replacing it: the
    built rows are added to it and its data files `removes` are removed (for a landing
    table, likewise for its companion on `companion_base`), in one commit on `base`. `rows`:
    the table's rows after the commit. A build with nothing to add or remove (and no new
    ledger) commits nothing: the table stays at `base`."""

    base: Snapshot
    rows: int
    removes: tuple[str, ...] = ()
    companion_base: Snapshot | None = None
    companion_removes: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)  # what changed, for the commit info and the UI


@dataclass
class Build:
    """What an asset step built: the table (or, as a sequence, its parts, each written as
    a data file of its own: a landing table's rows per source file), its companion (a
    landing table's rejects, likewise), its ledger (a landing table's source files), the
    relations its rules need beyond the step's inputs (they may stand in for the table
    itself: an incremental build is judged on every row that can break a rule, not on the
    whole table), metadata for the UI, and whether it changes the published version
    (`increment`) rather than replacing it."""

    data: pa.Table | Sequence[pa.Table]
    companion: pa.Table | Sequence[pa.Table] | None = None
    relations: Mapping[str, Relation] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    increment: Increment | None = None
    ledger: pa.Table | None = None
    info: Mapping[str, Any] = field(default_factory=dict)  # more for the commit info


@dataclass(frozen=True)
class AssetStep:
    """What a build function works with: the published upstream tables (a landing table's
    rejects with it, at the version it names), the resources, the erasure requests in force,
    the moment the step judges consent at (the same for building and auditing), and whether
    it rebuilds from scratch."""

    context: dg.AssetExecutionContext
    inputs: Mapping[str, Snapshot]
    engine: SqlEngineResource
    privacy: PrivacyPolicy
    source: LandingSource
    lake: Lake
    pictures: Pictures  # the step's charts for the UI, and the time they take
    erasures: Erasures = Erasures()
    full_refresh: bool = False
    as_of: int = field(default_factory=now_ms)

    def query(self, sql: str, *inputs: str, **relations: Relation) -> pa.Table:
        """A rule's SQL under the consent policy, over the named inputs and `relations`
        (which stand in for inputs of the same name)."""
        return self.engine.engine().query(
            self.privacy.render(sql, self.as_of), {**{name: self.inputs[name] for name in inputs}, **relations}
        )

    def published(self, table: Table) -> Snapshot | None:
        """The table's published version, or None if it has none."""
        try:
            return self.lake.current(table.spec)
        except TableNotPublishedError:
            return None


@dataclass
class Candidate:
    """A step's output as the IO manager receives it: a built table and its audit, to be
    staged only if it passed, and committed by the step after its checks are reported."""

    table: Table
    audit: Audit
    data: pa.Table | list[pa.Table]
    companion: pa.Table | list[pa.Table] | None
    outcomes: list[Outcome]
    increment: Increment | None = None
    ledger: pa.Table | None = None
    staged: Staged | None = None
    staged_companion: Staged | None = None
    staged_ledger: Staged | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def added(self) -> pa.Table:
        """The rows this build adds: the whole table, unless it is an increment."""
        return whole(self.table, self.data)

    @property
    def rows(self) -> int:
        """The table's rows once committed."""
        return self.increment.rows if self.increment is not None else self.added.num_rows

    @property
    def changes_nothing(self) -> bool:
        """An increment that adds and removes nothing: nothing to commit."""
        inc = self.increment
        return (
            inc is not None
            and self.added.num_rows == 0
            and not inc.removes
            and not inc.companion_removes
            and (self.companion is None or whole(self.audit.companion, self.companion).num_rows == 0)  # type: ignore[arg-type]
            and self.ledger is None
        )

    def stage(self, lake: Lake) -> None:
        if not self.passed or self.changes_nothing:
            return  # a table that failed its audit is never written, not even unpublished
        incremental = self.increment is not None
        if self.companion is not None and self.audit.companion is not None:
            if not incremental or whole(self.audit.companion, self.companion).num_rows:
                self.staged_companion = lake.stage(self.audit.companion.spec, self.companion)
        if self.ledger is not None and self.audit.ledger is not None:
            self.staged_ledger = lake.stage(self.audit.ledger.spec, self.ledger)
        if not incremental or self.added.num_rows:
            self.staged = lake.stage(self.table.spec, self.data)

    def commit(self, lake: Lake, info: Mapping[str, Any]) -> Snapshot:
        """The companions first, then the table naming their versions, so that a reader
        pairing them (lake.companion) never sees one without the other. An increment is
        committed on the version it was built from; one that changes nothing is not
        committed at all."""
        inc = self.increment
        if inc is not None and self.changes_nothing:
            return inc.base
        if self.staged is None and inc is None:
            raise RuntimeError(f"{self.table.name}: nothing was staged to commit")
        companions = []
        try:
            if self.audit.companion is not None:
                if inc is None:
                    if self.staged_companion is not None:
                        companions.append(lake.commit(self.staged_companion, info))
                elif self.staged_companion is not None or inc.companion_removes:
                    assert inc.companion_base is not None
                    companions.append(
                        lake.commit(self.staged_companion, info, base=inc.companion_base, removes=inc.companion_removes)
                    )
                elif inc.companion_base is not None:
                    companions.append(inc.companion_base)
            if self.audit.ledger is not None:
                if self.staged_ledger is not None:
                    companions.append(lake.commit(self.staged_ledger, info))
                elif inc is not None and (ledger := _companion_or_none(lake, inc.base, self.audit.ledger)) is not None:
                    companions.append(ledger)
        except BaseException:
            self.discard(lake)
            raise
        if inc is None:
            return lake.commit(self.staged, info, companions=companions)
        return lake.commit(self.staged, info, companions=companions, base=inc.base, removes=inc.removes)

    def discard(self, lake: Lake) -> None:
        for staged in (self.staged, self.staged_companion, self.staged_ledger):
            if staged is not None:
                lake.discard(staged)


def _companion_or_none(lake: Lake, snapshot: Snapshot, table: Table) -> Snapshot | None:
    try:
        return lake.companion(snapshot, table.spec)
    except TableNotPublishedError:
        return None


def whole(table: Table, data: pa.Table | Sequence[pa.Table]) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.concat_tables(data) if data else table.spec.schema.empty_table()


def conform(table: Table, data: pa.Table) -> pa.Table:
    """The columns of the contract, in its order and types: what is judged is what is written."""
    return data.select(table.column_names).cast(table.spec.schema)


def _conform_all(table: Table, data: pa.Table | Sequence[pa.Table]) -> pa.Table | list[pa.Table]:
    return conform(table, data) if isinstance(data, pa.Table) else [conform(table, part) for part in data]


def audited_asset(
    audit: Audit,
    *,
    group: str,
    kinds: set[str],
    inputs: Sequence[Table] = (),
    description: str | None = None,
    automation_condition: dg.AutomationCondition | None = None,
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
                    automation_condition=automation_condition,
                )
            },
            # Dependencies, not inputs: the step reads each upstream table's published version
            # itself (as the IO manager's `load_input` would), without two Dagster events per input.
            deps=[dg.AssetKey(t.name) for t in reads],
            check_specs=audit.check_specs(),
            can_subset=True,
            required_resource_keys=set(RESOURCES),
            # One writer per table at a time (with a pool limit in dagster.yaml); the Delta
            # commit underneath refuses a second writer of the same version anyway.
            pool=f"stedi_{table.name}",
        )
        def _step(context: dg.AssetExecutionContext, config: StepConfig):
            lake, privacy = context.resources.lake.lake(), context.resources.privacy
            snapshots = {t.name: lake.current(t.spec) for t in reads}
            try:
                erasures = erasure.load(lake, privacy).with_serials(
                    erasure.erased_serials(snapshots.get(CUSTOMER_LANDING.name))
                )
            except erasure.SubjectKeyChangedError as error:
                raise dg.Failure(description=str(error)) from None
            step = AssetStep(
                context,
                {**snapshots, **with_rejects(lake, snapshots)},
                context.resources.engine,
                privacy,
                context.resources.source,
                lake,
                Pictures(context.log),
                erasures,
            )
            published = step.published(table)
            if config.full_refresh or _out_of_date(published, step):
                step = replace(step, full_refresh=True)
            if dg.AssetKey(table.name) in context.selected_asset_keys:
                started = time.perf_counter()
                built = build(step)
                yield from _publish(step, audit, built, build_seconds=time.perf_counter() - started)
            else:
                yield from _judge_published(step, audit)

        return _step

    return decorator


def with_rejects(lake: Lake, snapshots: Mapping[str, Snapshot]) -> dict[str, Snapshot]:
    """customer_landing's rejects, at the version it names, wherever customer_landing is read:
    what a rejected customer line still names counts for privacy (trusted/rules.py)."""
    rejects = REJECTS_OF[CUSTOMER_LANDING.name]
    landing = snapshots.get(CUSTOMER_LANDING.name)
    return {rejects.name: lake.companion(landing, rejects.spec)} if landing is not None else {}


def _out_of_date(published: Snapshot | None, step: AssetStep) -> bool:
    """Whether the published version must be rebuilt whole whatever changed in its inputs:
    erasure requests it was not built with (an increment would keep the erased people's
    published rows), or a moment it recorded as due (consent dated after its run)."""
    if published is None:
        return False
    return published.info.get(ERASURES_APPLIED) != step.erasures.fingerprint() or step.as_of >= published.info.get(
        REBUILD_AT, step.as_of + 1
    )


def _publish(step: AssetStep, audit: Audit, built: Build, build_seconds: float):
    table, context = audit.table, step.context
    started = time.perf_counter()
    data = _conform_all(table, built.data)
    companion = (
        _conform_all(audit.companion, built.companion) if audit.companion and built.companion is not None else None
    )
    ledger = conform(audit.ledger, built.ledger) if audit.ledger and built.ledger is not None else None
    candidate = Candidate(table, audit, data, companion, [], built.increment, ledger)
    relations: dict[str, Any] = {**step.inputs, **step.erasures.relations(), table.name: candidate.added}
    if audit.companion is not None and companion is not None:
        relations[audit.companion.name] = whole(audit.companion, companion)
    relations.update(built.relations)
    candidate.outcomes = audit.judge(relations, step.engine, step.privacy, step.as_of)
    audit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    yield dg.Output(candidate, output_name=table.name, metadata=dict(built.metadata))
    write_seconds = time.perf_counter() - started
    for outcome in candidate.outcomes:
        if _selected(context, table, outcome):
            yield _result(table, outcome, published=candidate.passed)
    if not candidate.passed:
        raise dg.Failure(
            description=f"{table.name} was not published ({failures(candidate.outcomes)}); readers keep its previous version.",
            metadata={o.rule.name: o.violations for o in candidate.outcomes},
        )
    lake = context.resources.lake.lake()
    increment = built.increment
    info = {
        "run_id": context.run.run_id,
        "asset": table.name,
        "rows": candidate.rows,
        "rules": {o.rule.name: o.violations for o in candidate.outcomes},
        "consent_policy": step.privacy.consent_policy.value,
        # The versions it was built from: where the next incremental build starts.
        "inputs": {name: snapshot.version for name, snapshot in step.inputs.items()},
        "build": "full" if increment is None else "incremental",
        **({"changes": dict(increment.summary)} if increment is not None and increment.summary else {}),
        ERASURES_APPLIED: step.erasures.fingerprint(),
        **built.info,
    }
    started = time.perf_counter()
    previous = step.published(table)
    try:
        snapshot = candidate.commit(lake, info)
    except BaseException:
        candidate.discard(lake)
        raise
    # `stedi bench` reads the times from these lines (bench/runner.py).
    times = f"build {build_seconds:.3f} s (pictures {step.pictures.seconds:.3f} s), audit {audit_seconds:.3f} s"
    if increment is not None and snapshot.version == increment.base.version:
        context.log.info(
            f"{table.name}: nothing changed, stays at Delta version {snapshot.version} ({snapshot.rows} rows); {times}"
        )
        return
    context.log.info(
        f"{table.name}: committed as Delta version {snapshot.version} ({snapshot.rows} rows, "
        f"{info['build']} build); {times}, write {write_seconds:.3f} s, "
        f"commit {time.perf_counter() - started:.3f} s"
    )
    _forget_history(context, lake, audit, step, previous)


def _forget_history(
    context: dg.AssetExecutionContext, lake: Lake, audit: Audit, step: AssetStep, previous: Snapshot | None
) -> None:
    """After a commit: older versions leave the history once they are STEDI_RETENTION_HOURS
    old; all of them at once after the first commit that applied new erasure requests, so no
    old version keeps an erased person (time travel to before the erasure is gone)."""
    specs = [t.spec for t in (audit.table, *audit.companions)]
    purge = bool(step.erasures) and previous is not None and previous.info.get(ERASURES_APPLIED) != step.erasures.fingerprint()
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
        ledger = None if audit.ledger is None else _companion_or_none(lake, published, audit.ledger)
        relations.update(audit.from_source(step.source, ledger))
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
