"""The trusted-zone rules, each one SQL text that DuckDB and Spark SQL both run.

`{since_consent: <condition>}` is the consent policy's clause (PrivacyPolicy.render): the
condition under the `since_consent` policy, so readings taken before the customer's
research-consent date are kept out as well, and TRUE under `any`. Each membership rule is a
predicate, used once to build the table and once more by its audit on what was written."""

# One row per e-mail, the most recently updated record winning (ties: the later landing
# line), and only then the consent filter, so a later withdrawal of consent is honoured.
CUSTOMER_TRUSTED = """
SELECT customerName, email, phone, birthDay, serialNumber, registrationDate, lastUpdateDate,
       shareWithResearchAsOfDate, shareWithPublicAsOfDate, shareWithFriendsAsOfDate
FROM (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY email
        ORDER BY lastUpdateDate DESC NULLS LAST, source_file DESC, source_line DESC
    ) AS recency
    FROM customer_landing
) AS latest
WHERE recency = 1 AND shareWithResearchAsOfDate IS NOT NULL
"""

# Accelerometer reading `a` belongs to a trusted customer.
ACCELEROMETER_READING_CONSENTED = """
EXISTS (
    SELECT 1 FROM customer_trusted AS c
    WHERE c.email = a.user
      AND {since_consent: a.timestamp >= c.shareWithResearchAsOfDate}
)
"""

# Customer `c`'s serial number is registered to someone else as well (the production system
# re-used serial numbers): it then does not say whose a reading is.
SERIAL_SHARED = """
EXISTS (
    SELECT 1 FROM customer_landing AS other
    WHERE other.serialNumber = c.serialNumber AND other.email <> c.email
)
"""

# Step trainer reading `s` belongs to the curated customer registered to its serial number;
# on a shared serial number, only when that customer's phone recorded at the same moment, so
# no reading of a non-consenting co-owner gets in. The second branch is limited to shared
# serial numbers, where it decides, so that only their customers' phone readings are joined.
# Written as two EXISTS, each subquery referring only to the query right around it: Spark
# SQL cannot resolve a reference two levels out (`s` from inside a subquery of `c`).
STEP_TRAINER_READING_CONSENTED = f"""
(
    EXISTS (
        SELECT 1 FROM customer_curated AS c
        WHERE c.serialNumber = s.serialNumber
          AND {{since_consent: s.sensorReadingTime >= c.shareWithResearchAsOfDate}}
          AND NOT {SERIAL_SHARED}
    )
    OR EXISTS (
        SELECT 1 FROM customer_curated AS c
        JOIN accelerometer_trusted AS a ON a.user = c.email
        WHERE c.serialNumber = s.serialNumber
          AND {{since_consent: s.sensorReadingTime >= c.shareWithResearchAsOfDate}}
          AND {SERIAL_SHARED}
          AND a.timestamp = s.sensorReadingTime
    )
)
"""

# A reading delivered twice is one reading.
ACCELEROMETER_TRUSTED = f"""
SELECT DISTINCT a.user, a.timestamp, a.x, a.y, a.z
FROM accelerometer_landing AS a
WHERE {ACCELEROMETER_READING_CONSENTED}
"""

# EXISTS, not JOIN: a serial number shared by several customers must not multiply readings.
STEP_TRAINER_TRUSTED = f"""
SELECT DISTINCT s.sensorReadingTime, s.serialNumber, s.distanceFromObject
FROM step_trainer_landing AS s
WHERE {STEP_TRAINER_READING_CONSENTED}
"""
