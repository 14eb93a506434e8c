"""What a rejected landing line still says about a person, read from its raw text: tolerant on
purpose, since for privacy every name counts (docs/privacy.md says what is found)."""

from __future__ import annotations

import json
import re
import unicodedata

import pyarrow as pa

from stedi_assets.person import EMAIL_SHAPED, person_key
from stedi_assets.tables import EMAIL, NAMES, SERIAL

# The column of a rejected line holding what it names of each kind (erasure.py).
NAMED = {EMAIL: "named_person_keys", SERIAL: "named_serials"}

# A pair: the key in either quote style, any letter case, spaces inside the quotes; the value a
# string in either quote style, with its escapes.
_PAIR = re.compile(
    r"""(["'])\s*(email|user|serialnumber)\s*\1\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""",
    re.IGNORECASE,
)
_SERIAL_SHAPED = re.compile(r"(?<![0-9A-Fa-f-])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f-])")


def named_tokens(raw: str) -> tuple[list[str], list[str]]:
    """Every e-mail address and every serial number `raw` names, each once, in the order
    found: the values of `email`/`user`/`serialNumber` pairs first, then the bare tokens."""
    emails, serials = [], []
    for match in _PAIR.finditer(raw):
        value = _unescape(match[3]) if match[3] is not None else match[4].replace("\\'", "'")
        (serials if match[2].lower() == "serialnumber" else emails).append(value)
    text = unicodedata.normalize("NFKC", raw)
    emails += EMAIL_SHAPED.findall(text)
    serials += _SERIAL_SHAPED.findall(text)
    return list(dict.fromkeys(emails)), list(dict.fromkeys(serials))


def named_keys(raw: str) -> tuple[list[str], list[str]]:
    """The person keys of every e-mail address and every serial number `raw` names, each once."""
    emails, serials = named_tokens(raw)
    return list(dict.fromkeys(k for k in map(person_key, emails) if k is not None)), serials


def with_named_keys(rejects: pa.Table) -> pa.Table:
    """The rejects with what each line names: `named_person_keys`, `named_serials` (empty lists: nothing)."""
    named = [named_keys(raw or "") for raw in rejects["raw"].to_pylist()]
    return rejects.append_column(NAMED[EMAIL], pa.array([e for e, _ in named], NAMES)).append_column(
        NAMED[SERIAL], pa.array([s for _, s in named], NAMES)
    )


def _unescape(value: str) -> str:
    try:
        return json.loads(f'"{value}"')
    except ValueError:  # a broken escape: the text as it stands
        return value
