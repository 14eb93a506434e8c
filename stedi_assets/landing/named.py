"""What a rejected landing line still says about a person, read from its raw text.

A line can be rejected (not JSON, a value of the wrong type, one non-UTF-8 byte in a name) and
still name a customer: its e-mail address (`email`, or an accelerometer line's `user`) or its
step trainer's serial number. For privacy those count: an e-mail a rejected customer line
names is not trusted until the line is fixed, a serial number it names is treated as shared,
and an erased person's rejected lines are found by the e-mail they name. The scan is tolerant
on purpose: it reads `"key": "value"` pairs wherever they are, whatever the rest of the line."""

from __future__ import annotations

import json
import re

import pyarrow as pa

# A JSON string pair, the key in any letter case; the value with its escapes.
_PAIR = re.compile(r'"(email|user|serialnumber)"\s*:\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
NAMED_COLUMNS = ("named_email", "named_serial")


def named_keys(raw: str) -> tuple[str | None, str | None]:
    """The first e-mail address and the first serial number `raw` names, if any."""
    email = serial = None
    for match in _PAIR.finditer(raw):
        key, value = match[1].lower(), _unescape(match[2])
        if key == "serialnumber":
            serial = serial if serial is not None else value
        elif email is None:
            email = value
    return email, serial


def with_named_keys(rejects: pa.Table) -> pa.Table:
    """The rejects with the e-mail address and serial number each line names (or null)."""
    named = [named_keys(raw or "") for raw in rejects["raw"].to_pylist()]
    return rejects.append_column("named_email", pa.array([e for e, _ in named], pa.string())).append_column(
        "named_serial", pa.array([s for _, s in named], pa.string())
    )


def _unescape(value: str) -> str:
    try:
        return json.loads(f'"{value}"')
    except ValueError:  # a broken escape: the text as it stands
        return value
