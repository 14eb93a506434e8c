"""Trusted: only customers who consented to research, and only their readings.

Each table follows its inputs by declarative automation (`eager`), from what changed
(incremental.py): customer_trusted is small and rebuilt; the readings tables add the new
landing rows' results and recompute the keys whose consent or ownership changed."""

from __future__ import annotations

import functools
from collections import Counter

import dagster as dg

from stedi_assets.incremental import Follower, rebuilt
from stedi_assets.privacy import mask
from stedi_assets.publishing import REBUILD_AT, AssetStep, Build, audited_asset
from stedi_assets.tables import (
    ACCELEROMETER_LANDING, ACCELEROMETER_TRUSTED, CUSTOMER_LANDING, CUSTOMER_TRUSTED, STEP_TRAINER_LANDING, STEP_TRAINER_TRUSTED,
)
from stedi_assets.trusted import checks, rules

# The trusted and curated tables' steps: built after any input changes, once none is missing or
# still being written.
zone_asset = functools.partial(audited_asset, kinds={"sql", "delta"}, automation_condition=dg.AutomationCondition.eager())
trusted_asset = functools.partial(zone_asset, group="trusted")


@trusted_asset(checks.CUSTOMER_TRUSTED_AUDIT, inputs=[CUSTOMER_LANDING])
def customer_trusted(step: AssetStep) -> Build:
    """Customers who consented to research, one row per person key (stored as `email`): the
    latest record of each, kept only if it unambiguously gives research consent dated at or
    before the run. Consent in doubt means out (docs/privacy.md); the metadata counts those
    held out by reason. Rebuilt when customer_landing changes, and when a future consent falls due."""
    metadata = {"consent_policy": step.privacy.consent_policy.value}
    due = {}

    def build():
        held_out = step.query(rules.CUSTOMERS_HELD_OUT, "customer_landing", "customer_landing_rejects")
        reasons = Counter(held_out["reason"].to_pylist())
        metadata.update(
            held_out_for_doubt=held_out.num_rows,
            held_out_by_reason=dg.MetadataValue.json(dict(reasons.most_common())),
            held_out_sample=dg.MetadataValue.json(
                [{"email": mask("email", r["person_key"]), "reason": r["reason"]} for r in held_out.slice(0, 10).to_pylist()]
            ),
        )
        [next_due] = step.query(rules.NEXT_CONSENT_DUE, "customer_landing", "customer_landing_rejects")["due"].to_pylist()
        if next_due is not None:
            due[REBUILD_AT] = next_due
        return step.query(rules.CUSTOMER_TRUSTED, "customer_landing", "customer_landing_rejects")

    built = rebuilt(Follower(step, CUSTOMER_TRUSTED, [rules.CUSTOMER_TRUSTED]), build, metadata=metadata)
    built.info = {**built.info, **due}
    return built


@trusted_asset(checks.ACCELEROMETER_TRUSTED_AUDIT, inputs=[ACCELEROMETER_LANDING])
def accelerometer_trusted(step: AssetStep) -> Build:
    """Accelerometer readings of customer_trusted customers, whatever the spelling of the
    e-mail in `user` (stored as the customer's person key), under the `since_consent` policy
    only those taken at or after the customer's consent date; each reading once."""
    metadata = {"consent_policy": step.privacy.consent_policy.value}
    follower = Follower(step, ACCELEROMETER_TRUSTED, [rules.ACCELEROMETER_TRUSTED])

    def everything():
        return step.stage(ACCELEROMETER_TRUSTED, rules.ACCELEROMETER_TRUSTED, "accelerometer_landing", "customer_trusted")

    if not follower.usable:
        # Met by construction: checks.ACCELEROMETER_TRUSTED_AUDIT's reading_unique.
        return follower.full(everything(), metadata, built_with=rules.ACCELEROMETER_TRUSTED)
    if follower.inputs_unchanged:
        return follower.unchanged(metadata)
    changes = follower.changed("accelerometer_landing", "customer_trusted")
    # Customers whose consent changed, and the users of removed landing rows (another copy of
    # a removed reading may remain: DISTINCT): their readings are recomputed.
    affected = follower.sql(
        """
        SELECT email AS user FROM customer_trusted_removed UNION SELECT email FROM customer_trusted_added
        UNION SELECT person_key FROM accelerometer_landing_removed
        """,
        **changes,
    )
    readings = changes["accelerometer_landing_added"]

    def recompute(users):
        landing = follower.sql("SELECT * FROM accelerometer_landing WHERE person_key IN (SELECT user FROM users)", users=users)
        return step.query(rules.ACCELEROMETER_TRUSTED, "customer_trusted", accelerometer_landing=landing)

    return follower.follow(
        key="user", time="timestamp", distinct=True, affected=affected, recompute=recompute, recompute_all=everything,
        fresh=step.query(rules.ACCELEROMETER_TRUSTED, "customer_trusted", accelerometer_landing=readings),
        metadata=metadata,
    )


