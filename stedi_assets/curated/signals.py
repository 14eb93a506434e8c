"""The numbers behind the curated zone's pictures, and the pictures as metadata: the privacy
funnel (`funnel_stages`) and the ML table's profile (`profile`), asked in SQL of the engine where
the tables lie (DuckDB here, or Spark's executors). Only counts and a few subjects' rows come back;
the engine holds the rest within its own bound, which counting in this process did not
(docs/benchmarks.md). A picture or number that fails is a warning, never a failed step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets import charts
from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, CUSTOMER_TRUSTED, MACHINE_LEARNING_CURATED, Table

if TYPE_CHECKING:
    import dagster as dg

    from stedi_assets.engine import Relation, SqlEngine
    from stedi_assets.privacy import PrivacyPolicy
    from stedi_assets.publishing import AssetStep

# The published tables the funnel reads beyond each asset's own inputs.
FUNNEL_READS: tuple[Table, ...] = (CUSTOMER_LANDING, CUSTOMER_TRUSTED, ACCELEROMETER_LANDING)

# The funnel's counts, each a scalar subquery; `funnel_stages` asks for those it needs in one query (on Spark every query has a fixed cost of about a second).
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

# Readings and distinct reading times per subject in one scan: every subject of a full build is
# a curated customer (the rule joins customer_curated). A step trainer reading is matched once
# per (serial number, time) even when two customers registered to one step trainer both match
# it, so those few customers' times are counted again together (`COUNTED_TWICE`): the matches
# are exact, and the table is scanned once more only if some customers share a serial number.
SUBJECT_COUNTS = """
SELECT subject_id, CAST(SUM(rows_at_time) AS BIGINT) AS readings, COUNT(*) AS times FROM (
    SELECT subject_id, COUNT(*) AS rows_at_time FROM machine_learning_curated GROUP BY subject_id, sensorReadingTime
) AS per_time GROUP BY subject_id
"""
SHARING_A_SERIAL = """
SELECT c.subject_id, c.serialNumber FROM customer_curated AS c WHERE c.serialNumber IN (
    SELECT serialNumber FROM customer_curated GROUP BY serialNumber HAVING COUNT(*) > 1
)
"""
COUNTED_TWICE = """
SELECT COALESCE(SUM(subjects - 1), 0) AS counted_twice FROM (
    SELECT COUNT(DISTINCT m.subject_id) AS subjects FROM machine_learning_curated AS m
    JOIN sharing_a_serial AS c ON c.subject_id = m.subject_id
    GROUP BY c.serialNumber, m.sensorReadingTime
) AS per_reading
"""
SIGNAL_ROWS = """
SELECT m.* FROM machine_learning_curated AS m WHERE m.subject_id IN (SELECT s.subject_id FROM signal_subjects AS s)
"""
# Readings per subject ranked, the most first, ties by subject_id (the drawn subjects: a fixed,
# repeatable choice); and the signal rows' one order (ties and nulls included).
RANKED = [("readings", "descending"), ("subject_id", "ascending")]
SIGNAL_ROW_ORDER = [(c, "ascending") for c in MACHINE_LEARNING_CURATED.column_names]


def funnel_stages(engine: SqlEngine, relations: Mapping[str, Relation], privacy: PrivacyPolicy) -> list[tuple[str, int]]:
    """(label, customers) per stage of the funnel, first to last, in one query. `relations`
    names customer_landing, customer_trusted, customer_curated and accelerometer_landing.
    Under `any` there is no "since consent" stage: every reading counts."""
    wanted = {"in landing (customer_landing)": IN_LANDING, "with research consent (customer_trusted)": WITH_RESEARCH_CONSENT}
    if privacy.since_consent:
        wanted["with accelerometer readings"] = f"({IN_CUSTOMER_CURATED} + {WITH_READINGS_BEFORE_CONSENT_ONLY})"
        wanted["with readings since consent (customer_curated)"] = IN_CUSTOMER_CURATED
    else:
        wanted["with accelerometer readings (customer_curated)"] = IN_CUSTOMER_CURATED
    sql = "SELECT " + ",\n       ".join(f"{subquery} AS stage_{i}" for i, subquery in enumerate(wanted.values()))
    [row] = engine.query(sql, relations).to_pylist()
    return list(zip(wanted, row.values()))


@dataclass(frozen=True)
class MachineLearningProfile:
    """What the ML table holds per subject, and the step trainer readings it is made of."""

    subject_counts: pa.Table  # subject_id, readings: in RANKED order
    step_trainer_readings_matched: int  # distinct (serial number, reading time) in the ML table
    signal_subjects: list[str]  # the charts.SIGNAL_SUBJECTS with the most readings
    signal_rows: pa.Table  # their rows, in SIGNAL_ROW_ORDER


def profile(engine: SqlEngine, relations: Mapping[str, Relation]) -> MachineLearningProfile:
    """The ML table's profile asked of the engine: `relations` names machine_learning_curated
    (staged) and customer_curated. Two queries, a third if some curated customers share a
    serial number."""
    counts = engine.query(SUBJECT_COUNTS, relations)
    matched = pc.sum(counts["times"]).as_py() or 0
    sharing = engine.query(SHARING_A_SERIAL, relations)
    if sharing.num_rows:
        [row] = engine.query(COUNTED_TWICE, {**relations, "sharing_a_serial": sharing}).to_pylist()
        matched -= row["counted_twice"]
    counts = counts.select(["subject_id", "readings"]).sort_by(RANKED)
    drawn = counts["subject_id"].slice(0, charts.SIGNAL_SUBJECTS).to_pylist()
    rows = engine.query(SIGNAL_ROWS, {**relations, "signal_subjects": pa.table({"subject_id": pa.array(drawn, pa.string())})})
    rows = rows.select(MACHINE_LEARNING_CURATED.column_names).sort_by(SIGNAL_ROW_ORDER)
    return MachineLearningProfile(counts, int(matched), drawn, rows)


def curated_pictures(step: AssetStep, relations: Mapping[str, Relation]) -> dict[str, dg.RawMetadataValue]:
    """The funnel up to the asset's table; for the ML table also a few subjects' signals,
    readings per subject, the step trainer readings matched, and the numbers Dagster plots
    across materializations. `relations`: the asset's inputs and its result under its own name;
    the funnel reads the other tables as published."""
    pictures, engine, privacy = step.pictures, step.engine.engine(), step.privacy
    relations = {**{t.name: step.current(t) for t in FUNNEL_READS if t.name not in relations}, **relations}
    ml = MACHINE_LEARNING_CURATED.name in relations
    found = pictures.guarded("ML table profile", lambda: profile(engine, relations)) if ml else None
    stages = pictures.guarded("funnel counts", lambda: funnel_stages(engine, relations, privacy))
    out: dict[str, dg.RawMetadataValue] = {}
    if stages is not None:
        if found is not None:
            stages.append(("in the ML table (machine_learning_curated)", found.subject_counts.num_rows))
        out.update(pictures.chart("privacy_funnel", lambda: charts.privacy_funnel(stages)))
    if found is None:
        return out
    out.update(pictures.chart("subject_signals", lambda: charts.subject_signals(found.signal_rows, found.signal_subjects)))
    out.update(pictures.chart("readings_per_subject", lambda: charts.readings_per_subject(found.subject_counts)))
    out["subjects"] = found.subject_counts.num_rows
    matched, total = found.step_trainer_readings_matched, relations["step_trainer_trusted"].rows  # the published version's
    out.update(pictures.chart("step_trainer_matches", lambda: charts.step_trainer_matches(matched, total)))
    out["step_trainer_readings_matched"] = matched
    out["step_trainer_match_share"] = matched / total if total else 0.0
    return out
