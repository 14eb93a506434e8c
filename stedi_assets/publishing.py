"""Write-audit-publish inside each table's own asset step (`audited_asset`): the step builds
the table from the published upstream tables; judges every blocking rule of its `Audit` on
exactly that data (in memory, or as Parquet files staged out of sight in the table's folder,
`Staged`); yields the `Output` (an `Audited` value that the IO manager commits as the next
Delta version, or None if a rule failed: nothing written, readers keep the previous version);
then one `AssetCheckResult` per rule, after the output so Dagster records them against this
materialization; and fails if a rule failed, so everything downstream is skipped. Nothing is
judged that the step did not build, nor published that it did not judge. With only a table's
checks selected (the UI's check tab), the step judges the *published* version, reports against
the materialization that produced it, and publishes nothing.

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

# Dagster internals, on purpose: 1.13.27 exports no constructor for a check's target
# materialization (dg.AssetCheckEvaluation takes one, but its class is not in `dagster`), and
# dg.AssetCheckResult always targets the asset's latest materialization, not the one that
# produced the version the checks run alone judged.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from stedi_assets import erasure
from stedi_assets.audit import SAMPLE_SIZE, Audit, Outcome, evaluate, failures
from stedi_assets.charts import Pictures
from stedi_assets.engine import Relation
from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.erasure import Erasures
from stedi_assets.lake.delta import Lake, Snapshot, Staged
from stedi_assets.lake.errors import TableNotPublishedError
from stedi_assets.privacy import PrivacyPolicy, mask, now_ms
from stedi_assets.tables import Table

RESOURCES = frozenset({"lake", "engine", "privacy", "source"})
MATERIALIZATIONS = 1000  # how far back to look for the materialization of a version
REBUILD_AT = "rebuild_at"  # epoch ms from which a version may be out of date though no input changed


class StepConfig(dg.Config):
    """Run config of every table's step."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild the table from scratch: a landing table re-parses every source file, a trusted or "
        "curated table recomputes every row. By default each step changes only what its inputs changed.",
    )


@dataclass(frozen=True)
class Increment:
    """A build that changes the published version `base` in one commit on it: the built rows
    added, its data files `removes` removed (likewise for a companion on `companion_base`).
    `rows`: the table's rows after the commit. With nothing to change, nothing is committed."""

    base: Snapshot
    rows: int
    removes: tuple[str, ...] = ()
    companion_base: Snapshot | None = None
    companion_removes: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)  # what changed, for the commit info and the UI


@dataclass
class Build:
    """What an asset step built: the table (or its parts, a data file each: a landing table's
    rows per source file), its companion and ledger (a landing table's rejects and source
    files), the relations its rules need beyond the step's inputs (they may stand in for the
    table: an incremental build is judged on the rows that can break a rule), UI metadata,
    and the `increment` if it changes the published version rather than replacing it."""

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

    def _rendered(self, sql: str, inputs: Sequence[str], relations: Mapping[str, Relation]) -> tuple[str, dict[str, Relation]]:
        """A rule's SQL under the consent policy, over the named inputs and `relations` (which
        stand in for inputs of the same name)."""
        return self.privacy.render(sql, self.as_of), {**{name: self.inputs[name] for name in inputs}, **relations}

    def query(self, sql: str, *inputs: str, **relations: Relation) -> pa.Table:
        return self.engine.engine().query(*self._rendered(sql, inputs, relations))

    def stage(self, table: Table, sql: str, *inputs: str, **relations: Relation) -> Staged:
        """`query`'s result as `table`'s staged files, written by the engine (SqlEngine.stage):
        DuckDB streams it here in batches (memory bounded by STEDI_MEMORY_LIMIT), Spark's
        executors write it."""
        return self.engine.engine().stage(*self._rendered(sql, inputs, relations), self.lake, table.spec)

    def current(self, table: Table) -> Snapshot | None:
        """The table's published version, or None if it has none."""
        try:
            return self.lake.current(table.spec)
        except TableNotPublishedError:
            return None


Data = pa.Table | tuple[pa.Table, ...]  # a table, or its parts: one data file each


