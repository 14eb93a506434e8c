"""Curated-zone audits: the ML table pairs one customer's readings and names no one."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from stedi_assets.audit import Audit, Rule, duplicates
from stedi_assets.erasure import EMAIL, SUBJECT, not_erased
from stedi_assets.curated import rules
from stedi_assets.engine import Relation
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.tables import ACCELEROMETER_TRUSTED, CUSTOMER_CURATED, MACHINE_LEARNING_CURATED, PERSONAL, STEP_TRAINER_TRUSTED


def _identifier_columns(relations: Mapping[str, Relation], privacy: PrivacyPolicy) -> pa.Table:
    """Columns of the table, as readers see them, named like a direct identifier or a device
    id (a serial number leads straight back to the customer record)."""
    table = relations[MACHINE_LEARNING_CURATED.name]
    schema = table.schema if isinstance(table, pa.Table) else table.dataset().schema
    found = sorted(n for n in schema.names if n.lower() in {i.lower() for i in PERSONAL})
    return pa.table({"column": pa.array(found, pa.string())})


CUSTOMER_CURATED_AUDIT = Audit(
    CUSTOMER_CURATED,
    (
        Rule(
            "email_unique",
            "One row per e-mail.",
            sql="SELECT email, COUNT(*) AS copies FROM customer_curated GROUP BY email HAVING COUNT(*) > 1",
        ),
        Rule(
            "has_accelerometer_data",
            "Every customer has at least one accelerometer_trusted reading.",
            sql="""
                SELECT c.email FROM customer_curated AS c
                WHERE NOT EXISTS (SELECT 1 FROM accelerometer_trusted AS a WHERE a.user = c.email)
                """,
        ),
        not_erased((CUSTOMER_CURATED.name, "email", EMAIL)),
    ),
    reads=(ACCELEROMETER_TRUSTED,),
)

MACHINE_LEARNING_CURATED_AUDIT = Audit(
    MACHINE_LEARNING_CURATED,
    (
        Rule(
            "same_customer",
            "Every row pairs a step trainer reading and an accelerometer reading of one and the same curated "
            "customer, taken at the same time. A full build is this zone's rule over the inputs the check reads, "
            "staged as it came: met by construction, not joined again; an increment and a published version are "
            "judged by the SQL.",
            # What was built, less every pairing the rule allows: nothing may remain.
            met_by=rules.MACHINE_LEARNING_CURATED,
            sql=f"""
                SELECT subject_id, sensorReadingTime FROM (
                    SELECT {", ".join(MACHINE_LEARNING_CURATED.column_names)} FROM machine_learning_curated
                    EXCEPT {rules.MACHINE_LEARNING_CURATED}
                ) AS unexplained
                """,
        ),
        Rule(
            "no_direct_identifiers",
            "No column holds a name, e-mail, phone number, birthday or serial number.",
            evaluate=_identifier_columns,
        ),
        Rule(
            "no_duplicate_rows",
            "No row appears twice.",
            sql=duplicates(
                MACHINE_LEARNING_CURATED.name, MACHINE_LEARNING_CURATED.column_names, report=["subject_id", "sensorReadingTime"]
            ),
        ),
        not_erased((MACHINE_LEARNING_CURATED.name, "subject_id", SUBJECT)),
    ),
    reads=(CUSTOMER_CURATED, STEP_TRAINER_TRUSTED, ACCELEROMETER_TRUSTED),
)
