"""Every setting of the lakehouse, read from the environment in this one place."""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.errors import without_userinfo
from stedi_assets.tables import TABLES

LANDING_SOURCES = tuple(t.source for t in TABLES.values() if t.zone == "landing")
SAMPLE_SOURCE = Path(__file__).parent / "sample_data"
DEFAULT_LAKE = "stedi_lake"
DEVELOPMENT_SUBJECT_KEY = "stedi-development-subject-key-NOT-FOR-PRODUCTION"
SUBJECT_KEY_VARIABLE = "STEDI_SUBJECT_KEY"
UNSAFE_COMMITS_VARIABLE = "STEDI_S3_ALLOW_UNSAFE_COMMITS"
ENGINES = ("duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[*]"
DEFAULT_RETENTION_HOURS = 168


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


@dataclass(frozen=True)
class Settings:
    source: str
    lake: str
    consent_policy: ConsentPolicy
    subject_key: str = field(repr=False)  # a secret: never in a repr or log
    engine: str = "duckdb"
    spark_master: str = DEFAULT_SPARK_MASTER  # where STEDI_ENGINE=spark runs: this machine or a cluster
    source_anonymous: bool = False  # read an s3:// source unsigned, e.g. a public bucket
    source_prefixes: Mapping[str, str] = field(default_factory=dict)  # source -> its folder under STEDI_SOURCE
    glue_database: str | None = None  # register every published table in this Glue database
    s3_max_attempts: int = 5
    s3_timeout_seconds: float = 30.0
    s3_allow_unsafe_commits: bool = False  # write to a store that ignores conditional PUTs
    retention_hours: int = DEFAULT_RETENTION_HOURS  # replaced versions are vacuumed once this old
    sensor_interval_seconds: int = 30  # how often the sensors list the source and automation looks for updates
    automation: bool = True  # sensors and automation on by default under the daemon (dagster dev)
    memory_limit: str = "1GB"  # what DuckDB may hold before it spills (docs/benchmarks.md)
    spill_directory: str | None = None  # where it spills; default: the system's temp folder

    def aws_access(self, anonymous: bool = False) -> AwsAccess:
        """The S3 and Glue access of the lake, or (`anonymous` for an unsigned source) of the source."""
        unsafe = f"{UNSAFE_COMMITS_VARIABLE}=true"
        return AwsAccess(self.s3_max_attempts, self.s3_timeout_seconds, anonymous, self.s3_allow_unsafe_commits, unsafe)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        consent_policy = ConsentPolicy(_choice(env, "STEDI_CONSENT_POLICY", [p.value for p in ConsentPolicy]))
        engine = _choice(env, "STEDI_ENGINE", list(ENGINES))
        lake = env.get("STEDI_LAKE") or DEFAULT_LAKE
        _folder(lake, "STEDI_LAKE")
        glue_database = env.get("STEDI_GLUE_DATABASE") or None
        if glue_database and not lake.startswith("s3://"):
            raise SettingsError(
                f"STEDI_GLUE_DATABASE={glue_database} registers tables on S3, but STEDI_LAKE={lake} is not an s3:// "
                "location: set STEDI_LAKE to s3://bucket/prefix, or unset STEDI_GLUE_DATABASE"
            )
        return cls(
            source=env.get("STEDI_SOURCE") or str(SAMPLE_SOURCE),
            lake=lake,
            consent_policy=consent_policy,
            subject_key=env.get(SUBJECT_KEY_VARIABLE) or DEVELOPMENT_SUBJECT_KEY,
            engine=engine,
            # This machine's cores, a standalone cluster, YARN (EMR) or Kubernetes (docs/spark.md).
            spark_master=_setting(
                env, "STEDI_SPARK_MASTER", DEFAULT_SPARK_MASTER, r"local(\[(\*|\d+)(,\d+)?\])?|spark://[^\s/]+|yarn|k8s://\S+",
                "a Spark master URL: set it to local[*], spark://host:port, yarn or k8s://...",
            ),
            source_anonymous=_flag(env, "STEDI_SOURCE_ANONYMOUS"),
            source_prefixes=_source_prefixes(env.get("STEDI_SOURCE_PREFIXES") or ""),
            glue_database=glue_database,
            s3_max_attempts=int(_number(env, "STEDI_S3_MAX_ATTEMPTS", 5)),
            s3_timeout_seconds=_number(env, "STEDI_S3_TIMEOUT", 30.0),
            s3_allow_unsafe_commits=_flag(env, UNSAFE_COMMITS_VARIABLE),
            retention_hours=int(
                _setting(
                    env, "STEDI_RETENTION_HOURS", str(DEFAULT_RETENTION_HOURS), "[0-9]+", "a whole number of hours: set it to 0 or more"
                )
            ),
            sensor_interval_seconds=int(_number(env, "STEDI_SENSOR_INTERVAL", 30)),
            automation=_flag(env, "STEDI_AUTOMATION", default="true"),
            # As DuckDB writes it (docs/benchmarks.md).
            memory_limit=_setting(
                env, "STEDI_MEMORY_LIMIT", "1GB", r"(?i)[0-9]+(\.[0-9]+)?\s*([KMGT]i?B)",
                "an amount of memory: write it as 512MB, 1GB or 2GiB",
            ),
            spill_directory=env.get("STEDI_SPILL_DIRECTORY") or None,
        )


def _setting(env: Mapping[str, str], name: str, default: str, pattern: str, expected: str) -> str:
    """`name`'s value (`default` if unset or empty), stripped, refused unless all of it matches
    `pattern`; `expected` says what it should be, and what to do."""
    value = (env.get(name) or default).strip()
    if not re.fullmatch(pattern, value):
        raise SettingsError(f"{name}={value!r} is not {expected}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: list[str]) -> str:
    """A setting that names one of `allowed` (the first is its default), in any case."""
    listed = ", ".join(allowed)
    return _setting(env, name, allowed[0], f"(?i){'|'.join(allowed)}", f"one of: {listed}").lower()


def _flag(env: Mapping[str, str], name: str, default: str = "false") -> bool:
    value = _setting(env, name, default, "(?i)true|1|yes|false|0|no", "true or false: set it to true or false")
    return value.lower() in {"true", "1", "yes"}


def _folder(location: str, name: str) -> None:
    """Refuse a local location that names a file (or lies under one) before anything is built
    there: the nearest existing path must be a folder. An s3:// location is checked when opened."""
    if location.startswith("s3://"):
        return
    path = Path(location).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SettingsError(
            f"{name}={location} {'is' if existing == path else 'lies under'} a file, not a folder: "
            "set it to a folder (created if missing) or an s3:// location"
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        number = type(default)(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number: set it to a positive number") from None
    if number <= 0:
        raise SettingsError(f"{name}={value!r} must be positive: set it to a positive number")
    return number


def _source_prefixes(value: str) -> dict[str, str]:
    """`customer=customers,accelerometer=accelerometer`: the folder of each source under
    STEDI_SOURCE, for buckets laid out otherwise than `<source>/` (the course bucket)."""
    prefixes = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        source, _, folder = pair.partition("=")
        source, folder = source.strip(), folder.strip().strip("/")
        if source not in LANDING_SOURCES or not folder:
            raise SettingsError(
                f"STEDI_SOURCE_PREFIXES: {pair!r} is not <source>=<folder> with a source among {', '.join(LANDING_SOURCES)}"
            )
        prefixes[source] = folder
    return prefixes
