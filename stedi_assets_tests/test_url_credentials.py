"""Credentials inside a URL setting (issue 20, #9): `AWS_ENDPOINT_URL=http://user:pass@host`
must not reach the console, the exception chain or Dagster's event log."""

from __future__ import annotations

import socket
import traceback
from pathlib import Path

import dagster as dg
import pytest

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.connect import open_lake
from stedi_assets.lake.errors import AwsRequestError, LakeError, without_userinfo
from stedi_assets.settings import SettingsError, Settings
from stedi_assets_tests.conftest import REPO, run_cli

PASSWORD = "pa55-w0rd"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ('endpoint URL: "http://user:pa55@127.0.0.1:9/b/k"', 'endpoint URL: "http://***@127.0.0.1:9/b/k"'),
        ("https://user:p@ss@host/x, then y@z.com", "https://***@host/x, then y@z.com"),  # the last @ of the host part
        ("S3 at http://token@host:1 (bucket b)", "S3 at http://***@host:1 (bucket b)"),
        ("s3://bucket/key@x and a@b.com, https://h/x?u=a@b", "s3://bucket/key@x and a@b.com, https://h/x?u=a@b"),
    ],
)
def test_without_userinfo_masks_only_credentials(text: str, masked: str):
    assert without_userinfo(text) == masked


def test_every_lake_and_settings_error_is_built_without_credentials():
    for error in (LakeError(f"at http://u:{PASSWORD}@h/b"), AwsRequestError(f"GET http://u:{PASSWORD}@h failed")):
        assert PASSWORD not in str(error) and "http://***@h" in str(error)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"STEDI_LAKE": "lake", "STEDI_GLUE_DATABASE": f"http://u:{PASSWORD}@h"})
    assert PASSWORD not in raised.value.format_message()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def endpoint_with_password(monkeypatch) -> str:
    endpoint = f"http://stedi:{PASSWORD}@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return endpoint


def test_a_failed_s3_call_names_the_endpoint_without_its_password(endpoint_with_password):
    lake = open_lake("s3://bucket/lake", AwsAccess(max_attempts=1, timeout_seconds=2))
    with pytest.raises(LakeError) as raised:
        lake.store.entries("customer/")
    whole = "".join(traceback.format_exception(raised.value))  # the chained causes too
    assert "127.0.0.1" in whole and PASSWORD not in whole


def test_the_console_and_the_event_log_never_show_the_password(endpoint_with_password, tmp_path: Path):
    env = {"STEDI_LAKE": "s3://bucket/lake", "STEDI_S3_MAX_ATTEMPTS": "1", "STEDI_S3_TIMEOUT": "2"}
    result = run_cli(["stedi", "versions", "customer_landing"], env, REPO, check=False)
    assert result.returncode != 0
    assert "Connection refused" in result.stderr and PASSWORD not in result.stdout + result.stderr

    from stedi_assets.definitions import build_definitions

    definitions = build_definitions(Settings.from_env({**env, "STEDI_SOURCE": str(tmp_path)}))
    (tmp_path / "customer").mkdir()
    (tmp_path / "customer" / "c.json").write_text('{"email": "a@test.com", "serialNumber": "s1"}\n')
    instance = dg.DagsterInstance.ephemeral()
    run = definitions.resolve_job_def("stedi_lakehouse").execute_in_process(instance=instance, raise_on_error=False)
    assert not run.success
    logged = repr([record for record in instance.all_logs(run.run_id)])
    assert "Connection refused" in logged and PASSWORD not in logged  # delta-rs quotes the URL, password and all
