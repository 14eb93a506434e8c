"""Trusted and curated tables updated from what changed in their inputs. docs/ingestion.md
("Downstream, from what changed") says which keys each zone recomputes, which rows the rules
judge, and when a full build runs instead.

Each commit records the input versions it was built from (`inputs` in its info). The next
build compares each input's published version with that one by data files (a Delta version's
files never change): rows only in files the old version lacks were added, those only in files
the new one lacks removed, set against each other only when a commit replaced files. Rows are
compared whole, so a column a rule starts to read is followed without a list of columns. Only
the data files holding an affected key's rows are rewritten; with none, the new rows are
appended, in a commit on the version read. The result is what the rule gives over the whole
inputs (the tests compare with a full build).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.engine import Relation
from stedi_assets.lake.delta import Snapshot, Staged
from stedi_assets.lake.errors import LakeError
from stedi_assets.publishing import AssetStep, Build, Increment
from stedi_assets.tables import TABLES, Table


@dataclass(frozen=True)
class Changes:
    """Rows removed from and added to an input since the version a table was built from."""

    old: Snapshot
    removed: Relation
    added: Relation

    @property
    def nothing_removed(self) -> bool:
        """No row left the input: no data file left it, or those that did hold no row it lacks now."""
        return self.removed.num_rows == 0 if isinstance(self.removed, pa.Table) else not self.removed.files


class Follower:
    """The published version of `table` as the start of an incremental build, if `usable`:
    built under the same consent policy and rule SQL, from input versions still readable."""

    def __init__(self, step: AssetStep, table: Table, rules_sql: Sequence[str]):
        self.step, self.table = step, table
        # The rule SQL as the consent policy renders it (at a fixed moment, not the run's):
        # a build under other rules never continues this one.
        rendered = "\n".join(step.privacy.render(s, as_of=0) for s in rules_sql)
        self.fingerprint = hashlib.sha256(rendered.encode()).hexdigest()[:16]
        self.previous = None if step.full_refresh else step.published
        self.reason = self._unusable()
        self.compared: set[str] = set()  # the inputs whose changes the build has looked at

    def _unusable(self) -> str | None:
        if self.step.full_refresh:
            return "full_refresh"
        if self.previous is None:
            return "no published version"
        info = self.previous.info
        if info.get("consent_policy") != self.step.privacy.consent_policy.value:
            return "published under another consent policy"
        if info.get("rules_fingerprint") != self.fingerprint:
            return "published under other rule SQL"
        if not set(self.step.inputs) <= set(info.get("inputs", {})):
            return "its commit does not name the input versions it was built from"
        try:
            self.bases = {name: self.step.lake.at(TABLES[name].spec, info["inputs"][name]) for name in self.step.inputs}
        except LakeError as error:
            return f"an input version it was built from cannot be read: {error}"
        for name, old in self.bases.items():
            if gone := self.step.lake.missing([f for f in old.files if f not in set(self.step.inputs[name].files)]):
                return f"{name} version {old.version}, which it was built from, lost data files (vacuumed?): {gone[0]}"
        return None

    @property
    def usable(self) -> bool:
        return self.reason is None

    @property
    def erasing(self) -> bool:
        """Erasure requests in force that the published version was built without: their people's
        rows leave it in this build, whether or not an input lost them yet (`stedi forget`, then a run of it alone)."""
        erasures, previous = self.step.erasures, self.previous
        return bool(erasures) and previous is not None and not erasures.applied_by(previous)

    def erased(self, data: pa.Table) -> pa.ChunkedArray | pa.Array:
        """The mask of `data`'s rows that belong to an erased person (`Table.erased_by`)."""
        return self.step.erasures.dropping(data, *self.table.erased_by, self.step.privacy)

    def without_erased(self, data: pa.Table | Staged) -> pa.Table | Staged:
        """`data` less an erased person's rows, which an input may hold still (staged data is
        staged again without them, if it has any). None can reach it unless this table or an
        input was built without the requests in force."""
        erasures = self.step.erasures
        inputs_behind = not all(erasures.applied_by(s) for s in self.step.inputs.values())
        if not erasures or self.table.erased_by is None or not (self.erasing or inputs_behind):
            return data
        column = self.table.erased_by[0]
        # Staged rows may be many: only their distinct keys come into this process.
        values = data if isinstance(data, pa.Table) else self.sql(f"SELECT DISTINCT {column} FROM built_rows", built_rows=data)
        if not pc.any(erased := self.erased(values)).as_py():
            return data
        if isinstance(data, pa.Table):
            return data.filter(pc.invert(erased))
        sql = f"SELECT * FROM built_rows WHERE {column} IS NULL OR {column} NOT IN (SELECT {column} FROM erased_keys)"
        relations = {"built_rows": data, "erased_keys": pa.table({column: pc.unique(values.filter(erased)[column])})}
        kept = self.step.engine.engine().stage(sql, relations, self.step.lake, self.table.spec)
        self.step.lake.discard(data)
        return kept

    @property
    def inputs_unchanged(self) -> bool:
        """Every input is as the published version was built from (the same data files), and
        no erasure request came since."""
        return self.usable and not self.erasing and all(set(self.bases[n].files) == set(s.files) for n, s in self.step.inputs.items())

    def unchanged(self, metadata: Mapping | None = None, judged: pa.Table | None = None) -> Build:
        """The published rows stay as they are: nothing to commit. `judged`: the same rows built
        again from changed inputs, to judge; none if nothing it reads changed."""
        assert self.previous is not None
        empty = self.table.spec.schema.empty_table()
        return Build(
            empty,
            relations={self.table.name: empty if judged is None else judged},
            increment=Increment(self.previous, self.previous.rows, summary={"inputs": "unchanged"} if judged is None else {}),
            metadata={**(metadata or {}), "judged_rows": 0 if judged is None else judged.num_rows},
            info={"rules_fingerprint": self.fingerprint},
        )

    def full(self, data: pa.Table | Staged, metadata: Mapping | None = None, built_with: str | None = None) -> Build:
        """A build from scratch, recording why it was not incremental (`built_with`: Build's),
        less an erased person's rows (then judged by the rules' SQL: no longer the rule's result)."""
        kept = self.without_erased(data)
        return Build(
            kept,
            metadata={**(metadata or {}), "full_build_because": self.reason or ""},
            info={"rules_fingerprint": self.fingerprint},
            built_with=built_with if kept is data else None,
        )

    def changes(self, name: str) -> Changes:
        """What changed in input `name`, as whole rows, by its data files (see the module)."""
        self.compared.add(name)
        old, new = self.bases[name], self.step.inputs[name]
        kept = set(new.files) & set(old.files)
        removed, added = old.without(kept), new.without(kept)
        if removed.files and added.files:  # files were replaced: only rows in one and not the other changed
            relations, query = {"removed_files": removed, "added_files": added}, self.step.engine.engine().query
            removed, added = (
                query("SELECT * FROM removed_files EXCEPT SELECT * FROM added_files", relations),
                query("SELECT * FROM added_files EXCEPT SELECT * FROM removed_files", relations),
            )
        return Changes(old, removed, added)

    def changed(self, *names: str) -> dict[str, Relation]:
        """`changes` of each input as the relations `<name>_removed` and `<name>_added` that a
        build's helper SQL reads."""
        return {f"{n}_{side}": getattr(c, side) for n in names for c in [self.changes(n)] for side in ("removed", "added")}

    def sql(self, sql: str, **relations: Relation) -> pa.Table:
        """Helper SQL (not a rule) over the step's inputs and `relations`."""
        return self.step.engine.engine().query(sql, {**self.step.inputs, **relations})

    def follow(
        self,
        *,
        key: str,
        affected: pa.Table,
        fresh: pa.Table,
        recompute: Callable[[pa.Table], pa.Table],
        recompute_all: Callable[[], pa.Table | Staged],
        distinct: bool,
        time: str,
        judge_with: Mapping[str, Relation] | None = None,
        metadata: Mapping | None = None,
    ) -> Build:
        """The build that takes the published version to what the rule gives over the whole
        inputs. `affected`: one column, `key`, of keys whose rows are recomputed
        (`recompute(affected)`; `recompute_all()` gives every row); `fresh`: the rule over the
        added input rows. `distinct`: the rule says DISTINCT, so fresh rows already published
        are not added again. `time`: the unique key's reading-time column, which narrows the
        published rows first (cheaper than whole rows). `judge_with`: relations the rules
        judge the new rows against in place of whole inputs."""
        previous = self.previous
        assert previous is not None and self.usable and not self.inputs_unchanged  # callers return `unchanged` first
        # An input whose changes the build never looked at (one added to the asset later, say)
        # may have changed rows it cannot account for: then only a full build is sure.
        if overlooked := [n for n, s in self.step.inputs.items() if n not in self.compared and set(self.bases[n].files) != set(s.files)]:
            self.reason = f"{', '.join(overlooked)} changed and the incremental build does not follow it"
            return self.full(recompute_all(), metadata)
        # An erased person's key is affected too, found in the published rows.
        keys, key_type = set(pc.unique(affected[key]).drop_null().to_pylist()), affected.schema.field(key).type
        by_file = previous.values_by_file(key) if keys or self.erasing else {}
        if self.erasing:
            assert self.table.erased_by is not None and self.table.erased_by[0] == key, "erased by the key it follows"
            held = pa.table({key: pa.array(sorted(set().union(*by_file.values()) - {None}), key_type)})
            keys |= set(held.filter(self.erased(held))[key].to_pylist())
        affected = pa.table({key: pa.array(sorted(keys), key_type)})
        holding = [f for f, values in by_file.items() if values & keys]
        union = "UNION" if distinct else "UNION ALL"
        if keys:
            fresh = self.sql(
                f"""
                SELECT * FROM held_rows WHERE {key} NOT IN (SELECT {key} FROM affected_keys)
                {union} SELECT * FROM recomputed_rows
                {union} SELECT * FROM fresh_rows WHERE {key} NOT IN (SELECT {key} FROM affected_keys)
                """,
                held_rows=previous.part(holding),
                recomputed_rows=recompute(affected),
                fresh_rows=fresh,
                affected_keys=affected,
            )
        fresh = self.without_erased(fresh)
        # One scan of the rows kept as they are: those sharing a unique key with a new row, judged
        # with the new rows. A new row already among them is not added again (the key is part of the row).
        unique = " AND ".join(f"p.{c} IS NOT DISTINCT FROM f.{c}" for c in self.table.unique_key)
        matches = self.sql(
            f"""
            SELECT p.* FROM (SELECT * FROM kept_rows WHERE {time} IN (SELECT {time} FROM fresh_rows)) AS p
            WHERE EXISTS (SELECT 1 FROM fresh_rows AS f WHERE {unique})
            """,
            kept_rows=previous.without(holding),
            fresh_rows=fresh,
        )
        if distinct:
            fresh = self.sql("SELECT * FROM fresh_rows EXCEPT SELECT * FROM matches", fresh_rows=fresh, matches=matches)
        summary = {"affected_keys": len(keys), "rows_added" if not holding else "rows_written": fresh.num_rows}
        # Recomputed rows are judged against the whole inputs, fresh rows alone against `judge_with`.
        judged = pa.concat_tables([self.table.conform(fresh), self.table.conform(matches)])
        held = previous.part(holding).dataset().count_rows() if holding else 0
        return Build(
            fresh,
            relations={**({} if keys else judge_with or {}), self.table.name: judged},
            increment=Increment(previous, rows=previous.rows - held + fresh.num_rows, removes=tuple(holding), summary=summary),
            metadata={**(metadata or {}), "judged_rows": judged.num_rows},
            info={"rules_fingerprint": self.fingerprint},
        )


def rebuilt(follower: Follower, build: Callable[[], pa.Table], metadata: Mapping | None = None) -> Build:
    """A small table built whole (customers), only if something it reads changed, and
    published as a new version only if its rows differ from the published ones."""
    if follower.inputs_unchanged:
        return follower.unchanged(metadata)
    data = follower.without_erased(build())
    previous = follower.previous
    if previous is not None and previous.rows == data.num_rows:
        sql = "SELECT COUNT(*) AS n FROM (SELECT * FROM built_rows EXCEPT SELECT * FROM published_rows) AS d"
        if follower.sql(sql, built_rows=data, published_rows=previous)["n"][0].as_py() == 0:
            return follower.unchanged(metadata, judged=data)
    return Build(data, metadata=metadata or {}, info={"rules_fingerprint": follower.fingerprint})
