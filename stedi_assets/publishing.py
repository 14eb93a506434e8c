"""Write-audit-publish inside each table's own asset step (`audited_asset`, docs/storage.md): the
step builds the table, judges every blocking rule of its `Audit` on exactly that data (in memory,
or staged out of sight, `Staged`), yields the `Output` (an `Audited` the IO manager commits, or
None: nothing written), then one `AssetCheckResult` per rule, after the output so Dagster records
them against this materialization, and fails if a rule failed. With only a table's checks
selected, it judges the *published* version against the materialization that produced it, and
publishes nothing.

This module names no zone and no table: what a zone needs beyond its inputs, it declares in
its `Audit` (`paired`, `from_source`) or builds itself.
"""


import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

# Dagster internals, on purpose: 1.13.27 exports no class for the target materialization that
# dg.AssetCheckEvaluation takes, and dg.AssetCheckResult always targets the asset's latest
# materialization, not the one that produced the version the checks run alone judged.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from stedi_assets import erasure
from stedi_assets.audit import Audit, Outcome, evaluate, failures
from stedi_assets.charts import Pictures
from stedi_assets.engine import Relation
from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.erasure import Erasures
from stedi_assets.lake.delta import Lake, Snapshot, Staged
from stedi_assets.lake.errors import TableNotPublishedError
from stedi_assets.privacy import PrivacyPolicy, mask, now_ms
from stedi_assets.tables import Table

CONCURRENT_RUNS = 100  # at most how many materializations of a table one run can overlap
REBUILD_AT = "rebuild_at"  # epoch ms from which a version may be out of date though no input changed
PREVIEW_ROWS = 5


Data = pa.Table | tuple[pa.Table, ...]  # a table, or its parts: one data file each


class StepConfig(dg.Config):
    """Run config of every table's step."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild the table from scratch: a landing table re-parses every source file, a trusted or "
        "curated table recomputes every row. By default each step changes only what its inputs changed.",
    )


@dataclass(frozen=True)
class NextVersion:
    """A table's next version as a step commits it: `data` written whole, or added on `base`
    less its data files `removes`; with neither data nor removes, `base` stays as it is."""

    table: Table
    data: Data | Staged | None
    base: Snapshot | None = None
    removes: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return self.data is not None or bool(self.removes)


@dataclass(frozen=True)
class Increment:
    """A build that changes the published version `base` in one commit on it: the built rows
    added, its data files `removes` removed (and its rejects' as `companion` says). `rows`:
    the table's rows after the commit. With nothing to change, nothing is committed."""

    base: Snapshot
    rows: int
    removes: tuple[str, ...] = ()
    companion: NextVersion | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)  # what changed, for the commit info and the UI


@dataclass
class Build:
    """What an asset step built: the table (or its parts, a data file each), its companion and
    ledger (a landing table's rejects and source files), the relations its rules need beyond
    the step's inputs (they may stand in for the table: an incremental build is judged on the
    rows that can break a rule), and the `increment` if it changes the published version."""

    data: pa.Table | Sequence[pa.Table] | Staged
    companion: pa.Table | Sequence[pa.Table] | None = None
    relations: Mapping[str, Relation] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    increment: Increment | None = None
    ledger: pa.Table | None = None
    info: Mapping[str, Any] = field(default_factory=dict)  # more for the commit info
    built_with: str | None = None  # the rule SQL `data` is the result of, over the step's inputs (audit.Rule.met_by)


