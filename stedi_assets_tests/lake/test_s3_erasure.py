"""The right to erasure on an S3 lake (moto server): on a copy of the session's S3 lake (two
versions of every table: its first run and the full rerun), `stedi forget` one consenting
customer who has ML rows, then one run: every table loses exactly their rows, and no object
under the lake (Parquet decoded, every other object as text) holds their e-mail, name or
serial number, compared after NFKC, case folding and whitespace removal; no version awaits
the purge."""

from __future__ import annotations

from pathlib import Path

import pytest

from stedi_assets_tests.conftest import CliLakehouse, run_cli
from stedi_assets_tests.lake.conftest import LAKE_BUCKET, SOURCE_BUCKET, Rerun
from stedi_assets_tests.lake.s3_server import MotoServer, aws_env, copy_prefix, keys
from stedi_assets_tests.test_privacy import counts, file_texts, normalized, traces

pytestmark = [pytest.mark.s3, pytest.mark.reference]


def every_text_in(server: MotoServer, uri: str) -> str:
    """Every object under `uri` as text, as `every_text_under` gives a folder's."""
    client = server.client("s3")
    texts = []
    for key_uri in keys(server, uri):
        bucket, _, key = key_uri.removeprefix("s3://").partition("/")
        texts += file_texts(key, client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return normalized("\n".join(texts))


def test_forget_erases_a_person_from_every_object_of_an_s3_lake(
    s3_server: MotoServer, s3_lakehouse: CliLakehouse, s3_rerun: Rerun, aws_via, tmp_path: Path
):
    lake_uri = f"s3://{LAKE_BUCKET}/erasure"
    copy_prefix(s3_server, s3_lakehouse.env["STEDI_LAKE"], lake_uri)
    lakehouse = CliLakehouse(tmp_path, f"s3://{SOURCE_BUCKET}/reference", STEDI_LAKE=lake_uri, **aws_env(s3_server.url))  # type: ignore[arg-type]
    [person] = lakehouse.sql(
        "SELECT c.email, c.customerName, c.serialNumber, c.subject_id FROM customer_curated c "
        "WHERE EXISTS (SELECT 1 FROM machine_learning_curated m WHERE m.subject_id = c.subject_id) ORDER BY c.email LIMIT 1"
    )
    theirs = {
        "customer_landing": f"lower(trim(email)) = '{person['email']}'",
        "accelerometer_landing": f"lower(trim(user)) = '{person['email']}'",
        "step_trainer_landing": f"serialNumber = '{person['serialNumber']}'",
        "accelerometer_trusted": f"user = '{person['email']}'",
        "machine_learning_curated": f"subject_id = '{person['subject_id']}'",
    }
    before, their_rows = counts(lakehouse, {t: "TRUE" for t in theirs}), counts(lakehouse, theirs)
    assert all(their_rows.values())
    [spelled] = lakehouse.sql(f"SELECT DISTINCT email FROM customer_landing WHERE {theirs['customer_landing']}")

    run_cli(["stedi", "forget", person["email"]], lakehouse.env, tmp_path)
    aws_via(s3_server.url)  # this process's clients too: the run is in process
    assert lakehouse.run().success

    assert counts(lakehouse, {t: "TRUE" for t in theirs}) == {t: before[t] - their_rows[t] for t in theirs}
    stored = every_text_in(s3_server, lake_uri)
    for spelling in (person["email"], spelled["email"]):
        assert traces(stored, {**person, "email": spelling}) == []
    assert "awaiting-purge" not in lakehouse.stedi("versions", "accelerometer_landing").stdout
