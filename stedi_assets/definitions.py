"""The one Definitions of the lakehouse. Resources are chosen here, from the environment."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from stedi_assets.curated import assets as curated_assets
from stedi_assets.curated import checks as curated_checks
from stedi_assets.engine.resource import DuckDBEngineResource, SqlEngineResource
from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.io_manager import ParquetLakeIOManager
from stedi_assets.lake.resource import LakeResource
from stedi_assets.landing import assets as landing_assets
from stedi_assets.landing import checks as landing_checks
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import Settings
from stedi_assets.trusted import assets as trusted_assets
from stedi_assets.trusted import checks as trusted_checks

ZONE_ASSETS = (landing_assets, trusted_assets, curated_assets)
ZONE_CHECKS = (landing_checks, trusted_checks, curated_checks)

lakehouse_job = dg.define_asset_job(
    "stedi_lakehouse",
    selection=dg.AssetSelection.all(),
    description="Materializes every zone table, landing -> trusted -> curated, with all blocking audits.",
)


def resources_for(settings: Settings) -> Mapping[str, object]:
    """The deployment is the lake and source URIs: a folder, or `s3://` (see lake/store.py),
    and on S3 the optional Glue catalog (lake/glue.py)."""
    lake = LakeResource.from_settings(settings)
    return {
        "lake": lake,
        "io_manager": ParquetLakeIOManager(lake=lake),
        "source": LandingSource(
            root=settings.source,
            prefixes=dict(settings.source_prefixes),
            aws=AwsAccess.from_settings(settings, anonymous=settings.source_anonymous),
        ),
        "engine": _engine(settings),
        "privacy": PrivacyPolicy(consent_policy=settings.consent_policy, subject_key=settings.subject_key),
    }


def _engine(settings: Settings) -> SqlEngineResource:
    if settings.engine == "spark":
        from stedi_assets.engine.spark_engine import SparkEngineResource  # pyspark only when chosen

        return SparkEngineResource()
    return DuckDBEngineResource()


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ZONE_ASSETS),
        # load_assets_from_modules does not pick up checks.
        asset_checks=dg.load_asset_checks_from_modules(ZONE_CHECKS),
        jobs=[lakehouse_job],
        resources=resources_for(settings),
        # One process: DuckDB already uses every core, and a subprocess per step would cost
        # more than most steps take.
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