@dataclass(frozen=True)
class AssetStep:
    """What a build function works with: the published upstream tables (and those paired
    with them), the resources, the erasure requests in force, the moment consent is judged
    at (the same for building and auditing), and whether it rebuilds from scratch."""

    context: dg.AssetExecutionContext
    inputs: Mapping[str, Snapshot]
    engine: SqlEngineResource
    privacy: PrivacyPolicy
    source: Any  # the landing source resource, for the zones that read it
    lake: Lake
    pictures: Pictures  # the step's charts for the UI, and the time they take
    erasures: Erasures = Erasures()
    full_refresh: bool = False
    as_of: int = field(default_factory=now_ms)
    published: Snapshot | None = None  # this table's published version, read once at the start of the step

    def _rendered(self, sql: str, inputs: Sequence[str], relations: Mapping[str, Relation]) -> tuple[str, dict[str, Relation]]:
        """A rule's SQL under the consent policy, over the named inputs and `relations` (standing in for inputs)."""
        return self.privacy.render(sql, self.as_of), {**{name: self.inputs[name] for name in inputs}, **relations}

    def query(self, sql: str, *inputs: str, **relations: Relation) -> pa.Table:
        return self.engine.engine().query(*self._rendered(sql, inputs, relations))

    def stage(self, table: Table, sql: str, *inputs: str, **relations: Relation) -> Staged:
        """`query`'s result as `table`'s staged files, written where the engine runs (SqlEngine.stage)."""
        return self.engine.engine().stage(*self._rendered(sql, inputs, relations), self.lake, table.spec)

    def current(self, table: Table) -> Snapshot | None:
        return self.lake.current_versions([table.spec]).get(table.name)


@dataclass(frozen=True, kw_only=True)
class Audited(NextVersion):
    """What a step hands its IO manager (io_manager.py): a table that passed every blocking
    rule, exactly as judged, to commit as its next version after its `companions` (named in
    its commit). Then versions past `retention_hours` leave the history. `timings`: for the log."""

    info: Mapping[str, Any]
    companions: tuple[NextVersion, ...] = ()
    retention_hours: int = 0
    timings: str = ""

    @property
    def changes_nothing(self) -> bool:
        return (
            self.base is not None
            and not self.changes
            and not any(c.changes for c in self.companions)
            # A version built without some erasure requests is committed again to record them.
            and self.base.info.get(erasure.ERASURES_APPLIED) == self.info.get(erasure.ERASURES_APPLIED)
        )


def _conform_all(table: Table, data: pa.Table | Sequence[pa.Table] | Staged) -> Data | Staged:
    if isinstance(data, Staged):  # conformed as it was written (Lake.stage)
        return data
    return table.conform(data) if isinstance(data, pa.Table) else tuple(table.conform(part) for part in data)


def audited_asset(
    audit: Audit, *, group: str, kinds: set[str], inputs: Sequence[Table] = (), description: str | None = None,
    automation_condition: dg.AutomationCondition | None = None,
) -> Callable[[Callable[[AssetStep], Build]], dg.AssetsDefinition]:
    """An asset whose step builds, audits and publishes `audit.table` (see the module).
    `inputs`: the tables the build reads besides the audit's; description: the build's docstring."""
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
            check_specs=[dg.AssetCheckSpec(r.name, asset=table.name, description=r.description, blocking=True,
                                           additional_deps=[t.name for t in audit.reads]) for r in audit.rules],
            can_subset=True,
            required_resource_keys={"lake", "engine", "privacy", "source"},  # no concurrency pool: io_manager.py
        )
        def _step(context: dg.AssetExecutionContext, config: StepConfig):
            resources = context.resources
            lake, privacy = resources.lake.lake(), resources.privacy
            snapshots = {t.name: lake.current(t.spec) for t in reads}
            for paired in audit.paired:  # at the version the commit of a table it reads names
                owner = next((s for s in snapshots.values() if paired.name in s.companions), None)
                if owner is None:
                    raise TableNotPublishedError(f"no table {table.name} reads names a version of {paired.name}")
                snapshots[paired.name] = lake.companion(owner, paired.spec)
            try:
                erasures = erasure.load(lake, privacy, snapshots.values())
            except erasure.SubjectKeyChangedError as error:
                raise dg.Failure(description=str(error)) from None
            step = AssetStep(context, snapshots, resources.engine, privacy, resources.source, lake, Pictures(context.log), erasures)
            published = step.current(table)
            if dg.AssetKey(table.name) not in context.selected_asset_keys:
                yield from _judge_published(step, audit, published)
                return
            # Rebuilt whole, whatever changed in its inputs, from a moment the published version
            # recorded as due (consent dated after its run). Not for erasure requests: each zone's
            # build follows their rows out as a change (landing/assets.py, incremental.py).
            due = published is not None and step.as_of >= published.info.get(REBUILD_AT, step.as_of + 1)
            step = replace(step, full_refresh=config.full_refresh or due, published=published)
            started = time.perf_counter()
            built = build(step)
            yield from _publish(step, audit, built, time.perf_counter() - started)

        return _step

    return decorator


