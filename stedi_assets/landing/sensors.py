"""New landing files flow in on their own: one sensor per source, comparing its listing with the
ledger in the lake, not a cursor of its own, so a failed run or files another run ingested are
seen as they are (docs/ingestion.md, "The sensors and the automation")."""

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
