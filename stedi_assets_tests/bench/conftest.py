"""One SparkSession for every Spark test of the run: the JVM takes seconds to start."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark_session(spark_engine) -> SparkSession:
    # The Spark engine's session on the tests' loopback cluster (conftest.py), shared with
    # the engine tests rather than a second JVM.
    return spark_engine.session
