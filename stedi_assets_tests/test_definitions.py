"""`defs` loads, and a run records what the UI shows: counts, schemas, previews, evidence."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from stedi_assets.definitions import build_definitions, defs
from stedi_assets.settings import Settings
from stedi_assets.tables import TABLES
from stedi_assets_tests.conftest import REPO

ZONE_TABLES = {
    "landing": {"customer_landing", "accelerometer_landing", "step_trainer_landing"},
    "trusted": {"customer_trusted", "accelerometer_trusted", "step_trainer_trusted"},
    "curated": {"customer_curated", "machine_learning_curated"},
}


def test_defs_is_loadable():
    dg.Definitions.validate_loadable(defs)


def test_groups_follow_the_zones_and_docstrings_become_descriptions():
    graph = defs.resolve_asset_graph()
    for zone, tables in ZONE_TABLES.items():
        for name in tables:
            node = graph.get(dg.AssetKey(name))
            assert node.group_name == zone
            assert node.description and len(node.description) > 40


@pytest.fixture
def sample_run(sample_lake) -> dg.ExecuteInProcessResult:
    """The job's run that built the session's sample lake (conftest)."""
    return sample_lake.result


def test_the_io_manager_hands_users_each_tables_published_version(sample_lake):
    """The zone assets read upstream tables themselves; a user's notebook or own asset
    still gets the published version through the IO manager."""
    definitions, result = sample_lake.definitions, sample_lake.result
    materializations = {m.asset_key.path[-1]: m.materialization.metadata for m in result.get_asset_materialization_events()}
    for name in ("customer_trusted", "machine_learning_curated"):
        snapshot = definitions.load_asset_value(name)
        assert snapshot.name == name
        assert snapshot.rows == materializations[name]["dagster/row_count"].value > 0
        assert snapshot.dataset().count_rows() == snapshot.rows

    @dg.asset(ins={"customer_curated": dg.AssetIn()}, io_manager_key="notebook_io_manager")
    def consenting_customers(customer_curated) -> int:
        return customer_curated.rows

    downstream = dg.materialize(
        [consenting_customers, *definitions.assets],
        resources={**definitions.resources, "notebook_io_manager": dg.InMemoryIOManager()},
        selection=[consenting_customers],
    )
    curated_rows = materializations["customer_curated"]["dagster/row_count"].value
    assert downstream.output_for_node("consenting_customers") == curated_rows


def test_every_materialization_records_rows_schema_and_a_masked_preview(sample_run):
    materializations = {m.asset_key.path[-1]: m for m in sample_run.get_asset_materialization_events()}
    assert set(materializations) == set().union(*ZONE_TABLES.values())
    for name, event in materializations.items():
        metadata = event.materialization.metadata
        assert metadata["dagster/row_count"].value >= 0
        columns = [c.name for c in metadata["dagster/column_schema"].schema.columns]
        assert columns == TABLES[name].column_names
        assert "preview" in metadata
    landing = materializations["accelerometer_landing"].materialization.metadata
    assert landing["lines_read"].value == landing["rows"].value + 4
    assert landing["rejects"].value == 5  # the sample's dirty file: one line holds a row and a reject
    assert sum(landing["reject_reasons"].value.values()) == 5
    preview = materializations["customer_trusted"].materialization.metadata["preview"]
    emails = [record.data["email"] for record in preview.records]
    assert emails and all("***@" in e for e in emails)  # e-mails masked
    assert all(m.materialization.metadata["published"].value is True for m in materializations.values())
    ml = materializations["machine_learning_curated"].materialization.metadata
    assert "not for production" in ml["subject_key"].value


def test_every_check_passes_with_its_evidence(sample_run):
    evaluations = sample_run.get_asset_check_evaluations()
    assert len(evaluations) == 23
    for evaluation in evaluations:
        assert evaluation.passed, evaluation
        assert evaluation.metadata["violations"].value == 0
        assert evaluation.metadata["sample_keys"].value == []
        assert evaluation.metadata["published"].value is True


def test_an_unknown_engine_is_an_error_naming_the_setting():
    with pytest.raises(ValueError, match="STEDI_ENGINE='nope' is not one of: duckdb, spark"):
        Settings.from_env({"STEDI_ENGINE": "nope"})


def test_the_subject_key_reaches_dagster_as_an_environment_variable_never_as_a_value():
    secret = "a-subject-key-nobody-may-see"
    definitions = build_definitions(Settings.from_env({"STEDI_SUBJECT_KEY": secret}))
    privacy = definitions.resources["privacy"]
    assert secret not in repr(privacy) and secret not in str(privacy._get_non_default_public_field_values())
    assert "STEDI_SUBJECT_KEY" in repr(privacy)


def test_full_refresh_yaml_rebuilds_every_asset():
    config = yaml.safe_load((REPO / "full_refresh.yaml").read_text())
    assets = {key.path[-1] for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert config == {"ops": {name: {"config": {"full_refresh": True}} for name in assets}}


def test_sensors_and_automation_run_by_default_and_start_stopped_when_turned_off():
    names = {"customer_arrivals", "accelerometer_arrivals", "step_trainer_arrivals", "stedi_automation"}
    for settings, status in (({}, dg.DefaultSensorStatus.RUNNING), ({"STEDI_AUTOMATION": "false"}, dg.DefaultSensorStatus.STOPPED)):
        sensors = {s.name: s for s in build_definitions(Settings.from_env({**settings, "STEDI_SENSOR_INTERVAL": "7"})).sensors}
        assert set(sensors) == names
        assert {s.default_status for s in sensors.values()} == {status}
        assert {s.minimum_interval_seconds for s in sensors.values()} == {7}
    graph = defs.resolve_asset_graph()
    followers = {k.path[-1] for k in graph.get_all_asset_keys() if graph.get(k).automation_condition is not None}
    assert followers == ZONE_TABLES["trusted"] | ZONE_TABLES["curated"]  # landing waits for its sensor


def test_steps_get_the_privacy_policy_with_the_key_resolved_and_never_shown(monkeypatch):
    secret = "a-subject-key-nobody-may-see"
    monkeypatch.setenv("STEDI_SUBJECT_KEY", secret)
    settings = Settings.from_env()
    with dg.build_resources({"privacy": build_definitions(settings).resources["privacy"]}) as resources:
        assert resources.privacy.subject_key == secret and not resources.privacy.uses_development_key
        assert secret not in repr(resources.privacy)
    assert secret not in repr(settings)
