"""Curated: the tables people work from, built only from trusted data. Both follow their
inputs on their own (declarative automation); customer_curated is small and rebuilt,
machine_learning_curated is updated from what changed (stedi_assets/incremental.py)."""

from __future__ import annotations

import functools

import pyarrow as pa

from stedi_assets.curated import checks, rules, signals
from stedi_assets.incremental import Follower, rebuilt
from stedi_assets.publishing import AssetStep, Build
from stedi_assets.tables import CUSTOMER_CURATED, CUSTOMER_TRUSTED, MACHINE_LEARNING_CURATED, SUBJECT_ID
from stedi_assets.trusted.assets import zone_asset

curated_asset = functools.partial(zone_asset, group="curated")


@curated_asset(checks.CUSTOMER_CURATED_AUDIT, inputs=[CUSTOMER_TRUSTED])
def customer_curated(step: AssetStep) -> Build:
    """customer_trusted customers who have at least one accelerometer_trusted reading, one row
    each, with the pseudonymous `subject_id` that stands for them in the ML table."""
    readers = None
    # The subject key is part of what the rows depend on: its fingerprint is the subject id of
    # a fixed text, no more telling than any subject id in the ML table.
    key_probe = step.privacy.subject_ids(pa.array(["stedi subject key fingerprint"]))[0].as_py()
    follower = Follower(step, CUSTOMER_CURATED, [rules.CUSTOMER_CURATED, key_probe])
    if follower.usable and not follower.inputs_unchanged:
        phones = follower.changes("accelerometer_trusted")
        if phones.nothing_removed:
            # No reading was removed, so whoever had one still has: the customers with
            # readings are the published ones and the users of the new readings. The rule
            # and its audit run over those instead of every reading.
            readers = follower.sql(
                "SELECT email AS user FROM customer_curated_then UNION SELECT DISTINCT user FROM new_readings",
                customer_curated_then=follower.previous,
                new_readings=phones.added,
            )

    pictures = {}

    def build():
        step.pictures.prepare()
        phones = readers if readers is not None else step.inputs["accelerometer_trusted"]
        customers = step.query(rules.CUSTOMER_CURATED, "customer_trusted", accelerometer_trusted=phones)
        customers = customers.append_column(SUBJECT_ID.name, step.privacy.subject_ids(customers["email"]))
        customers = follower.without_erased(customers)  # before the funnel counts them
        # The privacy funnel, over every reading.
        pictures.update(signals.curated_pictures(step, {**step.inputs, "customer_curated": customers}))
        return customers

    built = rebuilt(follower, build, metadata=pictures)
    if readers is not None:
        built.relations = {**built.relations, "accelerometer_trusted": readers}
    return built


@curated_asset(checks.MACHINE_LEARNING_CURATED_AUDIT)
def machine_learning_curated(step: AssetStep) -> Build:
    """The table data scientists train on: each step trainer reading with the accelerometer
    readings of the same customer at the same time, under a pseudonymous `subject_id`
    (a keyed hash of the e-mail). No name, e-mail, phone or birthday."""
    key = "DEVELOPMENT DEFAULT: not for production, set" if step.privacy.uses_development_key else "set by"
    metadata = {"consent_policy": step.privacy.consent_policy.value, "subject_key": f"{key} STEDI_SUBJECT_KEY"}
    inputs = ("step_trainer_trusted", "accelerometer_trusted", "customer_curated")
    follower = Follower(step, MACHINE_LEARNING_CURATED, [rules.MACHINE_LEARNING_CURATED])

    def everything():
        return step.stage(MACHINE_LEARNING_CURATED, rules.MACHINE_LEARNING_CURATED, *inputs)

    if not follower.usable:
        # Pictures on full builds only: they profile the whole table, where the engine staged it.
        step.pictures.prepare()
        built = follower.full(everything(), metadata, built_with=rules.MACHINE_LEARNING_CURATED)
        # Drawn on what is published: an erased person's rows are left out by now.
        published = {**step.inputs, MACHINE_LEARNING_CURATED.name: built.data}
        built.metadata = {**built.metadata, **signals.curated_pictures(step, published)}
        return built
    metadata["pictures"] = "drawn on full builds only: they profile the whole table"
    if follower.inputs_unchanged:
        return follower.unchanged(metadata)
    changes = follower.changed(*inputs)
    # Customers whose curated record changed, and those some removed readings belonged to
    # (by their record then or now): their rows are recomputed.
    affected = follower.sql(
        """
        SELECT subject_id FROM customer_curated_removed UNION SELECT subject_id FROM customer_curated_added
        UNION SELECT c.subject_id FROM (SELECT * FROM curated_then UNION ALL SELECT * FROM customer_curated) AS c
              WHERE c.email IN (SELECT user FROM accelerometer_trusted_removed)
                 OR c.serialNumber IN (SELECT serialNumber FROM step_trainer_trusted_removed)
        """,
        curated_then=follower.bases["customer_curated"],
        **changes,
    )
    new_steps, new_phones = changes["step_trainer_trusted_added"], changes["accelerometer_trusted_added"]
    # New pairs have a new step reading or a new phone reading, and pair only readings of one
    # time: the other side is read at those times only (one scan of each table), which is also
    # all that can explain a new row to the rules.
    times = follower.sql(
        "SELECT sensorReadingTime AS t FROM new_steps UNION SELECT timestamp FROM new_phones",
        new_steps=new_steps,
        new_phones=new_phones,
    )
    phones_then = follower.sql("SELECT * FROM accelerometer_trusted WHERE timestamp IN (SELECT t FROM times)", times=times)
    steps_then = follower.sql("SELECT * FROM step_trainer_trusted WHERE sensorReadingTime IN (SELECT t FROM times)", times=times)
    fresh = follower.sql(
        "SELECT * FROM with_new_steps UNION SELECT * FROM with_new_phones",
        with_new_steps=step.query(
            rules.MACHINE_LEARNING_CURATED, "customer_curated", step_trainer_trusted=new_steps, accelerometer_trusted=phones_then
        ),
        with_new_phones=step.query(
            rules.MACHINE_LEARNING_CURATED, "customer_curated", step_trainer_trusted=steps_then, accelerometer_trusted=new_phones
        ),
    )

    def recompute(keys):
        customers = follower.sql("SELECT * FROM customer_curated WHERE subject_id IN (SELECT subject_id FROM keys)", keys=keys)
        return step.query(rules.MACHINE_LEARNING_CURATED, "step_trainer_trusted", "accelerometer_trusted", customer_curated=customers)

    return follower.follow(
        key="subject_id", time="sensorReadingTime", distinct=False, affected=affected, fresh=fresh,
        recompute=recompute, recompute_all=everything,
        judge_with={"step_trainer_trusted": steps_then, "accelerometer_trusted": phones_then},
        metadata=metadata,
    )
