"""A second Dagster floor: bench/floor.py's eight trivial assets with everything our steps hand
Dagster besides data, to tell Dagster's cost for a graph of our shape from ours.

Each asset has the lakehouse's blocking checks (the same 23 names, mirrored here so that this
module loads no lakehouse code: a floor touches no data and imports no engine), yields its output
through an IO manager that writes nothing, logs one line, carries a Markdown value the size of a
step's pictures (40 KB), then yields each check's passed result after the output. A run stores the
same 132 events as ours (issue 22: the 23 checks cost Dagster three events each, planned, output
and evaluation). Run as `dagster asset materialize -m bench.floor_checks --select '*'`.
"""

import dagster as dg

from bench.floor import LINEAGE

# The rules of each table's audit (stedi_assets/*/checks.py), by name.
CHECKS: dict[str, tuple[str, ...]] = {
    "customer_landing": ("lines_accounted_for", "no_erased_person"),
    "accelerometer_landing": ("lines_accounted_for", "no_erased_person"),
    "step_trainer_landing": ("lines_accounted_for", "no_erased_person"),
    "customer_trusted": ("consent_present", "consent_unambiguous", "email_unique_not_null", "no_erased_person"),
    "accelerometer_trusted": ("user_is_trusted_customer", "reading_unique", "no_erased_person"),
    "customer_curated": ("email_unique", "has_accelerometer_data", "no_erased_person"),
    "step_trainer_trusted": ("reading_key_unique", "serial_belongs_to_curated_customer", "no_erased_person"),
    "machine_learning_curated": ("same_customer", "no_direct_identifiers", "no_duplicate_rows", "no_erased_person"),
}
PICTURES_BYTES = 40_000


class NullIOManager(dg.ConfigurableIOManager):
    """Receives each output, as ours commits it, and writes nothing."""

    def handle_output(self, context: dg.OutputContext, obj: None) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> None:
        return None


def _trivial_audited_asset(name: str, deps: tuple[str, ...]) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=name,
        outs={name: dg.AssetOut(is_required=False)},
        deps=[dg.AssetKey(d) for d in deps],
        check_specs=[dg.AssetCheckSpec(c, asset=name, blocking=True) for c in CHECKS[name]],
        can_subset=True,
    )
    def _step(context: dg.AssetExecutionContext):
        context.log.info(f"{name}: committed")
        metadata = {"dagster/row_count": 0, "pictures": dg.MetadataValue.md("x" * PICTURES_BYTES)}
        yield dg.Output(None, output_name=name, metadata=metadata)
        for check in CHECKS[name]:
            yield dg.AssetCheckResult(check_name=check, asset_key=name, passed=True, metadata={"violations": 0})

    return _step


defs = dg.Definitions(
    assets=[_trivial_audited_asset(name, deps) for name, deps in LINEAGE.items()],
    resources={"io_manager": NullIOManager()},
    executor=dg.in_process_executor,
)
