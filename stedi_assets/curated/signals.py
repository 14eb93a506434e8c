"""The numbers behind the curated zone's pictures, and the pictures as metadata.

- The privacy funnel: customers in landing -> with research consent -> with accelerometer
  readings -> (under `since_consent`) with readings since their consent -> in the ML table:
  scalar subqueries that DuckDB and Spark both run, in one query (`curated_counts`).
- The ML table's profile: readings per subject, the step trainer readings that found an
  accelerometer reading of the same customer at the same time, and the rows of the few
  subjects whose signals are drawn, exactly, the same numbers on either engine. Where the
  build streams the table through the step's process (DuckDB, `stages_here`), `Profiler`
  takes them from the batches as they pass (the table is never read again for its pictures),
  in memory set by STEDI_MEMORY_LIMIT; where executors stage it (Spark), `profile_staged`
  asks the engine in SQL over the staged files, and only counts and a few subjects' rows come
  back. (Asking in SQL on DuckDB too would scan the 100x table again: 3.3 s of CPU against
  the observer's 2.6 s, and twice its wall time on 2 cores.)

A picture or number that fails is a warning and missing from the metadata, never a failed step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets import charts
from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, CUSTOMER_TRUSTED, MACHINE_LEARNING_CURATED, Table

if TYPE_CHECKING:
    import dagster as dg

    from stedi_assets.charts import Pictures
    from stedi_assets.engine import Relation, SqlEngine
    from stedi_assets.engine.duckdb_engine import DuckDBEngine
    from stedi_assets.privacy import PrivacyPolicy

# The published tables the funnel reads beyond each asset's own inputs.
FUNNEL_READS: tuple[Table, ...] = (CUSTOMER_LANDING, CUSTOMER_TRUSTED, ACCELEROMETER_LANDING)

# The counts behind the pictures, each a scalar subquery; `curated_counts` asks for those it
# needs in one query (on Spark every query has a fixed cost of about a second).
# Records without a person key count as one customer, as the consent verdict counts them.
IN_LANDING = "(SELECT COUNT(DISTINCT COALESCE(l.person_key, '')) FROM customer_landing AS l)"
WITH_RESEARCH_CONSENT = "(SELECT COUNT(*) FROM customer_trusted AS t)"
IN_CUSTOMER_CURATED = "(SELECT COUNT(*) FROM customer_curated AS c)"
# Under `since_consent`, a consenting customer who is not curated may still have accelerometer
# readings, all taken before the consent date. Counted from the landing readings of those few
# customers only: the millions of landing rows are scanned for a handful of e-mails, never
# grouped. (Under `any` a consenting customer with a reading is curated, so there are none.)
WITH_READINGS_BEFORE_CONSENT_ONLY = """(
    SELECT COUNT(DISTINCT a.person_key) FROM accelerometer_landing AS a
    WHERE a.person_key IN (
        SELECT t.email FROM customer_trusted AS t
        WHERE t.email NOT IN (SELECT c.email FROM customer_curated AS c)
    )
)"""
STEP_TRAINER_READINGS = "(SELECT COUNT(*) FROM step_trainer_trusted AS s)"


# Rows of the ML table the profile looks up at once: Arrow's `index_in` hashes the customers
# anew at each call (at 1000x, 478 thousand of them for each batch of 131 thousand rows took
# 4 times as long as the lookups); held until then, these rows are about 100 MB.
LOOKUP_ROWS = 1 << 20
# The subjects whose signals are drawn are chosen among the first of the curated customers by
# subject_id (a fixed, repeatable choice, known before the build): their rows are kept as they
# pass, so the table is not scanned again for them.
SIGNAL_CANDIDATES = 64

# The profile in SQL, over the staged table where the engine reads it (`profile_staged`), the
# numbers `Profiler` counts: subjects of customer_curated only, and matches as distinct
# (serial number, time), since two customers registered to the same step trainer can both
# match one of its readings.
READINGS_PER_SUBJECT = """
SELECT m.subject_id, COUNT(*) AS readings FROM machine_learning_curated AS m
WHERE m.subject_id IN (SELECT c.subject_id FROM customer_curated AS c)
GROUP BY m.subject_id
"""
STEP_TRAINER_READINGS_MATCHED = """
SELECT COUNT(*) AS matched FROM (
    SELECT DISTINCT c.serialNumber, m.sensorReadingTime FROM machine_learning_curated AS m
    JOIN customer_curated AS c ON c.subject_id = m.subject_id
) AS pairs
"""
SIGNAL_ROWS = """
SELECT m.* FROM machine_learning_curated AS m WHERE m.subject_id IN (SELECT s.subject_id FROM signal_subjects AS s)
"""
# Readings per subject ranked, the most first, ties by subject_id; and the signal rows' one
# order (ties and nulls included), whichever path took them.
RANKED = [("readings", "descending"), ("subject_id", "ascending")]
SIGNAL_ROW_ORDER = [(c, "ascending") for c in MACHINE_LEARNING_CURATED.column_names]

Published = Callable[[Table], "Relation"]  # a table's current published version (the lake's `current`)


def curated_counts(
    engine: SqlEngine, relations: Mapping[str, Relation], privacy: PrivacyPolicy, step_trainer: bool = False
) -> dict[str, int]:
    """The funnel's counts (and, with `step_trainer`, step_trainer_trusted's rows) in one
    query. `relations` names customer_landing, customer_trusted, customer_curated and
    accelerometer_landing (and step_trainer_trusted)."""
    wanted = {
        "in_landing": IN_LANDING,
        "with_research_consent": WITH_RESEARCH_CONSENT,
        "in_customer_curated": IN_CUSTOMER_CURATED,
    }
    if privacy.since_consent:
        wanted["with_readings_before_consent_only"] = WITH_READINGS_BEFORE_CONSENT_ONLY
    if step_trainer:
        wanted["step_trainer_readings"] = STEP_TRAINER_READINGS
    sql = "SELECT " + ",\n       ".join(f"{subquery} AS {name}" for name, subquery in wanted.items())
    [row] = engine.query(sql, relations).to_pylist()
    return row


def funnel_stages(
    counts: Mapping[str, int], privacy: PrivacyPolicy, ml_subjects: int | None = None
) -> list[tuple[str, int]]:
    """(label, customers) per stage, first to last, from `curated_counts`; `ml_subjects` adds
    the ML table's stage. Under `any` there is no "since consent" stage: every reading counts."""
    curated = counts["in_customer_curated"]
    stages = [
        ("in landing (customer_landing)", counts["in_landing"]),
        ("with research consent (customer_trusted)", counts["with_research_consent"]),
    ]
    if privacy.since_consent:
        stages.append(("with accelerometer readings", curated + counts["with_readings_before_consent_only"]))
        stages.append(("with readings since consent (customer_curated)", curated))
    else:
        stages.append(("with accelerometer readings (customer_curated)", curated))
    if ml_subjects is not None:
        stages.append(("in the ML table (machine_learning_curated)", ml_subjects))
    return stages


