"""The privacy settings and the pseudonymous subject key, in one place."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

import pyarrow as pa

from stedi_assets.person import EMAIL_SHAPED
from stedi_assets.settings import DEFAULT_RETENTION_HOURS, DEVELOPMENT_SUBJECT_KEY, ConsentPolicy
from stedi_assets.tables import PERSONAL, RESCUED_DATA

# `{since_consent: <condition>}`: the consent policy's clause in a rule.
_SINCE_CONSENT = re.compile(r"\{since_consent:\s*([^{}]+?)\s*\}")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class PrivacyPolicy:
    """Which readings of consenting customers may be used, the secret of the subject key, and
    how long personal data of replaced versions is kept."""

    consent_policy: ConsentPolicy = ConsentPolicy.ANY
    subject_key: str = field(default=DEVELOPMENT_SUBJECT_KEY, repr=False)  # a secret: never in a repr or log
    # How long a replaced version stays in a table's history (and can be rolled back to).
    retention_hours: int = DEFAULT_RETENTION_HOURS

    def __post_init__(self) -> None:
        object.__setattr__(self, "consent_policy", ConsentPolicy(self.consent_policy))  # "any" as well as ANY

    @property
    def since_consent(self) -> bool:
        return self.consent_policy == ConsentPolicy.SINCE_CONSENT

    @property
    def uses_development_key(self) -> bool:
        return self.subject_key == DEVELOPMENT_SUBJECT_KEY

    def render(self, sql: str, as_of: int | None = None) -> str:
        """A rule's SQL under this policy, judging consent as of `as_of` (its `{as_of}`, epoch ms;
        default: now; consent dated later is no consent yet). A literal TRUE under `any`, not a
        policy flag in the SQL: DuckDB does not fold that away, and it turns a correlated EXISTS
        into a join several times slower."""
        rendered = _SINCE_CONSENT.sub(lambda clause: f"({clause[1]})" if self.since_consent else "TRUE", sql)
        return rendered.replace("{as_of}", str(now_ms() if as_of is None else as_of))

    def subject_ids(self, email_keys: pa.Array | pa.ChunkedArray) -> pa.Array:
        """HMAC-SHA256 of each person key (stedi_assets/person.py): stable across runs and
        spellings, not reversible without the key."""
        key = self.subject_key.encode()
        digests = [None if e is None else hmac.new(key, e.encode(), hashlib.sha256).hexdigest() for e in email_keys.to_pylist()]
        return pa.array(digests, pa.string())


def mask(column: str, value: object) -> object:
    """Shows enough of a personal value to find it, not enough to read it: two characters
    and the e-mail domain (`an***@test.com`, `An***`); a raw line only by its length."""
    if column in PERSONAL and isinstance(value, list):  # every name a rejected line names
        return [mask(column, v) for v in value]
    if column not in PERSONAL or not isinstance(value, str):
        return value
    if column in ("raw", RESCUED_DATA.name):
        return f"<{len(value)} characters>"
    local, at, domain = value.partition("@")
    return f"{local[:2]}***{at}{domain}"


def scrub(text: str) -> str:
    """`text` with anything shaped like an e-mail address masked, for free text that goes to
    Dagster (reject reasons quote the values they reject)."""
    return EMAIL_SHAPED.sub(lambda m: mask("email", m[0]), text)  # type: ignore[arg-type]
