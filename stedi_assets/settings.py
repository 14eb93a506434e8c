"""Every setting of the lakehouse, read from the environment in this one place: each field of
`Settings` names its variable, its default and how its value is checked. README.md's settings
table and docs/s3-and-aws.md say what each one means."""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import click

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.errors import without_userinfo
from stedi_assets.tables import TABLES

LANDING_SOURCES = tuple(t.source for t in TABLES.values() if t.zone == "landing")
SAMPLE_SOURCE = Path(__file__).parent / "sample_data"
DEVELOPMENT_SUBJECT_KEY = "stedi-development-subject-key-NOT-FOR-PRODUCTION"
SUBJECT_KEY_VARIABLE = "STEDI_SUBJECT_KEY"
UNSAFE_COMMITS_VARIABLE = "STEDI_S3_ALLOW_UNSAFE_COMMITS"
ENGINES = ("duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[*]"
DEFAULT_RETENTION_HOURS = 168

# What a value must match in full. A Spark master: this machine's cores, a standalone cluster,
# YARN (EMR) or Kubernetes (docs/spark.md); an amount of memory as DuckDB writes it.
SPARK_MASTER_URL = r"local(\[(\*|\d+)(,\d+)?\])?|spark://[^\s/]+|yarn|k8s://\S+"
MEMORY_AMOUNT = r"(?i)[0-9]+(\.[0-9]+)?\s*([KMGT]i?B)"
WHOLE_NUMBER = r"[0-9]+"
FLAGS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


class SettingsError(click.ClickException, ValueError):
    """A setting that cannot be used: the message names it and says what to do. A click
    exception, so `stedi` and the `dagster` commands report it in one line and exit 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(without_userinfo(message))  # a location setting may carry a password

    def show(self, file=None) -> None:
        click.echo(f"stedi: {self.format_message()}", file=file or sys.stderr)


class ConsentPolicy(str, enum.Enum):
    """Which readings of a consenting customer may enter the trusted zone."""

    ANY = "any"  # every reading of a customer who consented (the seeds' rule)
    SINCE_CONSENT = "since_consent"  # only readings taken at or after the consent date


def _matching(pattern: str, expected: str, name: str, value: str, convert: Callable[[str], Any] = str) -> Any:
    """`value`, stripped, refused unless all of it matches `pattern`; `expected` says what it
    should be, and what to do."""
    if not re.fullmatch(pattern, value := value.strip()):
        raise SettingsError(f"{name}={value!r} is not {expected}")
    return convert(value)


def _choice(allowed: Iterable[str], name: str, value: str) -> str:
    """The one of `allowed` (names, or a str enum's members) that `value` names, in any case."""
    named = [a for a in allowed if a == value.strip().lower()]
    if not named:
        raise SettingsError(f"{name}={value.strip()!r} is not one of: {', '.join(allowed)}")
    return named[0]


def _flag(name: str, value: str) -> bool:
    return FLAGS[_choice(FLAGS, name, value)]


def _positive(kind: type[int] | type[float], name: str, value: str) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number: set it to a positive number") from None
    if number <= 0:
        raise SettingsError(f"{name}={value!r} must be positive: set it to a positive number")
    return number


def _folder(name: str, location: str) -> str:
    """Refuse a local location that names a file (or lies under one) before anything is built
    there: the nearest existing path must be a folder. An s3:// location is checked when opened."""
    if location.startswith("s3://"):
        return location
    path = Path(location).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SettingsError(
            f"{name}={location} {'is' if existing == path else 'lies under'} a file, not a folder: "
            "set it to a folder (created if missing) or an s3:// location"
        )
    return location


def _source_prefixes(name: str, value: str) -> dict[str, str]:
    """`customer=customers,accelerometer=accelerometer`: the folder of each source under
    STEDI_SOURCE, for buckets laid out otherwise than `<source>/` (the course bucket)."""
    prefixes = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        source, _, folder = pair.partition("=")
        source, folder = source.strip(), folder.strip().strip("/")
        if source not in LANDING_SOURCES or not folder:
            raise SettingsError(f"{name}: {pair!r} is not <source>=<folder> with a source among {', '.join(LANDING_SOURCES)}")
        prefixes[source] = folder
    return prefixes


_spark_url = partial(_matching, SPARK_MASTER_URL, "a Spark master URL: set it to local[*], spark://host:port, yarn or k8s://...")
_memory = partial(_matching, MEMORY_AMOUNT, "an amount of memory: write it as 512MB, 1GB or 2GiB")
_hours = partial(_matching, WHOLE_NUMBER, "a whole number of hours: set it to 0 or more", convert=int)
_count = partial(_positive, int)
_seconds = partial(_positive, float)


def _setting(variable: str, default: str | None, read: Callable[[str, str], Any] = lambda name, value: value, **options) -> Any:
    """A field read from `variable` (`default` if unset or empty) by `read(variable, value)`."""
    return field(metadata={"setting": (variable, default, read)}, **options)


@dataclass(frozen=True)
class Settings:
    source: str = _setting("STEDI_SOURCE", str(SAMPLE_SOURCE))
    lake: str = _setting("STEDI_LAKE", "stedi_lake", _folder)
    consent_policy: ConsentPolicy = _setting("STEDI_CONSENT_POLICY", "any", partial(_choice, ConsentPolicy))
    subject_key: str = _setting(SUBJECT_KEY_VARIABLE, DEVELOPMENT_SUBJECT_KEY, repr=False)  # a secret: never in a repr or log
    engine: str = _setting("STEDI_ENGINE", ENGINES[0], partial(_choice, ENGINES))
    spark_master: str = _setting("STEDI_SPARK_MASTER", DEFAULT_SPARK_MASTER, _spark_url)
    source_anonymous: bool = _setting("STEDI_SOURCE_ANONYMOUS", "false", _flag)
    source_prefixes: Mapping[str, str] = _setting("STEDI_SOURCE_PREFIXES", "", _source_prefixes)
    glue_database: str | None = _setting("STEDI_GLUE_DATABASE", None)
    s3_max_attempts: int = _setting("STEDI_S3_MAX_ATTEMPTS", "5", _count)
    s3_timeout_seconds: float = _setting("STEDI_S3_TIMEOUT", "30", _seconds)
    s3_allow_unsafe_commits: bool = _setting(UNSAFE_COMMITS_VARIABLE, "false", _flag)
    retention_hours: int = _setting("STEDI_RETENTION_HOURS", str(DEFAULT_RETENTION_HOURS), _hours)
    sensor_interval_seconds: int = _setting("STEDI_SENSOR_INTERVAL", "30", _count)
    automation: bool = _setting("STEDI_AUTOMATION", "true", _flag)
    memory_limit: str = _setting("STEDI_MEMORY_LIMIT", "1GB", _memory)
    spill_directory: str | None = _setting("STEDI_SPILL_DIRECTORY", None)

    def __post_init__(self) -> None:
        if self.glue_database and not self.lake.startswith("s3://"):
            raise SettingsError(
                f"STEDI_GLUE_DATABASE={self.glue_database} registers tables on S3, but STEDI_LAKE={self.lake} is not an "
                "s3:// location: set STEDI_LAKE to s3://bucket/prefix, or unset STEDI_GLUE_DATABASE"
            )

    def aws_access(self, anonymous: bool = False) -> AwsAccess:
        """The S3 and Glue access of the lake, or (`anonymous` for an unsigned source) of the source."""
        unsafe = f"{UNSAFE_COMMITS_VARIABLE}=true"
        return AwsAccess(self.s3_max_attempts, self.s3_timeout_seconds, anonymous, self.s3_allow_unsafe_commits, unsafe)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            variable, default, read = setting.metadata["setting"]
            value = env.get(variable) or default
            values[setting.name] = None if value is None else read(variable, value)
        return cls(**values)
