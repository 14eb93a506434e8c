"""Curated: the tables people work from, built only from trusted data."""

from __future__ import annotations

from stedi_assets.curated import checks, rules, signals
from stedi_assets.publishing import AssetStep, Build, audited_asset
from stedi_assets.tables import CUSTOMER_TRUSTED, SUBJECT_ID

GROUP = "curated"
KINDS = {"sql", "delta"}


@audited_asset(checks.CUSTOMER_CURATED_AUDIT, group=GROUP, kinds=KINDS, inputs=[CUSTOMER_TRUSTED])
def customer_curated(step: AssetStep) -> Build:
    """customer_trusted customers who have at least one accelerometer_trusted reading, one row
    each, with the pseudonymous `subject_id` that stands for them in the ML table."""
    customers = step.query(rules.CUSTOMER_CURATED, "customer_trusted", "accelerometer_trusted")
    customers = customers.append_column(SUBJECT_ID.name, step.privacy.subject_ids(customers["email"]))
    relations = {name: step.inputs[name] for name in ("customer_trusted", "accelerometer_trusted")}
    # Pictures for the UI: the privacy funnel; a chart that fails is a warning, never a failure.
    pictures = signals.customer_curated_pictures(
        step.context.log, step.engine.engine(), step.privacy, {**relations, "customer_curated": customers}, step.published
    )
    return Build(customers, metadata=pictures)


@audited_asset(checks.MACHINE_LEARNING_CURATED_AUDIT, group=GROUP, kinds=KINDS)
def machine_learning_curated(step: AssetStep) -> Build:
    """The table data scientists train on: each step trainer reading with the accelerometer
    readings of the same customer at the same time, under a pseudonymous `subject_id`
    (a keyed hash of the e-mail). No name, e-mail, phone or birthday."""
    inputs = ("step_trainer_trusted", "accelerometer_trusted", "customer_curated")
    ml = step.query(rules.MACHINE_LEARNING_CURATED, *inputs)
    # Pictures for the UI: funnel, signals, readings per subject, matches; never a failure.
    pictures = signals.machine_learning_pictures(
        step.context.log, step.engine.engine(), step.privacy, ml, {n: step.inputs[n] for n in inputs}, step.published
    )
    return Build(
        ml,
        metadata={
            **pictures,
            "consent_policy": step.privacy.consent_policy.value,
            "subject_key": (
                "DEVELOPMENT DEFAULT: not for production, set STEDI_SUBJECT_KEY"
                if step.privacy.uses_development_key
                else "set by STEDI_SUBJECT_KEY"
            ),
        },
    )
