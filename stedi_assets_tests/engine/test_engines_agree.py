"""DuckDB and Spark agree: every zone rule and every SQL check, run on both engines over the
same inputs, returns the same rows, on the bundled sample and on the real STEDI data; and the
whole graph run on Spark publishes the same tables as on DuckDB."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

from stedi_assets.audit import evaluate
from stedi_assets.curated import checks as curated_checks
from stedi_assets.curated import rules as curated_rules
from stedi_assets.definitions import defs
from stedi_assets.engine import Relation, SqlEngine
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.engine.spark_engine import ADDED, APP_NAME, SparkEngine, SparkEngineResource
from stedi_assets.lake.delta import Lake
from stedi_assets import lakehouse
from stedi_assets.lake.store import LocalStore
from stedi_assets.landing import checks as landing_checks
from stedi_assets.landing import ingest
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy
from stedi_assets.tables import (
    ACCELEROMETER_LANDING,
    ACCELEROMETER_LANDING_REJECTS,
    CUSTOMER_LANDING,
    CUSTOMER_LANDING_REJECTS,
    STEP_TRAINER_LANDING,
    STEP_TRAINER_LANDING_REJECTS,
    TABLES,
)
from stedi_assets.trusted import checks as trusted_checks
from stedi_assets.trusted import rules as trusted_rules
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.test_reference_counts import REFERENCE

pytestmark = pytest.mark.spark
POLICIES = pytest.mark.parametrize("policy", list(ConsentPolicy), ids=lambda p: p.value)

LANDING = {
    CUSTOMER_LANDING: CUSTOMER_LANDING_REJECTS,
    ACCELEROMETER_LANDING: ACCELEROMETER_LANDING_REJECTS,
    STEP_TRAINER_LANDING: STEP_TRAINER_LANDING_REJECTS,
}
# Each zone table's rule, in the order the asset graph builds them.
ZONE_RULES = {
    "customer_trusted": trusted_rules.CUSTOMER_TRUSTED,
    "accelerometer_trusted": trusted_rules.ACCELEROMETER_TRUSTED,
    "customer_curated": curated_rules.CUSTOMER_CURATED,
    "step_trainer_trusted": trusted_rules.STEP_TRAINER_TRUSTED,
    "machine_learning_curated": curated_rules.MACHINE_LEARNING_CURATED,
}
# The tables a full build stages (AssetStep.stage): on Spark, written by the executors.
STAGED = ("accelerometer_trusted", "step_trainer_trusted", "machine_learning_curated")
CHECK_RULES = {name: audit.rules for name, audit in lakehouse.AUDITS.items()}


@pytest.fixture
def published(shared_lake) -> Callable[[Path, ConsentPolicy], dict[str, Relation]]:
    """Every table of the lakehouse on a source under a policy, as the job publishes it: the
    session's lake of that source (conftest), built by the assets themselves (in process, on
    DuckDB), so the engines are compared on what users get."""

    def tables(source: Path, policy: ConsentPolicy) -> dict[str, Relation]:
        return lakehouse.published(Lake(LocalStore(shared_lake(source, policy).lake)), TABLES)

    return tables


def used_by(sql: str, relations: dict[str, Relation]) -> dict[str, Relation]:
    """The relations `sql` names: Spark makes a view of each relation it is given, at a cost
    (a Parquet listing or an Arrow transfer), whether the query reads it or not."""
    return {name: r for name, r in relations.items() if re.search(rf"\b{name}\b", sql)}


def on_both(spark: SqlEngine, sql: str, relations: dict[str, Relation]) -> tuple[list[dict], list[dict]]:
    """The rows of `sql` on DuckDB and on Spark, sorted, after checking both have one schema."""
    used = used_by(sql, relations)
    duck, on_spark = DuckDBEngine().query(sql, used), spark.query(sql, used)
    assert on_spark.schema.equals(duck.schema), f"{on_spark.schema}\n!=\n{duck.schema}"
    return sorted_rows(duck), sorted_rows(on_spark)


def broken(tables: dict[str, Relation], audited: str, source: Path) -> dict[str, Relation]:
    """The relations for `audited`'s audit, with `audited` replaced by a table that breaks
    every rule of it, so that the engines are compared on violations, not on empty results:
    a landing table with lines lost; a trusted or curated one with its upstream's rejected
    rows let through and some rows repeated; the ML table with readings altered."""
    if audited in {t.name for t in LANDING}:
        bad = tables[audited].to_arrow().slice(3)
        ledger = tables.get(f"{audited}_files")  # the ledger published with it
        lines = landing_checks.recount(TABLES[audited], LandingSource(root=str(source)), ledger)
        return {**tables, **lines, audited: bad}
    upstream = {
        "customer_trusted": "customer_landing",
        "customer_curated": "customer_landing",
        "accelerometer_trusted": "accelerometer_landing",
        "step_trainer_trusted": "step_trainer_landing",
    }
    if audited in upstream:
        bad = tables[upstream[audited]].to_arrow()
    else:
        ml = tables[audited].to_arrow()
        bad = ml.set_column(ml.schema.get_field_index("x"), "x", pc.add(ml["x"], 0.5))
    return {**tables, audited: pa.concat_tables([bad, bad.slice(0, 10)])}


def test_every_check_rule_is_compared():
    declared = {(key.asset_key.path[-1], key.name) for key in defs.resolve_asset_graph().asset_check_keys}
    assert {(table, rule.name) for table, rules in CHECK_RULES.items() for rule in rules} == declared


@POLICIES
def test_zone_rules_agree_on_the_sample(spark_engine, policy, published):
    inputs = published(SAMPLE_SOURCE, policy)
    for name, sql in ZONE_RULES.items():
        duck, on_spark = on_both(spark_engine, PrivacyPolicy(consent_policy=policy).render(sql), inputs)
        assert duck and on_spark == duck, name


@POLICIES
def test_check_rules_agree_on_the_sample_where_they_find_violations(spark_engine, spark_cluster, policy, published):
    privacy = PrivacyPolicy(consent_policy=policy)
    tables = published(SAMPLE_SOURCE, policy)
    for audited, rules in CHECK_RULES.items():
        relations = broken(tables, audited, SAMPLE_SOURCE)
        for rule in (r for r in rules if r.sql is not None):  # the others are Python, one for both
            duck, on_spark = on_both(spark_engine, privacy.render(rule.sql), relations)
            assert duck and on_spark == duck, (audited, rule.name)
            # The audit step's own query (count and sample in one pass) through the resource.
            resource = SparkEngineResource(master=spark_cluster.url)
            outcome = evaluate(rule, used_by(privacy.render(rule.sql), relations), resource, privacy)
            assert outcome.violations == len(duck), (audited, rule.name)


@pytest.mark.reference
@POLICIES
def test_zone_rules_agree_on_the_reference_data(spark_engine, policy, reference_data, published):
    inputs = published(reference_data, policy)
    counts = {}
    for name, sql in ZONE_RULES.items():
        duck, on_spark = on_both(spark_engine, PrivacyPolicy(consent_policy=policy).render(sql), inputs)
        assert on_spark == duck, name
        counts[name] = len(on_spark)
    assert counts == {name: REFERENCE[policy][name] for name in ZONE_RULES}


def test_whole_graph_on_the_cluster_publishes_what_duckdb_does(spark_engine, spark_cluster, sample_lake, lakehouse_factory, monkeypatch):
    """The whole job run in process with STEDI_ENGINE=spark and STEDI_SPARK_MASTER the
    session's standalone cluster (conftest.py), on the run's one Spark session, publishes the
    rows the session's DuckDB-built sample lake holds, table by table, row for row; and the
    cluster's master registered the application; and no table the executors stage came back
    whole to the run's process (every result Spark returned to it, `toArrow`, is recorded). (That a run on DuckDB starts no JVM is
    test_pipeline's, on the CLI.) The landing files, the sample's dirty one included (bad
    lines, rejects with line numbers), are parsed by the executors: this process cannot parse
    one, and each landing step says which processes ingested its files: none of them this one
    (on DuckDB, this one). The ML table's profile shows the same numbers and pictures."""
    masters, returned = [], []
    spark_query, to_arrow = SparkEngine.query, ClassicDataFrame.toArrow

    def counted(self, sql, relations):  # the real query, counted: the run did go to the cluster
        masters.append(self.session.sparkContext.master)
        return spark_query(self, sql, relations)

    def recorded(frame):
        result = to_arrow(frame)
        returned.append((tuple(result.column_names), result.num_rows))
        return result

    monkeypatch.setattr(SparkEngine, "query", counted)
    monkeypatch.setattr(ClassicDataFrame, "toArrow", recorded)
    # The executors import the parser afresh; in this process it fails.
    monkeypatch.setattr(ingest, "parse_file", lambda *a, **k: pytest.fail("the step's process parsed a landing file"))
    on_spark = lakehouse_factory(SAMPLE_SOURCE, STEDI_ENGINE="spark", STEDI_SPARK_MASTER=spark_cluster.url)
    run = on_spark.run()
    assert run.success
    here = f"{socket.gethostname()}:{os.getpid()}"
    for landing in LANDING:
        [event] = run.asset_materializations_for_node(landing.name)
        where = event.metadata["ingested_in"].value
        assert where["engine"] == "spark" and where["files"] == event.metadata["files_parsed"].value > 0, landing.name
        assert here not in where["processes"], landing.name
        # On DuckDB (the session's sample lake, built by this process) this process ingests.
        [on_duckdb] = sample_lake.result.asset_materializations_for_node(landing.name)
        assert on_duckdb.metadata["ingested_in"].value["processes"] == [here], landing.name
    assert len(masters) >= len(ZONE_RULES) and set(masters) == {spark_cluster.url}
    for name in (*STAGED, *(t.name for t in LANDING)):  # built on the executors, judged where they lie: never here whole
        staged = Lake(LocalStore(on_spark.lake)).current(TABLES[name].spec).rows
        held = [rows for columns, rows in returned if set(columns) == set(TABLES[name].column_names)]
        assert max(held, default=0) < staged, name
    assert any(columns == tuple(ADDED.names) for columns, _ in returned)  # what came back instead
    on_duckdb = sample_lake.lakehouse
    for table in TABLES.values():
        duck, spark = (lakehouse.published(Lake(LocalStore(house.lake)), [table.name])[table.name] for house in (on_duckdb, on_spark))
        assert spark.rows == duck.rows, table.name
        assert sorted_rows(spark.to_arrow()) == sorted_rows(duck.to_arrow()), table.name
    assert Lake(LocalStore(on_spark.lake)).current(TABLES["machine_learning_curated"].spec).rows > 0
    # The ML table's pictures and numbers are the same on both engines, each asked in SQL
    # where the table was staged (curated/signals.py `profile`).
    [duck_ml], [spark_ml] = (r.asset_materializations_for_node("machine_learning_curated") for r in (sample_lake.result, run))
    shown = ("subjects", "step_trainer_readings_matched", "step_trainer_match_share", "readings_per_subject", "subject_signals")
    for name in shown:
        assert spark_ml.metadata[name] == duck_ml.metadata[name], name
    application = spark_engine.session.sparkContext.applicationId
    assert f"Registered app {APP_NAME} with ID {application}" in spark_cluster.master_log


def test_spark_keeps_every_row_of_an_arrow_table_with_empty_chunks(spark_engine):
    rows = pa.record_batch({"n": pa.array([1, 2], pa.int64())})
    chunked = pa.Table.from_batches([rows.slice(0, 0), rows, rows.slice(0, 0), rows])
    assert spark_engine.query("SELECT n FROM t", {"t": chunked})["n"].to_pylist() == [1, 2, 1, 2]