@dataclass(frozen=True)
class Companion:
    """A table committed in the same step just before another (a landing table's rejects and
    ledger): `data` written whole, or on `base` less `removes`; with neither, `base` is paired again."""

    table: Table
    data: Data | None
    base: Snapshot | None = None
    removes: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return self.data is not None or bool(self.removes)


@dataclass(frozen=True)
class Audited:
    """What a step hands its IO manager (io_manager.py): a table that passed every blocking
    rule, exactly as judged, to commit as its next version after its `companions` (named in
    its commit). Then versions past `retention_hours` leave the history. `timings`: for the log."""

    table: Table
    data: Data | Staged | None
    info: Mapping[str, Any]
    companions: tuple[Companion, ...] = ()
    increment: Increment | None = None
    retention_hours: int = 0
    timings: str = ""

    @property
    def changes_nothing(self) -> bool:
        return (
            self.increment is not None
            and self.data is None
            and not self.increment.removes
            and not any(c.changes for c in self.companions)
            # A version built without some erasure requests is committed again to record them.
            and self.increment.base.info.get(erasure.ERASURES_APPLIED) == self.info.get(erasure.ERASURES_APPLIED)
        )


def _conform_all(table: Table, data: pa.Table | Sequence[pa.Table] | Staged) -> Data | Staged:
    if isinstance(data, Staged):  # conformed as it was written (Lake.stage)
        return data
    return table.conform(data) if isinstance(data, pa.Table) else tuple(table.conform(part) for part in data)


def _rows(data: pa.Table | Staged) -> int:
    return data.rows if isinstance(data, Staged) else data.num_rows


def check_specs(audit: Audit) -> list[dg.AssetCheckSpec]:
    """One blocking check per rule, depending on the tables the rules read."""
    deps = [t.name for t in audit.reads]
    return [
        dg.AssetCheckSpec(r.name, asset=audit.table.name, description=r.description, blocking=True, additional_deps=deps)
        for r in audit.rules
    ]


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
            check_specs=check_specs(audit),
            can_subset=True,
            required_resource_keys=set(RESOURCES),
            # No concurrency pool: two runs writing one table are serialised by the Delta
            # commit, and the loser's step is retried (io_manager.py).
        )
        def _step(context: dg.AssetExecutionContext, config: StepConfig):
            lake, privacy = context.resources.lake.lake(), context.resources.privacy
            snapshots = {t.name: lake.current(t.spec) for t in reads}
            snapshots.update(_paired(lake, audit, snapshots))
            try:
                # The serial keys only erased people own, as the versions read recorded them.
                erasures = erasure.load(lake, privacy).with_serials(
                    frozenset().union(*(erasure.erased_serials(s) for s in snapshots.values()))
                )
            except erasure.SubjectKeyChangedError as error:
                raise dg.Failure(description=str(error)) from None
            resources = context.resources
            step = AssetStep(context, snapshots, resources.engine, privacy, resources.source, lake, Pictures(context.log), erasures)
            if config.full_refresh or _out_of_date(step.current(table), step):
                step = replace(step, full_refresh=True)
            if dg.AssetKey(table.name) in context.selected_asset_keys:
                started = time.perf_counter()
                built = build(step)
                yield from _publish(step, audit, built, time.perf_counter() - started)
            else:
                yield from _judge_published(step, audit)

        return _step

    return decorator


def _paired(lake: Lake, audit: Audit, snapshots: Mapping[str, Snapshot]) -> dict[str, Snapshot]:
    """The tables `audit` reads paired with one it reads, at the version its commit names."""
    out = {}
    for table in audit.paired:
        owner = next((s for s in snapshots.values() if table.name in s.info.get("companions", {})), None)
        if owner is None:
            raise TableNotPublishedError(f"no table {audit.table.name} reads names a version of {table.name}")
        out[table.name] = lake.companion(owner, table.spec)
    return out


def _out_of_date(published: Snapshot | None, step: AssetStep) -> bool:
    """Whether the published version must be rebuilt whole whatever changed in its inputs: a
    moment it recorded as due (consent dated after its run). Not erasure requests: each
    zone's build follows their rows out as a change (landing/assets.py, incremental.py)."""
    if published is None:
        return False
    return step.as_of >= published.info.get(REBUILD_AT, step.as_of + 1)


