"""Write-audit-publish: the blocking checks of a table, and the publish that follows them.

Each zone declares its rules as `Rule`s: SQL that returns the offending rows (none = pass).
`table_audit` turns them into one Dagster step with one blocking check per rule. The step
audits the version that the asset staged in this run (or the published one when the checks
run alone), reports each rule with its violation count and up to ten sample keys, and then
publishes the staged version only if every rule passed; otherwise it deletes it, the run
fails and everything downstream is skipped, and readers keep the previous version.
"""


from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa

from stedi_assets.engine import Relation
from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.lake.lake import Lake, LakeTable
from stedi_assets.lake.resource import LakeResource
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy, mask
from stedi_assets.tables import Table

SAMPLE_SIZE = 10
Evaluator = Callable[[Mapping[str, Relation]], pa.Table]


@dataclass(frozen=True)
class Rule:
    """A blocking rule: `sql` (or `evaluate`) returns the violating rows, keys first."""

    name: str
    description: str
    sql: str | None = None
    evaluate: Evaluator | None = None


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    violations: int
    sample: list[dict]

    @property
    def passed(self) -> bool:
        return self.violations == 0


def duplicates(table: str, columns: Sequence[str], report: Sequence[str] | None = None) -> str:
    """SQL for the rows of `table` whose `columns` occur more than once, with `report` (default
    `columns`) and the number of copies. Grouping millions of wide rows is what a uniqueness
    rule costs; grouping one hash of them first is cheaper, and then only rows whose hash
    repeats are grouped exactly, so a hash collision is never taken for a duplicate."""
    key = ", ".join(columns)
    return f"""
        SELECT {", ".join(report or columns)}, COUNT(*) AS copies FROM {table}
        WHERE hash({key}) IN (SELECT hash({key}) FROM {table} GROUP BY hash({key}) HAVING COUNT(*) > 1)
        GROUP BY {key} HAVING COUNT(*) > 1
        """


def table_audit(
    table: Table,
    rules: Sequence[Rule],
    reads: Sequence[Table] = (),
    also_publishes: Sequence[Table] = (),
    extra_relations: Callable[[LandingSource], Mapping[str, pa.Table]] | None = None,
) -> dg.AssetChecksDefinition:
    """One audit step for `table` (and tables written by the same step, e.g. its rejects)."""
    audited = [table, *also_publishes]
    specs = [
        dg.AssetCheckSpec(
            rule.name,
            asset=table.name,
            description=rule.description,
            blocking=True,
            additional_deps=[t.name for t in reads],
        )
        for rule in rules
    ]

    @dg.multi_asset_check(
        name=f"audit_{table.name}",
        specs=specs,
        description=f"Audits {table.name} and publishes it only if every rule holds.",
    )
    def _audit(
        context: dg.AssetCheckExecutionContext,
        lake: LakeResource,
        engine: SqlEngineResource,
        privacy: PrivacyPolicy,
        source: LandingSource,
    ):
        store = lake.lake()
        candidates = {t.name: _staged_or_current(store, t, context.run.run_id) for t in audited}
        relations: dict[str, Relation] = {
            **{t.name: store.current(t) for t in reads},
            **candidates,
            **(extra_relations(source) if extra_relations else {}),
        }
        outcomes = [evaluate(rule, relations, engine, privacy) for rule in rules]
        passed = all(o.passed for o in outcomes)
        for candidate in candidates.values():
            if passed:
                orphans = store.publish(candidate)
                if orphans:
                    context.log.warning(f"{candidate.name}: deleted versions staged by runs that never audited them: {orphans}")
            else:
                store.discard(candidate)
        for outcome in outcomes:
            yield dg.AssetCheckResult(
                check_name=outcome.rule.name,
                asset_key=table.name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "violations": outcome.violations,
                    "sample_keys": dg.MetadataValue.json(outcome.sample),
                    "audited_version": candidates[table.name].version,
                    "published": passed,
                },
            )

    return _audit


def evaluate(rule: Rule, relations: Mapping[str, Relation], engine: SqlEngineResource, privacy: PrivacyPolicy) -> Outcome:
    if rule.evaluate is not None:
        offending = rule.evaluate(relations)
        count, sample = offending.num_rows, offending.slice(0, SAMPLE_SIZE)
    else:
        assert rule.sql is not None
        # One pass gives the count and the sample; a passing rule costs a single scan.
        sql = f"SELECT *, COUNT(*) OVER () AS violations_total FROM ({privacy.render(rule.sql)}) AS v LIMIT {SAMPLE_SIZE}"
        result = engine.engine().query(sql, relations)
        count = result["violations_total"][0].as_py() if result.num_rows else 0
        sample = result.drop_columns(["violations_total"])
    return Outcome(rule, count, [{k: mask(k, v) for k, v in row.items()} for row in sample.to_pylist()])


def _staged_or_current(lake: Lake, table: Table, run_id: str) -> LakeTable:
    return lake.staged(table, run_id) or lake.current(table)
