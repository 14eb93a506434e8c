"""Trusted-zone audits: only consenting customers, and no reading counted twice."""

from __future__ import annotations

from stedi_assets.audit import Audit, Rule, duplicates
from stedi_assets.erasure import EMAIL, SERIAL, not_erased
from stedi_assets.tables import (
    ACCELEROMETER_TRUSTED, CUSTOMER_CURATED, CUSTOMER_LANDING, CUSTOMER_LANDING_REJECTS, CUSTOMER_TRUSTED,
    STEP_TRAINER_TRUSTED,
)
from stedi_assets.trusted import rules


CUSTOMER_TRUSTED_AUDIT = Audit(
    CUSTOMER_TRUSTED,
    (
        Rule(
            "consent_present",
            "Every customer has a research-consent date, at or before the run.",
            sql="SELECT email FROM customer_trusted WHERE shareWithResearchAsOfDate IS NULL OR shareWithResearchAsOfDate > {as_of}",
        ),
        Rule(
            "consent_unambiguous",
            "Every customer's landing records unambiguously give consent: the latest can be told "
            "and agree, and no rejected customer line names the e-mail.",
            sql=rules.CUSTOMER_CONSENT_IN_DOUBT,
        ),
        Rule(
            "email_unique_not_null",
            "One row per e-mail, and no row without one.",
            sql="SELECT email, COUNT(*) AS copies FROM customer_trusted GROUP BY email HAVING COUNT(*) > 1 OR email IS NULL",
        ),
        not_erased((CUSTOMER_TRUSTED.name, "email", EMAIL)),
    ),
    reads=(CUSTOMER_LANDING,),
    paired=(CUSTOMER_LANDING_REJECTS,),  # what a rejected customer line names counts for privacy
)

ACCELEROMETER_TRUSTED_AUDIT = Audit(
    ACCELEROMETER_TRUSTED,
    (
        Rule(
            "user_is_trusted_customer",
            "Every reading belongs to a customer_trusted e-mail (and, under since_consent, "
            "was taken at or after that customer's consent date).",
            sql=f"SELECT a.user, a.timestamp FROM accelerometer_trusted AS a WHERE NOT {rules.ACCELEROMETER_READING_CONSENTED}",
        ),
        Rule(
            "reading_unique",
            "No reading appears twice. A full build is the table's own SELECT DISTINCT of every column, staged "
            "as it came: met by construction, not grouped again; an increment and a published version are judged by the SQL.",
            met_by=rules.ACCELEROMETER_TRUSTED,
            sql=duplicates(ACCELEROMETER_TRUSTED.name, ACCELEROMETER_TRUSTED.column_names),
        ),
        not_erased((ACCELEROMETER_TRUSTED.name, "user", EMAIL)),
    ),
    reads=(CUSTOMER_TRUSTED,),
)

STEP_TRAINER_TRUSTED_AUDIT = Audit(
    STEP_TRAINER_TRUSTED,
    (
        Rule(
            "reading_key_unique",
            "(serialNumber, sensorReadingTime) is unique. Judged on the staged rows, not by the "
            "build's DISTINCT, which is over every column: two readings of one key that differ in "
            "distance would both pass it.",
            sql=duplicates(STEP_TRAINER_TRUSTED.name, ["serialNumber", "sensorReadingTime"]),
        ),
        Rule(
            "serial_belongs_to_curated_customer",
            "Every reading's serial number belongs to a customer_curated customer (under since_consent, the reading "
            "is from after that customer's consent date; on a serial number shared with other customers, that "
            "customer's phone recorded at the same moment). A privacy rule: judged on the staged rows, never taken "
            "from the build, over the owner tables the build joins (rules.STEP_TRAINER_OWNERS).",
            sql=(
                f"{rules.STEP_TRAINER_OWNERS} SELECT s.serialNumber, s.sensorReadingTime FROM step_trainer_trusted AS s "
                f"{rules.STEP_TRAINER_MATCH} WHERE NOT {rules.STEP_TRAINER_READING_CONSENTED}"
            ),
        ),
        not_erased((STEP_TRAINER_TRUSTED.name, "serialNumber", SERIAL)),
    ),
    reads=(CUSTOMER_CURATED, CUSTOMER_LANDING, ACCELEROMETER_TRUSTED),
    paired=(CUSTOMER_LANDING_REJECTS,),
)
