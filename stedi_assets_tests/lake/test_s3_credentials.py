"""Credentials: only the standard AWS chain, and the secret never shows, even when wrong.

A moto server of its own, with signature checking on: every request must be signed with the
secret of a known IAM user's key."""

from __future__ import annotations

import re

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.errors import LakeError
from stedi_assets.lake.s3_store import S3Store

from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import CliLakehouse, run_cli
from stedi_assets_tests.lake.conftest import LAKE_BUCKET, SOURCE_BUCKET
from stedi_assets_tests.lake.s3_server import MotoServer, aws_env, ensure_bucket, upload

pytestmark = pytest.mark.s3

WRONG_SECRET = "stedi-wrong-secret-0c4e1b"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def signed_only(no_aws_settings: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, str, str]]:
    """The server, and the key id and secret of its one IAM user."""
    with MotoServer(tmp_path_factory.mktemp("moto_auth") / "moto.log") as server:
        iam = server.client("iam")
        iam.create_user(UserName="stedi")
        iam.put_user_policy(UserName="stedi", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
        key = iam.create_access_key(UserName="stedi")["AccessKey"]
        s3 = server.client("s3")
        upload(s3, SAMPLE_SOURCE, SOURCE_BUCKET, "sample")
        ensure_bucket(s3, LAKE_BUCKET)
        server.require_signed_requests()
        yield server, key["AccessKeyId"], key["SecretAccessKey"]


def _lakehouse(tmp_path: Path, server: MotoServer, key_id: str, secret: str) -> CliLakehouse:
    return CliLakehouse(
        tmp_path,
        f"s3://{SOURCE_BUCKET}/sample",  # type: ignore[arg-type]  # an S3 URI, not a folder
        STEDI_LAKE=f"s3://{LAKE_BUCKET}/credentials",
        DAGSTER_HOME=str(tmp_path / "dagster_home"),  # keep the run's event log and metadata to search
        **aws_env(server.url, key_id, secret),
    )


def _stored_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def landed(signed_only, tmp_path_factory: pytest.TempPathFactory):
    """The landing tables run with the right key (a lake for the wrong key to read)."""
    server, key_id, secret = signed_only
    root = tmp_path_factory.mktemp("right_key")
    (root / "dagster_home").mkdir()
    lakehouse = _lakehouse(root, server, key_id, secret)
    return root, lakehouse, lakehouse.materialize("group:landing")


def test_the_right_key_runs_and_its_secret_is_nowhere(signed_only, landed) -> None:
    secret = signed_only[2]
    root, lakehouse, result = landed
    assert lakehouse.count("customer_landing") > 0
    assert secret not in result.stdout + result.stderr
    assert secret not in _stored_text(root / "dagster_home")


def test_a_wrong_secret_fails_clearly_without_showing_it(signed_only, landed, tmp_path: Path) -> None:
    server, key_id, secret = signed_only
    (tmp_path / "dagster_home").mkdir()
    lakehouse = _lakehouse(tmp_path, server, key_id, WRONG_SECRET)

    run = lakehouse.materialize("group:landing", check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    # The first request refused names its object: the erasure requests in the lake (read
    # before anything else) or the landing source.
    assert re.search(rf"s3://({SOURCE_BUCKET}|{LAKE_BUCKET})/\S+.*SignatureDoesNotMatch", output)
    assert "check the AWS credentials" in output

    # stedi sql reads the log through delta-rs: its 403 is told the same way.
    query = run_cli(["stedi", "sql", "SELECT COUNT(*) FROM customer_landing"], lakehouse.env, tmp_path, check=False)
    assert query.returncode == 1
    assert f"s3://{LAKE_BUCKET}/credentials/customer/landing" in query.stderr
    assert "403 SignatureDoesNotMatch" in query.stderr and "check the AWS credentials" in query.stderr
    assert "Traceback" not in query.stderr and "<Error>" not in query.stderr and "\x1b[" not in query.stderr

    for text in (output, query.stdout + query.stderr, _stored_text(tmp_path / "dagster_home")):
        assert WRONG_SECRET not in text and secret not in text


def test_delta_rs_errors_for_a_wrong_secret_name_the_object_and_hide_the_secret(signed_only) -> None:
    """delta-rs's own texts, and ours made from them, for a read and for a commit."""
    server, key_id, secret = signed_only
    spec = TableSpec("readings", f"delta-errors-{uuid.uuid4().hex[:8]}", pa.schema([("t", pa.int64())]))
    good_store = S3Store(server.client("s3", access_key=key_id, secret_key=secret), LAKE_BUCKET, "credentials")
    wrong = {**server.storage_options(), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": WRONG_SECRET}
    lake = Lake(good_store, storage_options={**wrong, "max_retries": "1"})
    uri = lake.uri(spec.location)

    with pytest.raises(Exception) as raw:
        DeltaTable(uri, storage_options=wrong)
    with pytest.raises(LakeError) as read:
        lake.current(spec)
    with pytest.raises(LakeError) as commit:
        lake.write(spec, pa.table({"t": [1]}), {"run_id": "r1"})

    assert good_store.list(spec.location) == []
    for error in (read.value, commit.value):
        message = str(error)
        assert f"{uri}/_delta_log/" in message and "403 SignatureDoesNotMatch" in message, message
        assert "check the AWS credentials" in message and "\n" not in message
    # delta-rs's raw text carries the store's XML error body; neither it nor ours has a secret.
    for text in (str(raw.value), str(read.value), str(commit.value)):
        assert WRONG_SECRET not in text and secret not in text