def _publish(step: AssetStep, audit: Audit, built: Build, build_seconds: float):
    table, increment, started = audit.table, built.increment, time.perf_counter()
    data = _conform_all(table, built.data)
    added = table.whole(data)
    added_rows = added.rows if isinstance(added, Staged) else added.num_rows
    relations: dict[str, Any] = {**step.inputs, **step.erasures.relations(), table.name: added}
    companions: list[NextVersion] = []
    if audit.companion is not None and built.companion is not None:
        rejects = _conform_all(audit.companion, built.companion)
        relations[audit.companion.name] = audit.companion.whole(rejects)
        if increment is None:
            companions.append(NextVersion(audit.companion, rejects))
        elif increment.companion is not None:
            companions.append(replace(increment.companion, data=rejects if relations[audit.companion.name].num_rows else None))
    if audit.ledger is not None:
        if built.ledger is not None:
            companions.append(NextVersion(audit.ledger, audit.ledger.conform(built.ledger)))
        elif increment is not None and audit.ledger.name in increment.base.companions:
            companions.append(NextVersion(audit.ledger, None, step.lake.companion(increment.base, audit.ledger.spec)))
    relations.update(built.relations)
    outcomes = audit.judge(relations, step.engine, step.privacy, step.as_of, built.built_with)
    if increment is not None and not step.erasures.applied_by(increment.base):
        # An increment on a version built without some erasure requests in force keeps rows its
        # build never looked at, and its version will say it applies them: the rules that read them
        # judge the kept rows too, so a kept row of hers fails the step instead of being published.
        kept = {table.name: increment.base.without(increment.removes)}
        if increment.companion is not None and increment.companion.base is not None:
            kept[increment.companion.table.name] = increment.companion.base.without(increment.companion.removes)
        outcomes = [o + evaluate(o.rule, {**relations, **kept}, step.engine, step.privacy, step.as_of) if o.rule.reads_erasures
                    else o for o in outcomes]
    passed = all(o.passed for o in outcomes)
    rows = increment.rows if increment is not None else added_rows
    publishes = data if increment is None or added_rows else None
    audited, build_kind = None, "full" if increment is None else "incremental"
    if passed:
        info = {
            "run_id": step.context.run.run_id,
            "asset": table.name,
            "rows": rows,
            "rules": {o.rule.name: o.violations for o in outcomes},
            "consent_policy": step.privacy.consent_policy.value,
            # The versions it was built from: where the next incremental build starts.
            "inputs": {name: snapshot.version for name, snapshot in step.inputs.items()},
            "build": build_kind,
            **({"changes": dict(increment.summary)} if increment is not None and increment.summary else {}),
            erasure.ERASURES_APPLIED: step.erasures.fingerprint(),
            **built.info,
        }
        # `stedi bench` reads these times from the commit's log line (bench/runner.py).
        audit_seconds = time.perf_counter() - started
        timings = f"build {build_seconds:.3f} s (pictures {step.pictures.seconds:.3f} s), audit {audit_seconds:.3f} s"
        base, removes = (increment.base, increment.removes) if increment is not None else (None, ())
        audited = Audited(table, publishes, base, removes, info=info, companions=tuple(companions),
                          retention_hours=step.privacy.retention_hours, timings=timings)
    failed = [f"{o.rule.name} ({o.violations})" for o in outcomes if not o.passed]
    metadata = {
        **built.metadata,
        "dagster/row_count": rows,
        "dagster/column_schema": table.table_schema,
        "published": passed,
        "audit": f"FAILED {', '.join(failed)}: not published, nothing written; readers keep the previous version"
        if failed else "passed every blocking rule: published with its checks",
        "preview": preview(table, added.head(PREVIEW_ROWS) if isinstance(added, Staged) else added.slice(0, PREVIEW_ROWS)),
        "build": build_kind,
        "dagster/uri": step.lake.uri(table.location),
    }
    if increment is not None:
        changes = dg.MetadataValue.json(dict(increment.summary))
        metadata.update(rows_added=added_rows, base_version=increment.base.version, changes=changes)
    elif audit.companion is not None and audit.companion.name in relations:
        metadata[f"{audit.companion.name}_rows"] = relations[audit.companion.name].num_rows
    if isinstance(data, Staged) and (not passed or publishes is None):
        step.lake.discard(data)  # nothing of it is committed: no file left behind
    yield dg.Output(audited, output_name=table.name, metadata=metadata)
    for outcome in _selected(step.context, table, outcomes):
        yield dg.AssetCheckResult(check_name=outcome.rule.name, asset_key=table.name, passed=outcome.passed,
                                  metadata=_check_metadata(outcome, published=passed))
    if not passed:
        raise dg.Failure(
            description=f"{table.name} was not published ({failures(outcomes)}); readers keep its previous version.",
            metadata={o.rule.name: o.violations for o in outcomes},
        )


