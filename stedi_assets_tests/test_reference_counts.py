"""The reference counts on the real STEDI data under both policies, as `stedi sql` reads them
from the session's real-data lakes (conftest)."""

from __future__ import annotations

import pytest

from stedi_assets.settings import ConsentPolicy

REFERENCE = {
    ConsentPolicy.ANY: {
        "customer_landing": 956,
        "accelerometer_landing": 81_273,
        "step_trainer_landing": 28_680,
        "customer_trusted": 482,
        "accelerometer_trusted": 40_981,
        "customer_curated": 482,
        "step_trainer_trusted": 14_460,
        "machine_learning_curated": 40_981,
    },
    ConsentPolicy.SINCE_CONSENT: {
        "customer_landing": 956,
        "accelerometer_landing": 81_273,
        "step_trainer_landing": 28_680,
        "customer_trusted": 482,
        "accelerometer_trusted": 32_025,
        "customer_curated": 464,
        "step_trainer_trusted": 11_297,
        "machine_learning_curated": 32_025,
    },
}


@pytest.mark.reference
def test_reference_counts(real_lake):
    policy, lakehouse = real_lake.policy, real_lake.lakehouse
    counts = {table: lakehouse.count(table) for table in REFERENCE[policy]}
    assert counts == REFERENCE[policy]
    for rejects in ("customer_landing_rejects", "accelerometer_landing_rejects", "step_trainer_landing_rejects"):
        assert lakehouse.count(rejects) == 0
    # The ML table is keyed by pseudonym only, one subject per curated customer.
    [row] = lakehouse.sql(
        "SELECT COUNT(DISTINCT m.subject_id) AS subjects, (SELECT COUNT(*) FROM customer_curated) AS customers "
        "FROM machine_learning_curated AS m"
    )
    assert row["subjects"] == row["customers"] == REFERENCE[policy]["customer_curated"]
