"""Landing files on S3: a public bucket in the course's layout, read without credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import CliLakehouse
from stedi_assets_tests.lake.conftest import LAKE_BUCKET
from stedi_assets_tests.lake.fault_proxy import FaultProxy
from stedi_assets_tests.lake.s3_server import MotoServer, aws_env, ensure_bucket, upload

pytestmark = pytest.mark.s3

PUBLIC_BUCKET = "stedi-public"
# Like the course bucket's: anyone may list and read, without credentials.
PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{PUBLIC_BUCKET}", f"arn:aws:s3:::{PUBLIC_BUCKET}/*"],
        }
    ],
}


def test_a_public_bucket_in_the_course_layout_is_read_unsigned(
    s3_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    client = s3_server.client("s3")
    upload(client, SAMPLE_SOURCE, PUBLIC_BUCKET, "course", rename={"customer": "customers"})
    client.put_bucket_policy(Bucket=PUBLIC_BUCKET, Policy=json.dumps(PUBLIC_READ))
    ensure_bucket(client, LAKE_BUCKET)
    lakehouse = CliLakehouse(
        tmp_path,
        f"s3://{PUBLIC_BUCKET}/course",  # type: ignore[arg-type]  # an S3 URI, not a folder
        STEDI_LAKE=f"s3://{LAKE_BUCKET}/course",
        STEDI_SOURCE_ANONYMOUS="true",
        STEDI_SOURCE_PREFIXES="customer=customers",
        **aws_env(fault_proxy.url),
    )
    lakehouse.materialize("group:landing")

    source = [s for s in fault_proxy.seen if s.path.startswith(f"/{PUBLIC_BUCKET}")]
    lake = [s for s in fault_proxy.seen if s.path.startswith(f"/{LAKE_BUCKET}")]
    assert source and not any(s.signed for s in source)
    assert lake and all(s.signed for s in lake)  # anonymous is for the source only

    [row] = lakehouse.sql(
        "SELECT (SELECT COUNT(*) FROM customer_landing) + (SELECT COUNT(*) FROM customer_landing_rejects) AS lines, "
        "(SELECT MIN(source_file) FROM customer_landing) AS first_file"
    )
    assert row["lines"] == _non_blank_lines(SAMPLE_SOURCE / "customer")
    assert row["first_file"].startswith("customers/")


def _non_blank_lines(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.json") for line in p.read_text().splitlines() if line.strip())