def preview(table: Table, rows: pa.Table) -> dg.TableMetadataValue:
    """The first rows, direct identifiers masked."""
    names = table.column_names
    cells = ({c: mask(c, v) for c, v in row.items()} for row in rows.select(names).to_pylist())
    records = [dg.TableRecord({c: v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for c, v in row.items()})
               for row in cells]
    return dg.MetadataValue.table(records, schema=table.table_schema)


def _judge_published(step: AssetStep, audit: Audit, published: Snapshot | None):
    """Checks run alone: judge the published version, report against its materialization."""
    table = audit.table
    if published is None:
        where = step.lake.uri(table.location)
        raise dg.Failure(description=f"{table.name} has no published version at {where}: there is nothing to check")
    # The serial keys only erased people own, as this version recorded them (if it does).
    erasures = step.erasures.with_serials(step.erasures.serials | erasure.erased_serials(published))
    relations = {**step.inputs, **erasures.relations(), **audit.published_relations(step.lake, published, step.source)}
    target = _materialization_of(step.context, table, published)
    for outcome in _selected(step.context, table, audit.judge(relations, step.engine, step.privacy, step.as_of)):
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(table.name), check_name=outcome.rule.name, passed=outcome.passed, blocking=True,
            metadata=_check_metadata(outcome, published=True, version=published.version), target_materialization_data=target,
        )


def _selected(context: dg.AssetExecutionContext, table: Table, outcomes: list[Outcome]) -> list[Outcome]:
    keys = context.selected_asset_check_keys
    return [o for o in outcomes if dg.AssetCheckKey(dg.AssetKey(table.name), o.rule.name) in keys]


def _check_metadata(outcome: Outcome, published: bool, version: int | None = None) -> dict[str, Any]:
    return {
        "violations": outcome.violations, "sample_keys": dg.MetadataValue.json(outcome.sample), "published": published,
        **({"judged_version": version} if version is not None else {}),
        **({"judged": "by construction: the table is the rule's SQL over the inputs it reads"} if outcome.by_construction else {}),
    }


def _materialization_of(context: dg.AssetExecutionContext, table: Table, snapshot: Snapshot
                        ) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization that produced `snapshot`, by its commit's run id, if this instance
    recorded that run: the asset's materializations while it ran (storage ids as the asset
    index numbers them, which check targets refer to; sqlite's run logs number apart)."""
    run = context.instance.get_run_record_by_id(snapshot.info["run_id"]) if "run_id" in snapshot.info else None
    if run is None or run.start_time is None:
        return None
    during = dg.AssetRecordsFilter(dg.AssetKey(table.name), after_timestamp=run.start_time, before_timestamp=run.end_time)
    records = context.instance.fetch_materializations(during, limit=CONCURRENT_RUNS).records
    return next((AssetCheckEvaluationTargetMaterializationData(storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp)
                 for r in records if r.run_id == run.dagster_run.run_id), None)
