"""The curated-zone rules, each one SQL text that DuckDB and Spark SQL both run. They read
only trusted tables, whose e-mails are person keys (computed at landing, stedi_assets/person.py):
plain equality compares them."""

CUSTOMER_CURATED = """
SELECT c.*
FROM customer_trusted AS c
WHERE EXISTS (SELECT 1 FROM accelerometer_trusted AS a WHERE a.user = c.email)
"""

# The same customer on both sides: serial number -> customer -> e-mail = accelerometer user.
# Joining on the timestamp alone (the course rubric's 43,681 rows) pairs strangers' readings.
MACHINE_LEARNING_CURATED = """
SELECT c.subject_id, s.sensorReadingTime, s.distanceFromObject, a.x, a.y, a.z
FROM step_trainer_trusted AS s
JOIN customer_curated AS c ON c.serialNumber = s.serialNumber
JOIN accelerometer_trusted AS a ON a.user = c.email AND a.timestamp = s.sensorReadingTime
"""
