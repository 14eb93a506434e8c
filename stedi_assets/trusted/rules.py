"""The trusted-zone rules, each one SQL text that DuckDB and Spark SQL both run.

Consent in doubt means out (docs/privacy.md, "Who is trusted"): a customer is one person key,
computed at landing (no rule computes a key of its own, so every engine compares alike), trusted
only if their latest record unambiguously gives research consent dated at or before the run
(`{as_of}`). `{since_consent: <condition>}` is the consent policy's clause
(PrivacyPolicy.render). Each membership rule is a predicate, used once to build the table and
once more by its audit on what was built."""

# From the trusted zone on, an e-mail is its person key: one spelling per customer.
CUSTOMER_COLUMNS = (
    "customerName, person AS email, phone, birthDay, serialNumber, registrationDate, lastUpdateDate, "
    "shareWithResearchAsOfDate, shareWithPublicAsOfDate, shareWithFriendsAsOfDate"
)
CONSENTED = "consented"
NO_CONSENT = "no consent"

# The consent verdict of every customer of customer_landing, one row per person: `latest` (each
# customer's records at their latest update) and `consent` (CONSENTED, NO_CONSENT, or why consent
# is in doubt). Records without a person key are one person '', held out. `named`: customers a
# rejected customer line names. `registered`: the latest registration date the latest records
# claim (privacy wins where they disagree).
_CONSENT_VERDICT = f"""
WITH record AS (
    SELECT *, COALESCE(person_key, '') AS person FROM customer_landing
),
customer AS (
    SELECT person, COUNT(*) AS records, COUNT(lastUpdateDate) AS dated, MAX(lastUpdateDate) AS latest_update
    FROM record GROUP BY person
),
latest AS (
    SELECT r.* FROM record AS r JOIN customer AS c ON c.person = r.person
    WHERE r.lastUpdateDate = c.latest_update OR c.latest_update IS NULL
),
latest_consent AS (
    SELECT person,
           MAX(shareWithResearchAsOfDate) AS consent_date,
           COUNT(DISTINCT shareWithResearchAsOfDate)
             + MAX(CASE WHEN shareWithResearchAsOfDate IS NULL THEN 1 ELSE 0 END) AS consent_values,
           MAX(registrationDate) AS registered
    FROM latest GROUP BY person
),
named AS (
    SELECT c.person FROM customer AS c
    WHERE EXISTS (SELECT 1 FROM customer_landing_rejects AS r WHERE array_contains(r.named_person_keys, c.person))
),
consent AS (
    SELECT c.person,
           CASE
               WHEN c.person = '' THEN 'no usable e-mail address'
               WHEN n.person IS NOT NULL THEN 'a rejected customer line names the e-mail'
               WHEN c.records > 1 AND c.dated < c.records THEN 'records cannot be ordered: one has no lastUpdateDate'
               WHEN v.consent_values > 1 THEN 'latest records disagree on consent'
               WHEN v.consent_date IS NULL THEN '{NO_CONSENT}'
               WHEN v.consent_date <= 0 THEN 'consent dated at or before the epoch'
               WHEN v.consent_date < v.registered THEN 'consent dated before registration'
               WHEN v.consent_date > {{as_of}} THEN 'consent dated after the run'
               ELSE '{CONSENTED}'
           END AS verdict
    FROM customer AS c
    JOIN latest_consent AS v ON v.person = c.person
    LEFT JOIN named AS n ON n.person = c.person
)
"""

# One row per consenting customer: their latest record (ties between records that agree on
# consent: the later landing line).
CUSTOMER_TRUSTED = f"""{_CONSENT_VERDICT}
SELECT {CUSTOMER_COLUMNS}
FROM (
    SELECT l.*, ROW_NUMBER() OVER (
        PARTITION BY l.person ORDER BY l.source_file DESC, l.source_line DESC
    ) AS recency
    FROM latest AS l JOIN consent AS k ON k.person = l.person
    WHERE k.verdict = '{CONSENTED}'
) AS winner
WHERE recency = 1
"""

# Customers held out because their consent is in doubt (not those who simply gave none), and why.
CUSTOMERS_HELD_OUT = f"""{_CONSENT_VERDICT}
SELECT person AS person_key, verdict AS reason FROM consent WHERE verdict NOT IN ('{CONSENTED}', '{NO_CONSENT}')
"""

# The earliest consent date after the run among customers' latest records: when customer_trusted
# must be built again though nothing it reads has changed (NULL: none).
NEXT_CONSENT_DUE = f"""{_CONSENT_VERDICT}
SELECT MIN(consent_date) AS due FROM latest_consent WHERE consent_date > {{as_of}}
"""

