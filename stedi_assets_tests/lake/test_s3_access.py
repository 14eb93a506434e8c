"""How delta-rs reaches S3: with the endpoint, region and credentials that botocore's chain
resolved (AwsAccess.storage_options), so a profile, a session token or an instance role
work for the Delta log exactly as for boto3. Each test commits and reads a table through
the fault proxy and looks at what delta-rs's own requests carried."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.connect import open_lake
from stedi_assets.lake.delta import TableSpec
from stedi_assets.lake.s3_client import shared_client
from stedi_assets_tests.lake.conftest import LAKE_BUCKET
from stedi_assets_tests.lake.fault_proxy import FaultProxy
from stedi_assets_tests.lake.s3_server import MotoServer, ensure_bucket

pytestmark = pytest.mark.s3

SPEC = TableSpec("readings", "readings/trusted", pa.schema([("t", pa.int64())]))
DELTA_RS = "object_store"


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch, s3_server: MotoServer, tmp_path: Path):
    """A process environment with no AWS setting at all; each test adds its own."""
    ensure_bucket(s3_server.client("s3"), LAKE_BUCKET)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    shared_client.cache_clear()
    yield monkeypatch
    shared_client.cache_clear()


def _round_trip(proxy: FaultProxy) -> list:
    """Commit a table and read it back through a freshly opened lake; delta-rs's requests."""
    root, access = f"s3://{LAKE_BUCKET}/access-{uuid.uuid4().hex[:8]}", AwsAccess(max_attempts=2)
    open_lake(root, access).write(SPEC, pa.table({"t": [1, 2, 3]}), {"run_id": "r1"})
    assert open_lake(root, access).current(SPEC).to_arrow().num_rows == 3
    requests = [s for s in proxy.seen if DELTA_RS in (s.header("User-Agent") or "")]
    assert requests and all(s.path.startswith(f"/{LAKE_BUCKET}/") or s.path.startswith(f"/{LAKE_BUCKET}?") for s in requests)
    return requests


def _credential(request) -> str:
    """The access key id a request was signed with."""
    return (request.header("Authorization") or "").split("Credential=", 1)[1].split("/", 1)[0]


def test_a_profile_and_a_service_endpoint_without_any_region(chain, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A named profile's keys, AWS_ENDPOINT_URL_S3 (not the general one) and no region
    anywhere: delta-rs gets the keys and the endpoint botocore found, and us-east-1, path-style."""
    (tmp_path / "credentials").write_text("[stedi]\naws_access_key_id = AKIAPROFILEKEY000001\naws_secret_access_key = profile-secret\n")
    chain.setenv("AWS_PROFILE", "stedi")
    chain.setenv("AWS_ENDPOINT_URL_S3", fault_proxy.url)

    options = AwsAccess().storage_options()
    assert options["AWS_ENDPOINT_URL"] == fault_proxy.url and options["AWS_ALLOW_HTTP"] == "true"
    assert options["AWS_REGION"] == "us-east-1" and options["AWS_ACCESS_KEY_ID"] == "AKIAPROFILEKEY000001"
    assert (options["max_retries"], options["timeout"], options["connect_timeout"]) == ("4", "30s", "30s")
    requests = _round_trip(fault_proxy)
    assert {_credential(r) for r in requests} == {"AKIAPROFILEKEY000001"}
    assert all("/us-east-1/s3/aws4_request" in (r.header("Authorization") or "") for r in requests)


def test_a_region_from_the_profile_config_and_a_session_token(chain, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[default]\nregion = eu-west-3\n")
    chain.setenv("AWS_ENDPOINT_URL", fault_proxy.url)
    chain.setenv("AWS_ACCESS_KEY_ID", "ASIATEMPORARYKEY0001")
    chain.setenv("AWS_SECRET_ACCESS_KEY", "temporary-secret")
    chain.setenv("AWS_SESSION_TOKEN", "session-token-42")

    requests = _round_trip(fault_proxy)
    assert {r.header("x-amz-security-token") for r in requests} == {"session-token-42"}
    assert all("/eu-west-3/s3/aws4_request" in (r.header("Authorization") or "") for r in requests)


class _InstanceMetadata(BaseHTTPRequestHandler):
    """EC2's instance metadata service, as far as botocore asks it for a role's credentials."""

    ROLE = "stedi-pipeline"
    CREDENTIALS = {
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAINSTANCEROLE0001",
        "SecretAccessKey": "instance-secret",
        "Token": "instance-token-7",
        "Expiration": "2099-01-01T00:00:00Z",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:  # IMDSv2 session token
        self._send(b"imds-token")

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("security-credentials"):
            self._send(self.ROLE.encode())
        elif self.path.endswith(f"security-credentials/{self.ROLE}"):
            self._send(json.dumps(self.CREDENTIALS).encode())
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def instance_metadata() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InstanceMetadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_an_instance_role(chain, fault_proxy: FaultProxy, instance_metadata: str) -> None:
    chain.setenv("AWS_EC2_METADATA_DISABLED", "false")
    chain.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", instance_metadata)
    chain.setenv("AWS_ENDPOINT_URL", fault_proxy.url)
    chain.setenv("AWS_REGION", "us-east-1")

    requests = _round_trip(fault_proxy)
    assert {_credential(r) for r in requests} == {"ASIAINSTANCEROLE0001"}
    assert {r.header("x-amz-security-token") for r in requests} == {"instance-token-7"}


def test_on_aws_delta_rs_gets_the_region_and_no_endpoint(chain) -> None:
    """botocore's endpoint for AWS itself is left to delta-rs, which derives it from the region
    (the global endpoint botocore reports for us-east-1 would misroute other regions)."""
    chain.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000001")
    chain.setenv("AWS_SECRET_ACCESS_KEY", "example")
    chain.setenv("AWS_REGION", "eu-central-1")
    options = AwsAccess(max_attempts=3, timeout_seconds=12.5).storage_options()
    assert "AWS_ENDPOINT_URL" not in options and "AWS_ALLOW_HTTP" not in options
    assert options["AWS_REGION"] == "eu-central-1"
    assert (options["max_retries"], options["timeout"], options["connect_timeout"]) == ("2", "12.5s", "12.5s")
