"""Trusted: only customers who consented to research, and only their readings."""

from __future__ import annotations

from collections import Counter

import dagster as dg

from stedi_assets.privacy import mask
from stedi_assets.publishing import AssetStep, Build, audited_asset
from stedi_assets.tables import ACCELEROMETER_LANDING, STEP_TRAINER_LANDING
from stedi_assets.trusted import checks, rules

GROUP = "trusted"
KINDS = {"sql", "delta"}


@audited_asset(checks.CUSTOMER_TRUSTED_AUDIT, group=GROUP, kinds=KINDS)
def customer_trusted(step: AssetStep) -> Build:
    """Customers who consented to research, one row per e-mail (compared trimmed and
    lower-cased, and stored so): the latest record of each, kept only if it unambiguously
    gives research consent dated at or before the run. Consent in doubt means out: records
    that cannot be ordered (one without `lastUpdateDate`), latest records that disagree on
    consent, consent dated in the future, and an e-mail that a rejected customer line names
    (e.g. a withdrawal written as `false`) all keep the customer out; the metadata counts
    them by reason. A missing or null `shareWithResearchAsOfDate` means no consent."""
    held_out = step.query(rules.CUSTOMERS_HELD_OUT, "customer_landing", "customer_landing_rejects")
    reasons = Counter(held_out["reason"].to_pylist())
    return Build(
        step.query(rules.CUSTOMER_TRUSTED, "customer_landing", "customer_landing_rejects"),
        metadata={
            "consent_policy": step.privacy.consent_policy.value,
            "held_out_for_doubt": held_out.num_rows,
            "held_out_by_reason": dg.MetadataValue.json(dict(reasons.most_common())),
            "held_out_sample": dg.MetadataValue.json(
                [{"email": mask("email", r["email_key"]), "reason": r["reason"]} for r in held_out.slice(0, 10).to_pylist()]
            ),
        },
    )


@audited_asset(checks.ACCELEROMETER_TRUSTED_AUDIT, group=GROUP, kinds=KINDS, inputs=[ACCELEROMETER_LANDING])
def accelerometer_trusted(step: AssetStep) -> Build:
    """Accelerometer readings of customer_trusted customers, whatever the spelling of the
    e-mail in `user` (stored as the customer's e-mail key), under the `since_consent` policy
    only those taken at or after the customer's consent date; each reading once."""
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
    other customers were also registered with, or that a rejected customer line names (its
    owner unknown), a reading counts only if that customer's phone recorded at the same
    moment; readings are never multiplied by shared serial numbers."""
    return Build(
        step.query(
            rules.STEP_TRAINER_TRUSTED,
            "step_trainer_landing", "customer_curated", "customer_landing", "customer_landing_rejects", "accelerometer_trusted",
        ),
        metadata={"consent_policy": step.privacy.consent_policy.value},
    )