# Rows of customer_trusted whose consent the landing records do not unambiguously give.
CUSTOMER_CONSENT_IN_DOUBT = f"""{_CONSENT_VERDICT}
SELECT t.email, COALESCE(k.verdict, 'not in customer_landing') AS verdict
FROM customer_trusted AS t LEFT JOIN consent AS k ON k.person = t.email
WHERE k.verdict IS NULL OR k.verdict <> '{CONSENTED}'
"""

# Accelerometer reading `a` belongs to a trusted customer: its `user` is a person key (the
# landing table's `person_key`, as ACCELEROMETER_TRUSTED renames it, or accelerometer_trusted's).
ACCELEROMETER_READING_CONSENTED = """
EXISTS (
    SELECT 1 FROM customer_trusted AS c
    WHERE c.email = a.user
      AND {since_consent: a.timestamp >= c.shareWithResearchAsOfDate}
)
"""

# The owners of step trainers, small tables computed once per query from customer_landing grouped
# by serial number (not asked again for each reading). `owner`: each customer_curated customer's
# serial number, consent date, and whether it is `shared`, so that it does not say whose a reading
# is: registered to someone else as well (the production system re-used serial numbers; a record
# without a person key is someone else), named by a rejected customer line (owner unknown), or of
# an unknown e-mail (in doubt). `sole_owner`: each serial number not shared, with its owners'
# earliest consent. `phone_moment`: each moment the phone of a shared serial number's owner
# recorded, with those owners' earliest consent: the only moments a step reading on it is theirs.
STEP_TRAINER_OWNERS = """
WITH registration AS (
    SELECT serialNumber, COUNT(*) AS records, COUNT(person_key) AS keyed,
           COUNT(DISTINCT person_key) AS people, MIN(person_key) AS person
    FROM customer_landing GROUP BY serialNumber
),
named_serial AS (
    SELECT DISTINCT c.serialNumber FROM customer_curated AS c
    JOIN customer_landing_rejects AS r ON array_contains(r.named_serials, c.serialNumber)
),
owner AS (
    SELECT c.email, c.serialNumber, c.shareWithResearchAsOfDate,
           COALESCE(
               n.serialNumber IS NOT NULL
               OR (g.serialNumber IS NOT NULL AND (g.people > 1 OR g.keyed < g.records OR g.person <> c.email)),
               TRUE
           ) AS shared
    FROM customer_curated AS c
    LEFT JOIN registration AS g ON g.serialNumber = c.serialNumber
    LEFT JOIN named_serial AS n ON n.serialNumber = c.serialNumber
),
sole_owner AS (
    SELECT serialNumber, MIN(shareWithResearchAsOfDate) AS shareWithResearchAsOfDate
    FROM owner WHERE NOT shared GROUP BY serialNumber
),
phone_moment AS (
    SELECT c.serialNumber, a.timestamp, MIN(c.shareWithResearchAsOfDate) AS shareWithResearchAsOfDate
    FROM owner AS c JOIN accelerometer_trusted AS a ON a.user = c.email
    WHERE c.shared
    GROUP BY c.serialNumber, a.timestamp
)
"""

# Step trainer reading `s` belongs to the curated customer registered to its serial number; on a
# shared one, only when that customer's phone recorded at the same moment (no reading of a
# non-consenting co-owner gets in). STEP_TRAINER_MATCH joins STEP_TRAINER_OWNERS' tables (one row
# per key: no reading multiplied; the consent clause in the join) and
# STEP_TRAINER_READING_CONSENTED is the verdict. Not EXISTS: DuckDB plans that as a delim join
# grouping every (serial number, time) of the readings first.
STEP_TRAINER_MATCH = """
LEFT JOIN sole_owner AS c
    ON c.serialNumber = s.serialNumber AND {since_consent: s.sensorReadingTime >= c.shareWithResearchAsOfDate}
LEFT JOIN phone_moment AS m
    ON m.serialNumber = s.serialNumber AND m.timestamp = s.sensorReadingTime
   AND {since_consent: s.sensorReadingTime >= m.shareWithResearchAsOfDate}
"""
STEP_TRAINER_READING_CONSENTED = "(c.serialNumber IS NOT NULL OR m.serialNumber IS NOT NULL)"

# A reading delivered twice is one reading, whatever the spelling of its e-mail.
ACCELEROMETER_TRUSTED = f"""
SELECT DISTINCT a.user, a.timestamp, a.x, a.y, a.z
FROM (SELECT person_key AS user, timestamp, x, y, z FROM accelerometer_landing) AS a
WHERE {ACCELEROMETER_READING_CONSENTED}
"""

# DISTINCT: a reading delivered twice is one reading.
STEP_TRAINER_TRUSTED = f"""{STEP_TRAINER_OWNERS}
SELECT DISTINCT s.sensorReadingTime, s.serialNumber, s.distanceFromObject
FROM step_trainer_landing AS s {STEP_TRAINER_MATCH}
WHERE {STEP_TRAINER_READING_CONSENTED}
"""
