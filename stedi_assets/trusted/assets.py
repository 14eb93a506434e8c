"""Trusted: only customers who consented to research, and only their readings."""

from __future__ import annotations

from stedi_assets.publishing import AssetStep, Build, audited_asset
from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, STEP_TRAINER_LANDING
from stedi_assets.trusted import checks, rules

GROUP = "trusted"
KINDS = {"sql", "delta"}


@audited_asset(checks.CUSTOMER_TRUSTED_AUDIT, group=GROUP, kinds=KINDS, inputs=[CUSTOMER_LANDING])
def customer_trusted(step: AssetStep) -> Build:
    """Customers who consented to research: the most recent record of each e-mail, kept only if
    its `shareWithResearchAsOfDate` is present and not null (a missing key means no consent)."""
    return Build(
        step.query(rules.CUSTOMER_TRUSTED, "customer_landing"),
        metadata={"consent_policy": step.privacy.consent_policy.value},
    )


@audited_asset(checks.ACCELEROMETER_TRUSTED_AUDIT, group=GROUP, kinds=KINDS, inputs=[ACCELEROMETER_LANDING])
def accelerometer_trusted(step: AssetStep) -> Build:
    """Accelerometer readings of customer_trusted customers (under the `since_consent` policy,
    only those taken at or after the customer's consent date), each reading once."""
    return Build(
        step.query(
            rules.ACCELEROMETER_TRUSTED,
            "accelerometer_landing",
            "customer_trusted",
        ),
        metadata={"consent_policy": step.privacy.consent_policy.value},
    )


@audited_asset(checks.STEP_TRAINER_TRUSTED_AUDIT, group=GROUP, kinds=KINDS, inputs=[STEP_TRAINER_LANDING])
def step_trainer_trusted(step: AssetStep) -> Build:
    """Step trainer readings whose serial number belongs to a customer_curated customer (under
    `since_consent`, taken at or after that customer's consent date). On a serial number that
    other customers were also registered with, a reading counts only if that customer's phone
    recorded at the same moment; readings are never multiplied by shared serial numbers."""
    return Build(
        step.query(
            rules.STEP_TRAINER_TRUSTED,
            "step_trainer_landing", "customer_curated", "customer_landing", "accelerometer_trusted",
        ),
        metadata={"consent_policy": step.privacy.consent_policy.value},
    )
