"""Every setting of the lakehouse, read from the environment in this one place."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SOURCE = Path(__file__).parent / "sample_data"
DEFAULT_LAKE = "stedi_lake"
DEVELOPMENT_SUBJECT_KEY = "stedi-development-subject-key-NOT-FOR-PRODUCTION"


class ConsentPolicy(str, enum.Enum):
    """Which readings of a consenting customer may enter the trusted zone."""

    ANY = "any"  # every reading of a customer who consented (the seeds' rule)
    SINCE_CONSENT = "since_consent"  # only readings taken at or after the consent date


@dataclass(frozen=True)
class Settings:
    source: str
    lake: str
    consent_policy: ConsentPolicy
    subject_key: str
    engine: str = "duckdb"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        policy = env.get("STEDI_CONSENT_POLICY") or ConsentPolicy.ANY.value
        try:
            consent_policy = ConsentPolicy(policy)
        except ValueError:
            allowed = ", ".join(p.value for p in ConsentPolicy)
            raise ValueError(f"STEDI_CONSENT_POLICY={policy!r} is not one of: {allowed}") from None
        return cls(
            source=env.get("STEDI_SOURCE") or str(SAMPLE_SOURCE),
            lake=env.get("STEDI_LAKE") or DEFAULT_LAKE,
            consent_policy=consent_policy,
            subject_key=env.get("STEDI_SUBJECT_KEY") or DEVELOPMENT_SUBJECT_KEY,
            engine=env.get("STEDI_ENGINE") or "duckdb",
        )
