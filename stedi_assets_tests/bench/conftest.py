"""One SparkSession for every Spark test of the run: the JVM takes seconds to start."""

from __future__ import annotations

import shutil

import pytest
from pyspark.sql import SparkSession

from stedi_assets_tests.conftest import IN_CI


@pytest.fixture(scope="session")
def spark_session() -> SparkSession:
    if shutil.which("java") is None:
        message = "the Spark baseline needs Java 17 on PATH"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from stedi_assets.engine.spark_engine import SparkEngine

    # The Spark engine's local session (local[*], loopback, no UI, few shuffle partitions),
    # shared with the engine tests rather than a second JVM.
    return SparkEngine.shared().session
