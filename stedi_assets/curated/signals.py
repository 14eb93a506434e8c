"""The numbers behind the curated zone's pictures, and the pictures themselves as metadata.

- The privacy funnel: customers in landing -> with research consent -> with accelerometer
  readings -> (under `since_consent`) with readings since their consent -> in the ML table.
  Scalar subqueries that DuckDB and Spark both run, asked for in one query (`curated_counts`),
  over customer_landing, customer_trusted, customer_curated and accelerometer_landing; the ML
  table's subjects are counted from the table in hand.
- The ML table's profile: readings per subject, and how many step trainer readings found an
  accelerometer reading of the same customer at the same time (the readings the ML table is
  made of), from the ML table in hand and customer_curated, with Arrow and numpy: one hash
  lookup and one sort of integers, no wide GROUP BY over millions of rows.

`customer_curated_pictures` and `machine_learning_pictures` are what the two assets call: each
returns metadata for `context.add_output_metadata`, and a picture or number that fails is a
warning in the log and missing from the metadata, never a failed step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets import charts
from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, CUSTOMER_TRUSTED, Table

if TYPE_CHECKING:
    import dagster as dg

    from stedi_assets.charts import Pictures
    from stedi_assets.engine import Relation, SqlEngine
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


def counts_sql(counts: Mapping[str, str]) -> str:
    """One row, one column per count: `SELECT (<subquery>) AS <name>, ...`."""
    return "SELECT " + ",\n       ".join(f"{sql} AS {name}" for name, sql in counts.items())


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
    [row] = engine.query(counts_sql(wanted), relations).to_pylist()
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
    row_subject: np.ndarray  # per ML row, its subject's row in `customers` (-1: none)
    customers: pa.Table  # customer_curated's subject_id and serialNumber

    @property
    def subjects(self) -> int:
        return self.subject_counts.num_rows

    def rows_of(self, ml: pa.Table, subjects: list[str]) -> pa.Table:
        """The ML rows of a few subjects, found by comparing integers, not strings."""
        wanted = pc.index_in(pa.array(subjects, pa.string()), value_set=self.customers["subject_id"])
        mask = np.zeros(self.row_subject.size, dtype=bool)
        for code in wanted.to_pylist():
            if code is not None:
                mask |= self.row_subject == code
        return ml.filter(pa.array(mask))  # not take(): that would first copy every chunk into one


def profile(ml: pa.Table, customer_curated: pa.Table) -> MachineLearningProfile:
    """Readings per subject and the matched step trainer readings, exactly, in one pass: each
    ML row's subject is looked up once among the curated customers (a small table), then
    (serial number, reading time) pairs are counted by sorting one integer per row. Subjects
    are mapped to serial numbers, not counted as (subject, time): two customers registered
    to the same step trainer can both match one of its readings."""
    customers = customer_curated.select(["subject_id", "serialNumber"])
    row_subject = pc.fill_null(pc.index_in(ml["subject_id"], value_set=customers["subject_id"]), -1).to_numpy()
    subject, times = row_subject, ml["sensorReadingTime"].to_numpy()
    if subject.size and subject.min() < 0:  # a subject not in customer_curated: left out
        known = subject >= 0
        subject, times = subject[known], times[known]
    per_customer = np.bincount(subject, minlength=customers.num_rows)
    present = np.flatnonzero(per_customer)
    counts = pa.table(
        {"subject_id": customers["subject_id"].take(pa.array(present)), "readings": pa.array(per_customer[present])}
    ).sort_by([("readings", "descending"), ("subject_id", "ascending")])

    serial_of_customer = pc.fill_null(pc.dictionary_encode(customers["serialNumber"].combine_chunks()).indices, -1)
    serial_of_customer = serial_of_customer.to_numpy().astype(np.int64)
    matched = 0
    if times.size:
        start, span = int(times.min()), int(times.max()) - int(times.min())
        shift = max(1, span.bit_length())
        if shift + max(1, int(serial_of_customer.max(initial=0)).bit_length()) <= 62:
            # One int64 per row, serial number above the time: one array, changed in place.
            pairs = serial_of_customer[subject]
            pairs <<= shift
            pairs += times
            pairs -= start
            pairs.sort()
            matched = int(1 + np.count_nonzero(pairs[1:] != pairs[:-1]))
        else:  # a time span too wide to pack beside the serial: sort the pairs as they are
            serials = serial_of_customer[subject]
            order = np.lexsort((times, serials))
            s, t = serials[order], times[order]
            matched = int(1 + np.count_nonzero((s[1:] != s[:-1]) | (t[1:] != t[:-1])))
    return MachineLearningProfile(counts, matched, row_subject, customers)


# -- what the assets call -----------------------------------------------------------------------
def customer_curated_pictures(
    pictures: Pictures,
    engine: SqlEngine,
    privacy: PrivacyPolicy,
    relations: Mapping[str, Relation],
    published: Published,
) -> dict[str, dg.MetadataValue]:
    """customer_curated's funnel, up to itself. `relations`: the asset's inputs and its result
    as customer_curated; `published` gives the landing tables the funnel also reads."""

    def funnel() -> str:
        reads = {t.name: published(t) for t in FUNNEL_READS if t.name not in relations}
        return charts.privacy_funnel(funnel_stages(curated_counts(engine, {**reads, **relations}, privacy), privacy))

    return pictures.chart("privacy_funnel", funnel)


def machine_learning_pictures(
    pictures: Pictures,
    engine: SqlEngine,
    privacy: PrivacyPolicy,
    ml: pa.Table,
    relations: Mapping[str, Relation],
    published: Published,
) -> dict[str, dg.RawMetadataValue]:
    """The ML table's pictures: the whole privacy funnel, a few subjects' signals, readings
    per subject and the share of step trainer readings matched; and the numbers `subjects`,
    `step_trainer_readings_matched` and `step_trainer_match_share`, which Dagster plots across
    materializations. `ml`: the table the asset is about to return; `relations`: its inputs
    (step_trainer_trusted, accelerometer_trusted, customer_curated)."""
    out: dict[str, dg.RawMetadataValue] = {}
    found = pictures.guarded("ML table profile", lambda: profile(ml, _arrow(relations["customer_curated"])))

    def count() -> dict[str, int]:
        reads = {t.name: published(t) for t in FUNNEL_READS if t.name not in relations}
        return curated_counts(engine, {**reads, **relations}, privacy, step_trainer=True)

    counts = pictures.guarded("curated counts", count)
    if counts is not None:
        subjects = None if found is None else found.subjects
        stages = funnel_stages(counts, privacy, ml_subjects=subjects)
        out.update(pictures.chart("privacy_funnel", lambda: charts.privacy_funnel(stages)))
    if found is None:
        return out
    picked = charts.pick_subjects(found.subject_counts)
    out.update(pictures.chart("subject_signals", lambda: charts.subject_signals(found.rows_of(ml, picked), picked)))
    out.update(
        pictures.chart("readings_per_subject", lambda: charts.readings_per_subject(ml, found.subject_counts))
    )
    out["subjects"] = found.subjects
    if counts is not None:
        matched, total = found.step_trainer_readings_matched, counts["step_trainer_readings"]
        out.update(pictures.chart("step_trainer_matches", lambda: charts.step_trainer_matches(matched, total)))
        out["step_trainer_readings_matched"] = matched
        out["step_trainer_match_share"] = matched / total if total else 0.0
    return out


def _arrow(relation: Relation) -> pa.Table:
    return relation if isinstance(relation, pa.Table) else relation.to_arrow()
