"""Every setting of the lakehouse, read from the environment in this one place."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.tables import TABLES

LANDING_SOURCES = tuple(t.source for t in TABLES.values() if t.zone == "landing")
SAMPLE_SOURCE = Path(__file__).parent / "sample_data"
DEFAULT_LAKE = "stedi_lake"
DEVELOPMENT_SUBJECT_KEY = "stedi-development-subject-key-NOT-FOR-PRODUCTION"
SUBJECT_KEY_VARIABLE = "STEDI_SUBJECT_KEY"
UNSAFE_COMMITS_VARIABLE = "STEDI_S3_ALLOW_UNSAFE_COMMITS"
ENGINES = ("duckdb", "spark")
DEFAULT_RETENTION_HOURS = 168


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
    source_anonymous: bool = False  # read an s3:// source unsigned, e.g. a public bucket
    source_prefixes: Mapping[str, str] = field(default_factory=dict)  # source -> its folder under STEDI_SOURCE
    glue_database: str | None = None  # register every published table in this Glue database
    s3_max_attempts: int = 5
    s3_timeout_seconds: float = 30.0
    s3_allow_unsafe_commits: bool = False  # write to a store that ignores conditional PUTs
    retention_hours: int = DEFAULT_RETENTION_HOURS  # replaced versions are vacuumed once this old
    sensor_interval_seconds: int = 30  # how often the sensors list the source and automation looks for updates
    automation: bool = True  # sensors and automation on by default under the daemon (dagster dev)

    @property
    def subject_key_is_set(self) -> bool:
        return self.subject_key != DEVELOPMENT_SUBJECT_KEY

    def aws_access(self, anonymous: bool = False) -> AwsAccess:
        """The S3 and Glue access of the lake, or (`anonymous` for an unsigned source) of the source."""
        return AwsAccess(
            self.s3_max_attempts,
            self.s3_timeout_seconds,
            anonymous,
            self.s3_allow_unsafe_commits,
            f"{UNSAFE_COMMITS_VARIABLE}=true",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        policy = env.get("STEDI_CONSENT_POLICY") or ConsentPolicy.ANY.value
        try:
            consent_policy = ConsentPolicy(policy)
        except ValueError:
            allowed = ", ".join(p.value for p in ConsentPolicy)
            raise ValueError(f"STEDI_CONSENT_POLICY={policy!r} is not one of: {allowed}") from None
        engine = (env.get("STEDI_ENGINE") or "duckdb").strip().lower()
        if engine not in ENGINES:
            raise ValueError(f"STEDI_ENGINE={env.get('STEDI_ENGINE')!r} is not one of: {', '.join(ENGINES)}")
        lake = env.get("STEDI_LAKE") or DEFAULT_LAKE
        glue_database = env.get("STEDI_GLUE_DATABASE") or None
        if glue_database and not lake.startswith("s3://"):
            raise ValueError(
                f"STEDI_GLUE_DATABASE={glue_database} registers tables on S3, but STEDI_LAKE={lake} is not an s3:// location"
            )
        return cls(
            source=env.get("STEDI_SOURCE") or str(SAMPLE_SOURCE),
            lake=lake,
            consent_policy=consent_policy,
            subject_key=env.get(SUBJECT_KEY_VARIABLE) or DEVELOPMENT_SUBJECT_KEY,
            engine=engine,
            source_anonymous=_flag(env, "STEDI_SOURCE_ANONYMOUS"),
            source_prefixes=_source_prefixes(env.get("STEDI_SOURCE_PREFIXES") or ""),
            glue_database=glue_database,
            s3_max_attempts=int(_number(env, "STEDI_S3_MAX_ATTEMPTS", 5)),
            s3_timeout_seconds=_number(env, "STEDI_S3_TIMEOUT", 30.0),
            s3_allow_unsafe_commits=_flag(env, UNSAFE_COMMITS_VARIABLE),
            retention_hours=_hours(env, "STEDI_RETENTION_HOURS", DEFAULT_RETENTION_HOURS),
            sensor_interval_seconds=int(_number(env, "STEDI_SENSOR_INTERVAL", 30)),
            automation=_flag(env, "STEDI_AUTOMATION", default="true"),
        )


def _flag(env: Mapping[str, str], name: str, default: str = "false") -> bool:
    value = (env.get(name) or default).strip().lower()
    if value not in {"true", "1", "yes", "false", "0", "no"}:
        raise ValueError(f"{name}={env[name]!r} is not true or false")
    return value in {"true", "1", "yes"}


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        number = type(default)(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    return number


def _hours(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    if not value.strip().isdigit():
        raise ValueError(f"{name}={value!r} is not a whole number of hours (0 or more)")
    return int(value)


def _source_prefixes(value: str) -> dict[str, str]:
    """`customer=customers,accelerometer=accelerometer`: the folder of each source under
    STEDI_SOURCE, for buckets laid out otherwise than `<source>/` (the course bucket)."""
    prefixes = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        source, _, folder = pair.partition("=")
        source, folder = source.strip(), folder.strip().strip("/")
        if source not in LANDING_SOURCES or not folder:
            raise ValueError(
                f"STEDI_SOURCE_PREFIXES: {pair!r} is not <source>=<folder> with a source among {', '.join(LANDING_SOURCES)}"
            )
        prefixes[source] = folder
    return prefixes
