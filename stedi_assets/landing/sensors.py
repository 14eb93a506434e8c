"""New landing files flow in on their own: one sensor per source.

Every `interval` seconds (STEDI_SENSOR_INTERVAL, default 30) each sensor lists its source
(a folder, or every page of an S3 prefix) and compares it with the ledger of the published
landing table, in the lake: not with a cursor of its own, so a run that failed, or files
that another run already ingested, are seen as they are. If files are new or changed it
requests a run of that landing asset, with a run key made from the files and their
identities, so the same arrivals are requested once; otherwise it skips, saying why. A
landing table that reads another (step_trainer_landing reads customer_landing for the serial
numbers of erased people) is not requested before that one is published: a run that could
only fail would spend the run key of those arrivals. Downstream tables follow by declarative
automation (definitions.py).
"""

from __future__ import annotations

import dagster as dg

from stedi_assets.audit import Audit
from stedi_assets.lake.errors import TableNotPublishedError
from stedi_assets.landing.ledger import arrivals
from stedi_assets.landing.source import NoLandingFilesError
from stedi_assets.tables import TABLES


def landing_sensor(
    audit: Audit, asset: dg.AssetsDefinition, interval: int, default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    """The sensor of the landing table that `asset` builds and `audit` judges."""
    table, ledger = audit.table, audit.ledger
    assert ledger is not None
    waits_for = [TABLES[key.to_user_string()] for key in sorted(asset.dependency_keys)]

    @dg.sensor(
        name=f"{table.source}_arrivals",
        description=(
            f"Requests a run of {table.name} when files of {table.source} arrive or change in the source "
            f"(compared with {ledger.name} in the lake); downstream tables follow by automation."
        ),
        minimum_interval_seconds=interval,
        default_status=default_status,
        asset_selection=[dg.AssetKey(table.name)],
        required_resource_keys={"lake", "source"},
    )
    def _arrivals(context: dg.SensorEvaluationContext):
        lake = context.resources.lake.lake()
        for upstream in waits_for:
            try:
                lake.current(upstream.spec)
            except TableNotPublishedError:
                return dg.SkipReason(f"{table.name} waits for {upstream.name} to be published (it reads it)")
        try:
            found = arrivals(context.resources.source, lake, table, ledger)
        except NoLandingFilesError as error:
            return dg.SkipReason(str(error))
        if not found.to_parse:
            gone = f"; {len(found.gone)} gone from the source (their rows are kept)" if found.gone else ""
            return dg.SkipReason(f"{table.source}: all {len(found.entries)} files already ingested{gone}")
        return dg.RunRequest(
            run_key=f"{table.source}-{found.run_key()}",
            asset_selection=[dg.AssetKey(table.name)],
            tags={"stedi/arrivals": f"{len(found.new)} new, {len(found.changed)} changed"},
        )

    return _arrivals