@dataclass(frozen=True)
class MachineLearningProfile:
    """What the ML table holds per subject, and the step trainer readings it is made of."""

    subject_counts: pa.Table  # subject_id, readings: the most first, ties by subject_id
    step_trainer_readings_matched: int  # distinct (serial number, reading time) in the ML table
    signal_subjects: list[str]  # of the signal candidates, the SIGNAL_SUBJECTS with the most readings
    signal_rows: pa.Table  # their rows, in SIGNAL_ROW_ORDER

    @property
    def subjects(self) -> int:
        return self.subject_counts.num_rows

    @classmethod
    def of(cls, subject_counts: pa.Table, matched: int, candidates: pa.Array, rows: pa.Table) -> MachineLearningProfile:
        """Either path's profile from readings per subject (in any order), the matches, the
        signal candidates and (at least) the rows of the subjects drawn: the candidates with
        the most readings, ties by subject_id."""
        counts = subject_counts.sort_by(RANKED)
        picked = signal_subjects(counts, candidates)
        rows = rows.select(MACHINE_LEARNING_CURATED.column_names)
        rows = rows.filter(pc.is_in(rows["subject_id"], value_set=pa.array(picked, pa.string())))
        return cls(counts, matched, picked, rows.sort_by(SIGNAL_ROW_ORDER))


def signal_candidates(customer_curated: pa.Table) -> pa.Array:
    """The first SIGNAL_CANDIDATES curated customers by subject_id, the subjects whose signals
    may be drawn: a fixed, repeatable choice known before the build (`Profiler` keeps their
    rows as they pass)."""
    subject = customer_curated["subject_id"].combine_chunks()
    return subject.take(pc.sort_indices(subject)[:SIGNAL_CANDIDATES])


