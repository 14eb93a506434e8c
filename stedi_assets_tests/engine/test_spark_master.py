"""STEDI_SPARK_MASTER: where STEDI_ENGINE=spark runs, chosen with the other resources in
definitions.py. No JVM: these read settings and config only."""

from __future__ import annotations

import pytest

from stedi_assets.definitions import build_definitions
from stedi_assets.engine.spark_engine import SparkEngineResource, spark_config
from stedi_assets.settings import Settings, SettingsError


def test_the_engine_resource_runs_on_the_master_the_setting_names():
    settings = Settings.from_env({"STEDI_ENGINE": "spark", "STEDI_SPARK_MASTER": "spark://10.0.0.5:7077"})
    engine = build_definitions(settings).resources["engine"]
    assert isinstance(engine, SparkEngineResource) and engine.master == "spark://10.0.0.5:7077"
    assert Settings.from_env({"STEDI_ENGINE": "spark"}).spark_master == "local[*]"


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "spark://127.0.0.1:7077", "yarn", "k8s://https://k:443"])
def test_a_spark_master_url_is_accepted(master):
    assert Settings.from_env({"STEDI_SPARK_MASTER": master}).spark_master == master


@pytest.mark.parametrize("master", ["spark", "mesos://m:5050 ", "local[x]", "http://m:7077"])
def test_anything_else_is_refused_naming_the_setting(master):
    with pytest.raises(SettingsError, match="STEDI_SPARK_MASTER=.* is not a Spark master URL"):
        Settings.from_env({"STEDI_SPARK_MASTER": master})


def test_only_a_master_on_this_machine_binds_the_driver_to_loopback():
    """A cluster elsewhere must reach the driver at an address of the machine's own."""
    for master in ("local[*]", "spark://127.0.0.1:7077"):
        assert spark_config(master)["spark.driver.bindAddress"] == "127.0.0.1"
    remote = spark_config("spark://10.0.0.5:7077")
    assert remote["spark.master"] == "spark://10.0.0.5:7077" and "spark.driver.host" not in remote
    assert "spark.driver.memory" not in remote  # a cluster's driver is set by its platform
