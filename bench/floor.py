"""The Dagster floor of `python -m bench`: eight trivial assets in the lakehouse's shape.

The same eight tables and dependencies as the lakehouse, each step returning a tiny value,
through the same CLI and in-process executor: what a run costs before any data is touched
(interpreter and import time, definitions loading, step and event overhead).
Run as `dagster asset materialize -m bench.floor --select '*'`.
"""

from __future__ import annotations

import dagster as dg

# Each table and the tables it reads, as in the lakehouse's lineage (README).
LINEAGE: dict[str, tuple[str, ...]] = {
    "customer_landing": (),
    "accelerometer_landing": (),
    "step_trainer_landing": (),
    "customer_trusted": ("customer_landing",),
    "accelerometer_trusted": ("accelerometer_landing", "customer_trusted"),
    "customer_curated": ("customer_trusted", "accelerometer_trusted"),
    "step_trainer_trusted": ("step_trainer_landing", "customer_curated", "customer_landing", "accelerometer_trusted"),
    "machine_learning_curated": ("step_trainer_trusted", "accelerometer_trusted", "customer_curated"),
}


def _trivial_asset(name: str, deps: tuple[str, ...]) -> dg.AssetsDefinition:
    @dg.asset(name=name, deps=list(deps))
    def _asset() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"dagster/row_count": 0})

    return _asset


defs = dg.Definitions(
    assets=[_trivial_asset(name, deps) for name, deps in LINEAGE.items()],
    executor=dg.in_process_executor,
)
