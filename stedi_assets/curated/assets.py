"""Curated: the tables people work from, built only from trusted data."""


import dagster as dg
import pyarrow as pa

from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.lake.lake import LakeTable
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.curated import rules
from stedi_assets.tables import SUBJECT_ID

GROUP = "curated"
KINDS = {"sql", "parquet"}


@dg.asset(group_name=GROUP, kinds=KINDS)
def customer_curated(
    customer_trusted: LakeTable, accelerometer_trusted: LakeTable, engine: SqlEngineResource, privacy: PrivacyPolicy
) -> pa.Table:
    """customer_trusted customers who have at least one accelerometer_trusted reading, one row
    each, with the pseudonymous `subject_id` that stands for them in the ML table."""
    customers = engine.engine().query(
        privacy.render(rules.CUSTOMER_CURATED),
        {"customer_trusted": customer_trusted, "accelerometer_trusted": accelerometer_trusted},
    )
    return customers.append_column(SUBJECT_ID.name, privacy.subject_ids(customers["email"]))


@dg.asset(group_name=GROUP, kinds=KINDS)
def machine_learning_curated(
    context: dg.AssetExecutionContext,
    step_trainer_trusted: LakeTable,
    accelerometer_trusted: LakeTable,
    customer_curated: LakeTable,
    engine: SqlEngineResource,
    privacy: PrivacyPolicy,
) -> pa.Table:
    """The table data scientists train on: each step trainer reading with the accelerometer
    readings of the same customer at the same time, under a pseudonymous `subject_id`
    (a keyed hash of the e-mail). No name, e-mail, phone or birthday."""
    context.add_output_metadata(
        {
            "consent_policy": privacy.consent_policy.value,
            "subject_key": (
                "DEVELOPMENT DEFAULT: not for production, set STEDI_SUBJECT_KEY"
                if privacy.uses_development_key
                else "set by STEDI_SUBJECT_KEY"
            ),
        }
    )
    return engine.engine().query(
        privacy.render(rules.MACHINE_LEARNING_CURATED),
        {
            "step_trainer_trusted": step_trainer_trusted,
            "accelerometer_trusted": accelerometer_trusted,
            "customer_curated": customer_curated,
        },
    )
