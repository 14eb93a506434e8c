"""STEDI Human Balance Analytics lakehouse: landing -> trusted -> curated, as Dagster assets.

Importing the package builds nothing: the Definitions live in `stedi_assets.definitions`
(`dagster ... -m stedi_assets.definitions`), so the lake library and the `stedi` command load
without Dagster."""