def _publish(step: AssetStep, audit: Audit, built: Build, build_seconds: float):
    table, context = audit.table, step.context
    started = time.perf_counter()
    increment = built.increment
    data = _conform_all(table, built.data)
    added = table.whole(data)
    relations: dict[str, Any] = {**step.inputs, **step.erasures.relations(), table.name: added}
    companions: list[Companion] = []
    if audit.companion is not None and built.companion is not None:
        rejects = _conform_all(audit.companion, built.companion)
        relations[audit.companion.name] = audit.companion.whole(rejects)
        if increment is None:
            companions.append(Companion(audit.companion, rejects))
        elif increment.companion_base is not None:
            new = rejects if relations[audit.companion.name].num_rows else None
            companions.append(Companion(audit.companion, new, increment.companion_base, increment.companion_removes))
    if audit.ledger is not None:
        if built.ledger is not None:
            companions.append(Companion(audit.ledger, audit.ledger.conform(built.ledger)))
        elif increment is not None and audit.ledger.name in increment.base.info.get("companions", {}):
            companions.append(Companion(audit.ledger, None, step.lake.companion(increment.base, audit.ledger.spec)))
    relations.update(built.relations)
    outcomes = audit.judge(relations, step.engine, step.privacy, step.as_of, built.built_with)
    if increment is not None and not step.erasures.applied_by(increment.base):
        outcomes = _erasure_judged_on_kept_rows(step, audit, relations, increment, outcomes)
    passed = all(o.passed for o in outcomes)
    audit_seconds = time.perf_counter() - started
    rows = increment.rows if increment is not None else _rows(added)
    audited = None
    publishes = data if increment is None or _rows(added) else None
    if passed:
        info = {
            "run_id": context.run.run_id,
            "asset": table.name,
            "rows": rows,
            "rules": {o.rule.name: o.violations for o in outcomes},
            "consent_policy": step.privacy.consent_policy.value,
            # The versions it was built from: where the next incremental build starts.
            "inputs": {name: snapshot.version for name, snapshot in step.inputs.items()},
            "build": "full" if increment is None else "incremental",
            **({"changes": dict(increment.summary)} if increment is not None and increment.summary else {}),
            erasure.ERASURES_APPLIED: step.erasures.fingerprint(),
            **built.info,
        }
        # `stedi bench` reads these times from the commit's log line (bench/runner.py).
        timings = f"build {build_seconds:.3f} s (pictures {step.pictures.seconds:.3f} s), audit {audit_seconds:.3f} s"
        audited = Audited(table, publishes, info, tuple(companions), increment, step.privacy.retention_hours, timings)
    metadata = {**built.metadata, **output_metadata(table, added, rows, outcomes, increment), "dagster/uri": step.lake.uri(table.location)}
    if audit.companion is not None and increment is None and audit.companion.name in relations:
        metadata[f"{audit.companion.name}_rows"] = relations[audit.companion.name].num_rows
    if isinstance(data, Staged) and (not passed or publishes is None):
        step.lake.discard(data)  # nothing of it is committed: no file left behind
    yield dg.Output(audited, output_name=table.name, metadata=metadata)
    for outcome in outcomes:
        if _selected(context, table, outcome):
            yield _result(table, outcome, published=passed)
    if not passed:
        raise dg.Failure(
            description=f"{table.name} was not published ({failures(outcomes)}); readers keep its previous version.",
            metadata={o.rule.name: o.violations for o in outcomes},
        )


def _erasure_judged_on_kept_rows(
    step: AssetStep, audit: Audit, relations: Mapping[str, Relation], increment: Increment, outcomes: list[Outcome]
) -> list[Outcome]:
    """An increment on a version built without some of the erasure requests in force keeps
    rows its build never looked at. Its version will say it applies those requests, so the
    rules that read them (`Rule.reads_erasures`) judge the kept rows too: a kept row of hers
    fails the step instead of being published as erased. Trusted and curated builds leave her
    rows out themselves (incremental.py `Follower.erasing`); this judges that they did."""
    old = {audit.table.name: increment.base.without(increment.removes)}
    if audit.companion is not None and increment.companion_base is not None:
        old[audit.companion.name] = increment.companion_base.without(increment.companion_removes)
    judged = []
    for outcome in outcomes:
        if outcome.rule.reads_erasures:
            again = evaluate(outcome.rule, {**relations, **old}, step.engine, step.privacy, step.as_of)
            sample = (outcome.sample + again.sample)[:SAMPLE_SIZE]
            outcome = replace(outcome, violations=outcome.violations + again.violations, sample=sample)
        judged.append(outcome)
    return judged


