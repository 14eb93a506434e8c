"""The blocking rules of each table, and how they are judged. Each zone declares, in its
`checks.py`, one `Audit` per table; the same audit judges the version a step built before any
commit (publishing.py), the published version when its checks run alone, and the version
`stedi rollback` would restore, against today's upstream tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from stedi_assets.engine import Relation
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.privacy import mask
from stedi_assets.tables import Table

if TYPE_CHECKING:  # Dagster resources: judging needs only their methods, not Dagster
    from stedi_assets.engine.resource import SqlEngineResource
    from stedi_assets.privacy import PrivacyPolicy

SAMPLE_SIZE = 10
Evaluator = Callable[[Mapping[str, Relation], "PrivacyPolicy"], pa.Table]


@dataclass(frozen=True)
class Rule:
    """A blocking rule: `sql` (or `evaluate`) returns the violating rows, keys first.
    `met_by`: the SQL whose result, over the inputs the rule reads, meets the rule by
    construction; a table the step built as exactly that result (`Build.built_with`) is not
    judged again by recomputing it. `reads_erasures`: it reads the erasure requests in force,
    so an increment on a version built without some of them is judged on its kept rows too."""

    name: str
    description: str
    sql: str | None = None
    evaluate: Evaluator | None = None
    met_by: str | None = None
    reads_erasures: bool = False


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    violations: int
    sample: list[dict]
    by_construction: bool = False  # met by how the table was built (Rule.met_by), not recomputed

    @property
    def passed(self) -> bool:
        return self.violations == 0

    def __add__(self, other: Outcome) -> Outcome:
        """The rule's violations here and in `other` (judged on more rows)."""
        return replace(self, violations=self.violations + other.violations, sample=(self.sample + other.sample)[:SAMPLE_SIZE])


@dataclass(frozen=True)
class Audit:
    """The rules of `table`. `reads`: the other tables they look at, as published; `paired`:
    tables published with one of `reads`, at the version its commit names (a landing table's
    rejects). Published in the same step: `companion`, judged with it (the rejects), and
    `ledger`, not judged (the source files it was built from). `from_source`: relations
    recounted from the source (and the version's ledger) to judge a published version."""

    table: Table
    rules: tuple[Rule, ...]
    reads: tuple[Table, ...] = ()
    companion: Table | None = None
    from_source: Callable[[Any, Snapshot | None], Mapping[str, pa.Table]] | None = None
    ledger: Table | None = None
    paired: tuple[Table, ...] = ()

    def published_relations(self, lake: Lake, version: Snapshot, source: Any) -> dict[str, Relation]:
        """What judging a published `version` reads besides its inputs: the version, its
        companion as its commit names it, and the source recounted with its ledger."""
        relations: dict[str, Relation] = {self.table.name: version}
        if self.companion is not None:
            relations[self.companion.name] = lake.companion(version, self.companion.spec)
        if self.from_source is not None:  # with no ledger for a version from before the table had one
            has_ledger = self.ledger is not None and self.ledger.name in version.companions
            relations.update(self.from_source(source, lake.companion(version, self.ledger.spec) if has_ledger else None))
        return relations

    def judge(self, relations: Mapping[str, Relation], engine: SqlEngineResource, privacy: PrivacyPolicy, as_of: int,
              built_with: str | None = None) -> list[Outcome]:
        """Every rule, judging consent as of `as_of` (epoch ms); see `Rule.met_by`."""
        return [Outcome(rule, 0, [], by_construction=True) if built_with is not None and rule.met_by == built_with
                else evaluate(rule, relations, engine, privacy, as_of) for rule in self.rules]


def failures(outcomes: Sequence[Outcome]) -> str:
    """`rule: n violations` for each failed rule, for messages."""
    return "; ".join(f"{o.rule.name}: {o.violations} violation{'s' if o.violations != 1 else ''}" for o in outcomes if not o.passed)


def duplicates(table: str, columns: Sequence[str], report: Sequence[str] | None = None) -> str:
    """SQL for the rows of `table` whose `columns` occur more than once, with `report` (default
    `columns`) and the copies: grouping one hash of wide rows first is cheaper, then only rows
    whose hash repeats are grouped exactly (a collision is never taken for a duplicate)."""
    key = ", ".join(columns)
    return f"""
        SELECT {", ".join(report or columns)}, COUNT(*) AS copies FROM {table}
        WHERE hash({key}) IN (SELECT hash({key}) FROM {table} GROUP BY hash({key}) HAVING COUNT(*) > 1)
        GROUP BY {key} HAVING COUNT(*) > 1
        """


def evaluate(
    rule: Rule, relations: Mapping[str, Relation], engine: SqlEngineResource, privacy: PrivacyPolicy, as_of: int | None = None
) -> Outcome:
    if rule.evaluate is not None:
        offending = rule.evaluate(relations, privacy)
        count, sample = offending.num_rows, offending.slice(0, SAMPLE_SIZE)
    else:
        assert rule.sql is not None
        # One pass gives the count and the sample; a passing rule costs a single scan.
        rendered = privacy.render(rule.sql, as_of)
        sql = f"SELECT *, COUNT(*) OVER () AS violations_total FROM ({rendered}) AS v LIMIT {SAMPLE_SIZE}"
        result = engine.engine().query(sql, relations)
        count = result["violations_total"][0].as_py() if result.num_rows else 0
        sample = result.drop_columns(["violations_total"])
    return Outcome(rule, count, [{k: mask(k, v) for k, v in row.items()} for row in sample.to_pylist()])
