"""STEDI Human Balance Analytics lakehouse: landing -> trusted -> curated, as Dagster assets."""

from stedi_assets.definitions import defs

__all__ = ["defs"]