@trusted_asset(checks.STEP_TRAINER_TRUSTED_AUDIT, inputs=[STEP_TRAINER_LANDING])
def step_trainer_trusted(step: AssetStep) -> Build:
    """Step trainer readings whose serial number belongs to a customer_curated customer (under
    `since_consent`, taken at or after their consent date). On a serial number shared with others
    or named by a rejected line, a reading counts only if that customer's phone recorded at the same moment."""
    metadata = {"consent_policy": step.privacy.consent_policy.value}
    inputs = ("customer_curated", "customer_landing", "customer_landing_rejects", "accelerometer_trusted")
    follower = Follower(step, STEP_TRAINER_TRUSTED, [rules.STEP_TRAINER_TRUSTED])

    def everything():
        return step.stage(STEP_TRAINER_TRUSTED, rules.STEP_TRAINER_TRUSTED, "step_trainer_landing", *inputs)

    if not follower.usable:
        return follower.full(everything(), metadata)
    if follower.inputs_unchanged:
        return follower.unchanged(metadata)
    changes = follower.changed("step_trainer_landing", *inputs)
    # Serial numbers whose curated owner, consent or registrations changed, those of removed
    # landing rows, and shared ones whose owner's phone readings changed (on a shared serial
    # number they decide which step readings count).
    affected = follower.sql(
        f"""{rules.STEP_TRAINER_OWNERS}
        SELECT serialNumber FROM customer_curated_removed UNION SELECT serialNumber FROM customer_curated_added
        UNION SELECT serialNumber FROM customer_landing_removed UNION SELECT serialNumber FROM customer_landing_added
        UNION SELECT serialNumber FROM step_trainer_landing_removed
        UNION SELECT c.serialNumber FROM customer_curated AS c WHERE EXISTS (
                  SELECT 1 FROM customer_landing_rejects_removed AS r WHERE array_contains(r.named_serials, c.serialNumber))
              OR EXISTS (SELECT 1 FROM customer_landing_rejects_added AS r WHERE array_contains(r.named_serials, c.serialNumber))
        UNION SELECT c.serialNumber FROM owner AS c WHERE c.shared AND c.email IN (
            SELECT user FROM accelerometer_trusted_removed UNION SELECT user FROM accelerometer_trusted_added)
        """,
        **changes,
    )
    # The only phone readings a step reading can be matched with: those at its time.
    readings = changes["step_trainer_landing_added"]
    phones_then = follower.sql(
        "SELECT * FROM accelerometer_trusted WHERE timestamp IN (SELECT sensorReadingTime FROM new_readings)",
        new_readings=readings,
    )

    def recompute(serials):
        sql = "SELECT * FROM step_trainer_landing WHERE serialNumber IN (SELECT serialNumber FROM serials)"
        landing = follower.sql(sql, serials=serials)
        return step.query(rules.STEP_TRAINER_TRUSTED, *inputs, step_trainer_landing=landing)

    return follower.follow(
        key="serialNumber", time="sensorReadingTime", distinct=True, affected=affected,
        recompute=recompute, recompute_all=everything,
        # The phone readings at the new readings' times stand in for the whole input.
        fresh=step.query(rules.STEP_TRAINER_TRUSTED, *inputs, step_trainer_landing=readings, accelerometer_trusted=phones_then),
        judge_with={"accelerometer_trusted": phones_then},
        metadata=metadata,
    )
