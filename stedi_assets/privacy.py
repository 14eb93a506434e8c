"""The privacy settings and the pseudonymous subject key, in one place."""

from __future__ import annotations

import hashlib
import hmac
import re

import dagster as dg
import pyarrow as pa

from stedi_assets.settings import DEVELOPMENT_SUBJECT_KEY, ConsentPolicy
from stedi_assets.tables import DIRECT_IDENTIFIERS

# `{since_consent: <condition>}`: the consent policy's clause in a rule.
_SINCE_CONSENT = re.compile(r"\{since_consent:\s*([^{}]+?)\s*\}")


class PrivacyPolicy(dg.ConfigurableResource):
    """Which readings of consenting customers may be used, and the secret of the subject key."""

    consent_policy: ConsentPolicy = ConsentPolicy.ANY
    subject_key: str = DEVELOPMENT_SUBJECT_KEY

    @property
    def since_consent(self) -> bool:
        return self.consent_policy == ConsentPolicy.SINCE_CONSENT

    @property
    def uses_development_key(self) -> bool:
        return self.subject_key == DEVELOPMENT_SUBJECT_KEY

    def render(self, sql: str) -> str:
        """A rule's SQL under this policy: each `{since_consent: <condition>}` becomes the
        condition, or TRUE under `any`. A literal TRUE, not a policy flag in the SQL
        (`NOT FALSE OR ...`): DuckDB does not fold that away, and it turns a correlated EXISTS
        into a join several times slower."""
        return _SINCE_CONSENT.sub(lambda clause: f"({clause[1]})" if self.since_consent else "TRUE", sql)

    def subject_ids(self, emails: pa.Array | pa.ChunkedArray) -> pa.Array:
        """HMAC-SHA256 of each e-mail: stable across runs, not reversible without the key."""
        key = self.subject_key.encode()
        return pa.array(
            [None if e is None else hmac.new(key, e.encode(), hashlib.sha256).hexdigest() for e in emails.to_pylist()],
            pa.string(),
        )


def mask(column: str, value: object) -> object:
    """Shows enough of a direct identifier to find it, not enough to read it."""
    if column not in DIRECT_IDENTIFIERS or not isinstance(value, str):
        return value
    local, at, domain = value.partition("@")
    return f"{local[:2]}***{at}{domain}"
