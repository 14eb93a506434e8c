"""The S3 settings, and the resources chosen from them (no server needed)."""

from __future__ import annotations

import pytest

from stedi_assets.definitions import resources_for
from stedi_assets.settings import Settings

S3 = {"STEDI_LAKE": "s3://lake-bucket/prod", "STEDI_SOURCE": "s3://course-bucket"}


def test_s3_settings_reach_the_lake_and_the_source() -> None:
    settings = Settings.from_env(
        {
            **S3,
            "STEDI_GLUE_DATABASE": "stedi",
            "STEDI_SOURCE_ANONYMOUS": "true",
            "STEDI_SOURCE_PREFIXES": " customer=customers/ ,step_trainer=step_trainer",
            "STEDI_S3_MAX_ATTEMPTS": "7",
            "STEDI_S3_TIMEOUT": "12.5",
        }
    )
    resources = resources_for(settings)
    lake, source = resources["lake"], resources["source"]
    assert lake.glue_database == "stedi"
    assert (lake.aws.max_attempts, lake.aws.timeout_seconds, lake.aws.anonymous) == (7, 12.5, False)
    assert (source.aws.max_attempts, source.aws.anonymous) == (7, True)  # unsigned reads: the source only
    assert source.prefixes == {"customer": "customers", "step_trainer": "step_trainer"}


def test_glue_is_off_unless_a_database_is_named() -> None:
    assert resources_for(Settings.from_env(S3))["lake"].glue_database is None


def test_unsafe_commits_are_refused_unless_the_setting_allows_them() -> None:
    lake = resources_for(Settings.from_env(S3))["lake"]
    assert lake.allow_unconditional_writes is False
    assert lake.unconditional_writes_setting == "STEDI_S3_ALLOW_UNSAFE_COMMITS=true"  # named in the probe's error
    allowed = resources_for(Settings.from_env({**S3, "STEDI_S3_ALLOW_UNSAFE_COMMITS": "true"}))["lake"]
    assert allowed.allow_unconditional_writes is True


@pytest.mark.parametrize(
    "env, message",
    [
        ({"STEDI_GLUE_DATABASE": "stedi", "STEDI_LAKE": "lake_folder"}, "not an s3:// location"),
        ({"STEDI_SOURCE_PREFIXES": "customers=customers"}, "STEDI_SOURCE_PREFIXES"),
        ({"STEDI_SOURCE_PREFIXES": "customer="}, "STEDI_SOURCE_PREFIXES"),
        ({"STEDI_SOURCE_ANONYMOUS": "sometimes"}, "STEDI_SOURCE_ANONYMOUS"),
        ({"STEDI_S3_MAX_ATTEMPTS": "0"}, "must be positive"),
        ({"STEDI_S3_TIMEOUT": "soon"}, "not a number"),
        ({"STEDI_S3_ALLOW_UNSAFE_COMMITS": "maybe"}, "STEDI_S3_ALLOW_UNSAFE_COMMITS"),
    ],
)
def test_bad_s3_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resources_for(Settings.from_env(env))