def signal_subjects(ranked: pa.Table, candidates: pa.Array) -> list[str]:
    """Of the `candidates`, those whose signals are drawn: the first of `ranked` (readings per
    subject, the most first)."""
    return charts.pick_subjects(ranked.filter(pc.is_in(ranked["subject_id"], value_set=candidates)))


class Profiler:
    """The profile counted from the ML table's record batches as the build streams them through
    this process (`observe`, AssetStep.stage, on an engine that `stages_here`): the table is
    read once, by the build. Readings per subject are one count per curated customer (a
    small table). Matches are distinct (serial number, time), not (subject, time), since two
    customers registered to the same step trainer can both match one of its readings; each is
    one integer, serial above time, appended to a temporary table of this process's DuckDB and
    counted there with DISTINCT at the end. DuckDB holds at most STEDI_MEMORY_LIMIT of it and
    spills the rest to STEDI_SPILL_DIRECTORY, so the profile's memory is set by the setting,
    not by the table (an Arrow hash set of the pairs took about 1 GB at 1000x). The rows of
    the signal candidates are kept as they pass. A batch it cannot count makes `result` raise
    (a picture left out, a warning), never the build fail."""

    def __init__(self, customer_curated: pa.Table, engine: DuckDBEngine):
        self.customers = customer_curated.select(["subject_id", "serialNumber"]).combine_chunks()
        self.per_customer = np.zeros(self.customers.num_rows, dtype=np.int64)
        codes = pc.dictionary_encode(self.customers["serialNumber"].combine_chunks()).indices
        self.serial_code = pc.fill_null(codes, -1).to_numpy().astype(np.int64) + 1  # 0: no serial number
        self.time_bits = 63 - max(1, int(self.serial_code.max(initial=0)).bit_length())
        self.value_set = self.customers["subject_id"].combine_chunks()
        self.pairs = engine.cursor()
        self.pairs.execute("CREATE TEMP TABLE pairs (pair BIGINT)")
        self.held: list[pa.RecordBatch] = []
        self.candidates = signal_candidates(self.customers)
        self.candidate = pc.is_in(self.value_set, value_set=self.candidates).to_numpy(zero_copy_only=False)
        self.candidate_rows: list[pa.Table] = []
        self.error: Exception | None = None
        self.seconds = 0.0  # counted with the step's pictures

    def observe(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if self.error is None:
                started = time.perf_counter()
                try:
                    self.held.append(batch)
                    if sum(b.num_rows for b in self.held) >= LOOKUP_ROWS:
                        self._count()
                except Exception as error:  # noqa: BLE001 - pictures never fail the build
                    self.error = error
                self.seconds += time.perf_counter() - started
            yield batch

    def _count(self) -> None:
        if not self.held:
            return
        held, self.held = pa.Table.from_batches(self.held), []
        subject = pc.fill_null(pc.index_in(held["subject_id"], value_set=self.value_set), -1)
        subject = subject.to_numpy()
        times = held["sensorReadingTime"].to_numpy()
        known = subject >= 0  # a subject not in customer_curated: left out
        candidates = np.flatnonzero(known)[self.candidate[subject[known]]]
        self.candidate_rows.append(held.take(candidates).select(MACHINE_LEARNING_CURATED.column_names))
        subject, times = subject[known].astype(np.int64), times[known].astype(np.int64)
        self.per_customer += np.bincount(subject, minlength=self.per_customer.size)
        if times.size and (times.min() < 0 or times.max() >= 1 << self.time_bits):
            raise ValueError("reading times outside the range the profile packs")
        self.pairs.register("held_pairs", pa.table({"pair": (self.serial_code[subject] << self.time_bits) | times}))
        self.pairs.execute("INSERT INTO pairs SELECT pair FROM held_pairs")

    def result(self) -> MachineLearningProfile:
        try:
            if self.error is not None:
                raise self.error
            self._count()
            [(matched,)] = self.pairs.execute("SELECT COUNT(DISTINCT pair) FROM pairs").fetchall()
        finally:
            self.pairs.close()  # and its table with it
        present = np.flatnonzero(self.per_customer)
        counts = pa.table(
            {
                "subject_id": self.customers["subject_id"].take(pa.array(present)),
                "readings": pa.array(self.per_customer[present]),
            }
        )
        rows = pa.concat_tables(self.candidate_rows) if self.candidate_rows else MACHINE_LEARNING_CURATED.arrow_schema.empty_table()
        return MachineLearningProfile.of(counts, int(matched), self.candidates, rows)


def profile_staged(engine: SqlEngine, customer_curated: pa.Table, relations: Mapping[str, Relation]) -> MachineLearningProfile:
    """`Profiler`'s numbers asked of the engine where the staged table lies (Spark's
    executors), for an engine that does not stage here: `relations` names
    machine_learning_curated (staged) and customer_curated, also given here as a table (small).
    Three queries, answered by per-subject counts, one number and the few drawn subjects' rows."""
    candidates = signal_candidates(customer_curated)
    counts = engine.query(READINGS_PER_SUBJECT, relations)
    [row] = engine.query(STEP_TRAINER_READINGS_MATCHED, relations).to_pylist()
    drawn = signal_subjects(counts.sort_by(RANKED), candidates)
    rows = engine.query(SIGNAL_ROWS, {**relations, "signal_subjects": pa.table({"subject_id": pa.array(drawn, pa.string())})})
    return MachineLearningProfile.of(counts, int(row["matched"]), candidates, rows)


def _counts(
    engine: SqlEngine, privacy: PrivacyPolicy, relations: Mapping[str, Relation], published: Published, step_trainer: bool = False
) -> dict[str, int]:
    """`curated_counts` over the asset's `relations` and, for the rest, the published tables."""
    reads = {t.name: published(t) for t in FUNNEL_READS if t.name not in relations}
    return curated_counts(engine, {**reads, **relations}, privacy, step_trainer)


def customer_curated_pictures(
    pictures: Pictures, engine: SqlEngine, privacy: PrivacyPolicy, relations: Mapping[str, Relation], published: Published
) -> dict[str, dg.MetadataValue]:
    """customer_curated's funnel, up to itself. `relations`: the asset's inputs and its result
    as customer_curated; `published` gives the landing tables the funnel also reads."""
    return pictures.chart(
        "privacy_funnel", lambda: charts.privacy_funnel(funnel_stages(_counts(engine, privacy, relations, published), privacy))
    )


def machine_learning_pictures(
    pictures: Pictures,
    engine: SqlEngine,
    privacy: PrivacyPolicy,
    relations: Mapping[str, Relation],
    published: Published,
    customers: pa.Table,
    profiler: Profiler | None,
) -> dict[str, dg.RawMetadataValue]:
    """The ML table's pictures (the whole funnel, a few subjects' signals, readings per
    subject, the step trainer readings matched) and the numbers Dagster plots across
    materializations, from `profiler` (which saw the table as it was staged) or, without one,
    asked of the engine (`profile_staged`); `relations`: the asset's inputs and its staged
    result as machine_learning_curated; `customers`: customer_curated."""
    out: dict[str, dg.RawMetadataValue] = {}
    if profiler is not None:
        pictures.seconds += profiler.seconds  # counted while the build staged the table
        found = pictures.guarded("ML table profile", profiler.result)
    else:
        found = pictures.guarded("ML table profile", lambda: profile_staged(engine, customers, relations))
    counts = pictures.guarded("curated counts", lambda: _counts(engine, privacy, relations, published, step_trainer=True))
    if counts is not None:
        stages = funnel_stages(counts, privacy, ml_subjects=None if found is None else found.subjects)
        out.update(pictures.chart("privacy_funnel", lambda: charts.privacy_funnel(stages)))
    if found is None:
        return out
    out.update(pictures.chart("subject_signals", lambda: charts.subject_signals(found.signal_rows, found.signal_subjects)))
    out.update(pictures.chart("readings_per_subject", lambda: charts.readings_per_subject(found.subject_counts)))
    out["subjects"] = found.subjects
    if counts is not None:
        matched, total = found.step_trainer_readings_matched, counts["step_trainer_readings"]
        out.update(pictures.chart("step_trainer_matches", lambda: charts.step_trainer_matches(matched, total)))
        out["step_trainer_readings_matched"] = matched
        out["step_trainer_match_share"] = matched / total if total else 0.0
    return out