PREVIEW_ROWS = 5


def output_metadata(
    table: Table, added: pa.Table | Staged, rows: int, outcomes: Sequence[Outcome], increment: Increment | None
) -> dict[str, Any]:
    """Row count, column schema, a masked preview of the rows added, the verdict, what changed."""
    failed = [f"{o.rule.name} ({o.violations})" for o in outcomes if not o.passed]
    metadata: dict[str, Any] = {
        "dagster/row_count": rows,
        "dagster/column_schema": table.table_schema,
        "published": not failed,
        "audit": "passed every blocking rule: published with its checks"
        if not failed
        else f"FAILED {', '.join(failed)}: not published, nothing written; readers keep the previous version",
        "preview": preview(table, added.head(PREVIEW_ROWS) if isinstance(added, Staged) else added.slice(0, PREVIEW_ROWS)),
        "build": "full" if increment is None else "incremental",
    }
    if increment is not None:
        metadata["rows_added"] = _rows(added)
        metadata["base_version"] = increment.base.version
        metadata["changes"] = dg.MetadataValue.json(dict(increment.summary))
    return metadata


def preview(table: Table, rows: pa.Table) -> dg.TableMetadataValue:
    """The first rows, direct identifiers masked."""
    names = table.column_names
    records = [dg.TableRecord({c: _cell(mask(c, row[c])) for c in names}) for row in rows.select(names).to_pylist()]
    return dg.MetadataValue.table(records, schema=table.table_schema)


def _cell(value: Any) -> str | int | float | bool | None:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _judge_published(step: AssetStep, audit: Audit):
    """Checks run alone: judge the published version, report against its materialization."""
    table, context, lake = audit.table, step.context, step.lake
    try:
        published = lake.current(table.spec)
    except TableNotPublishedError as error:
        raise dg.Failure(description=f"{error}; there is nothing to check yet") from None
    # The serial keys only erased people own, as this version recorded them (if it does).
    erasures = step.erasures.with_serials(step.erasures.serials | erasure.erased_serials(published))
    relations = {**step.inputs, **erasures.relations(), **audit.published_relations(lake, published, step.source)}
    target = _materialization_of(context, table, published)
    for outcome in audit.judge(relations, step.engine, step.privacy, step.as_of):
        if _selected(context, table, outcome):
            result = _result(table, outcome, published=True, version=published.version)
            yield dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(table.name), check_name=outcome.rule.name, passed=outcome.passed, metadata=result.metadata,
                target_materialization_data=target, severity=dg.AssetCheckSeverity.ERROR, blocking=True,
            )


def _selected(context: dg.AssetExecutionContext, table: Table, outcome: Outcome) -> bool:
    return dg.AssetCheckKey(dg.AssetKey(table.name), outcome.rule.name) in context.selected_asset_check_keys


def _result(table: Table, outcome: Outcome, published: bool, version: int | None = None) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"violations": outcome.violations, "sample_keys": dg.MetadataValue.json(outcome.sample)}
    metadata["published"] = published
    if version is not None:
        metadata["judged_version"] = version
    if outcome.by_construction:
        metadata["judged"] = "by construction: the table is the rule's own SQL over the inputs it reads"
    return dg.AssetCheckResult(
        check_name=outcome.rule.name, asset_key=table.name, passed=outcome.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata
    )


def _materialization_of(
    context: dg.AssetExecutionContext, table: Table, snapshot: Snapshot
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization that produced `snapshot` (by its commit's run id), if this instance
    recorded it: the asset's, newest first (storage ids as the asset index numbers them, which
    check targets refer to)."""
    run_id = snapshot.info.get("run_id")
    records = context.instance.fetch_materializations(dg.AssetKey(table.name), limit=MATERIALIZATIONS).records if run_id else []
    return next((AssetCheckEvaluationTargetMaterializationData(storage_id=r.storage_id, run_id=run_id, timestamp=r.timestamp)
                 for r in records if r.run_id == run_id), None)
