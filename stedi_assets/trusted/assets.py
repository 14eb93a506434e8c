"""Trusted: only customers who consented to research, and only their readings."""


import dagster as dg
import pyarrow as pa

from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.lake.lake import LakeTable
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.trusted import rules

GROUP = "trusted"
KINDS = {"sql", "parquet"}


@dg.asset(group_name=GROUP, kinds=KINDS)
def customer_trusted(
    context: dg.AssetExecutionContext, customer_landing: LakeTable, engine: SqlEngineResource, privacy: PrivacyPolicy
) -> pa.Table:
    """Customers who consented to research: the most recent record of each e-mail, kept only if
    its `shareWithResearchAsOfDate` is present and not null (a missing key means no consent)."""
    context.add_output_metadata({"consent_policy": privacy.consent_policy.value})
    return engine.engine().query(privacy.render(rules.CUSTOMER_TRUSTED), {"customer_landing": customer_landing})


@dg.asset(group_name=GROUP, kinds=KINDS)
def accelerometer_trusted(
    context: dg.AssetExecutionContext,
    accelerometer_landing: LakeTable,
    customer_trusted: LakeTable,
    engine: SqlEngineResource,
    privacy: PrivacyPolicy,
) -> pa.Table:
    """Accelerometer readings of customer_trusted customers (under the `since_consent` policy,
    only those taken at or after the customer's consent date), each reading once."""
    context.add_output_metadata({"consent_policy": privacy.consent_policy.value})
    return engine.engine().query(
        privacy.render(rules.ACCELEROMETER_TRUSTED),
        {"accelerometer_landing": accelerometer_landing, "customer_trusted": customer_trusted},
    )


@dg.asset(group_name=GROUP, kinds=KINDS)
def step_trainer_trusted(
    context: dg.AssetExecutionContext,
    step_trainer_landing: LakeTable,
    customer_curated: LakeTable,
    customer_landing: LakeTable,
    accelerometer_trusted: LakeTable,
    engine: SqlEngineResource,
    privacy: PrivacyPolicy,
) -> pa.Table:
    """Step trainer readings whose serial number belongs to a customer_curated customer (under
    `since_consent`, taken at or after that customer's consent date). On a serial number that
    other customers were also registered with, a reading counts only if that customer's phone
    recorded at the same moment; readings are never multiplied by shared serial numbers."""
    context.add_output_metadata({"consent_policy": privacy.consent_policy.value})
    return engine.engine().query(
        privacy.render(rules.STEP_TRAINER_TRUSTED),
        {
            "step_trainer_landing": step_trainer_landing,
            "customer_curated": customer_curated,
            "customer_landing": customer_landing,
            "accelerometer_trusted": accelerometer_trusted,
        },
    )
