"""`python -m bench`: the lakehouse timed side by side with the seeds' Spark jobs and a Dagster floor."""
