"""The one Definitions of the lakehouse. Resources are chosen here, from the environment."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from stedi_assets.curated import assets as curated_assets
from stedi_assets.engine.resource import engine_resource
from stedi_assets.io_manager import DeltaLakeIOManager
from stedi_assets.lakehouse import AUDITS
from stedi_assets.landing import assets as landing_assets
from stedi_assets.landing.sensors import landing_sensor
from stedi_assets.resources.aws import AwsConfig
from stedi_assets.resources.lake import LakeResource
from stedi_assets.resources.privacy import PrivacyResource
from stedi_assets.resources.source import LandingSourceResource
from stedi_assets.settings import DEVELOPMENT_SUBJECT_KEY, SUBJECT_KEY_VARIABLE, UNSAFE_COMMITS_VARIABLE, Settings
from stedi_assets.trusted import assets as trusted_assets

lakehouse_job = dg.define_asset_job(
    "stedi_lakehouse",
    selection=dg.AssetSelection.all(),
    description="Materializes every zone table, landing -> trusted -> curated, each audited by its blocking checks.",
    # The job's page in the UI lists only runs tagged with its `<repository>@<location>`; a run
    # started from the command line (`dg launch`) belongs to no code location and would not
    # show there. `stedi` is the location workspace.yaml and pyproject.toml name.
    tags={".dagster/repository": "__repository__@stedi"},
)


def aws_config(settings: Settings, anonymous: bool = False) -> AwsConfig:
    return AwsConfig(max_attempts=settings.s3_max_attempts, timeout_seconds=settings.s3_timeout_seconds, anonymous=anonymous)


def resources_for(settings: Settings) -> Mapping[str, object]:
    lake = LakeResource(
        root=settings.lake,
        aws=aws_config(settings),
        glue_database=settings.glue_database,
        allow_unconditional_writes=settings.s3_allow_unsafe_commits,
        unconditional_writes_setting=f"{UNSAFE_COMMITS_VARIABLE}=true",
    )
    # The secret as a dg.EnvVar (see PrivacyResource); the development default is no secret.
    subject_key = settings.subject_key if settings.subject_key == DEVELOPMENT_SUBJECT_KEY else dg.EnvVar(SUBJECT_KEY_VARIABLE)
    return {
        "lake": lake,
        "io_manager": DeltaLakeIOManager(lake=lake),
        "source": LandingSourceResource(
            root=settings.source, prefixes=dict(settings.source_prefixes), aws=aws_config(settings, settings.source_anonymous)
        ),
        "engine": engine_resource(settings),
        "privacy": PrivacyResource(
            consent_policy=settings.consent_policy, subject_key=subject_key, retention_hours=settings.retention_hours
        ),
    }


def sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """A sensor per landing source, and the automation that updates the tables downstream of what
    changed: on wherever the daemon runs (`dagster dev`) unless STEDI_AUTOMATION=false."""
    status = dg.DefaultSensorStatus.RUNNING if settings.automation else dg.DefaultSensorStatus.STOPPED
    interval = settings.sensor_interval_seconds
    return [
        *(landing_sensor(AUDITS[name], asset, interval, status) for name, asset in landing_assets.BY_TABLE.items()),
        dg.AutomationConditionSensorDefinition(
            "stedi_automation",
            target=dg.AssetSelection.all(),
            default_status=status,
            minimum_interval_seconds=interval,
            description="Materializes trusted and curated tables after their inputs change (AutomationCondition.eager).",
        ),
    ]


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        # Each asset carries its blocking checks (publishing.py): loading the assets loads them.
        assets=dg.load_assets_from_modules([landing_assets, trusted_assets, curated_assets]),
        jobs=[lakehouse_job],
        sensors=sensors(settings),
        resources=resources_for(settings),
        # One process: DuckDB already uses every core, and a subprocess per step would cost
        # more than most steps take.
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
