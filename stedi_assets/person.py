"""The person key: the one definition of "the same person" for every table, rule and request.

The same address arrives spelled many ways (case, a trailing tab, a zero-width space, a BOM,
full-width letters), and SQL engines do not compare those alike (DuckDB's and Spark's trim and
lower() differ): an erased person who comes back under another spelling is not erased. So the
key is computed once, here, in Python, at landing, and kept beside the spelling as it arrived:
Unicode NFKC, case-folded, every whitespace, control and format character removed; nothing
left means no key (None). docs/privacy.md, "One person, one key".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

# Unicode categories whose characters never belong in a key: separators, controls, formats.
_INVISIBLE = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
# The pure-ASCII case of the same definition, for pyarrow: NFKC leaves ASCII alone, casefold
# is lower(), and the ASCII whitespace and control characters are 0x00-0x20 and 0x7F.
_ASCII_INVISIBLE = r"[\x00-\x20\x7f]"
# Anything shaped like an e-mail address in free text (`x@y`, neither side holding white space,
# quotes, brackets or separators): what a rejected line names, and what a label masks.
_STOP = r"""\s"'`<>()\[\]{},;:\\"""
EMAIL_SHAPED = re.compile(rf"[^{_STOP}@]+@[^{_STOP}@]+")


def person_key(text: str | None) -> str | None:
    """The key `text` is compared by; None if nothing is left. The steps repeat until the text
    no longer changes (NFKC turns U+00A8 into a space and a combining mark; removing a zero-width
    space lets a letter compose with the accent after it): the key of a key is itself."""
    if text is None:
        return None
    key = text
    for _ in range(8):  # a fixed point comes after one or two rounds; the bound only guards
        step = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
        step = "".join(c for c in step if not c.isspace() and unicodedata.category(c) not in _INVISIBLE)
        if step == key:
            break
        key = step
    return key or None


def person_keys(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`person_key` of every value, for millions of rows: each distinct value is keyed once,
    pure-ASCII ones with pyarrow compute, only the others in Python, and the keys are taken
    back to the rows by index."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(pa.string())
    distinct = pc.unique(values)
    keys = pc.replace_substring_regex(pc.utf8_lower(distinct), _ASCII_INVISIBLE, "")
    other = pc.invert(pc.fill_null(pc.string_is_ascii(distinct), True))
    if pc.any(other).as_py():
        spelled = distinct.filter(other).to_pylist()
        keys = pc.replace_with_mask(keys, other, pa.array([person_key(s) for s in spelled], pa.string()))
    keys = pc.if_else(pc.equal(pc.utf8_length(keys), 0), pa.scalar(None, pa.string()), keys)
    return pc.take(keys, pc.index_in(values, value_set=distinct))


def with_person_keys(data: pa.Table, sources: Mapping[str, str]) -> pa.Table:
    """`data` with each key column (`sources`: key column -> the column it is the key of)
    set from its source column, appended if absent."""
    for key_column, source in sources.items():
        keys, index = person_keys(data[source]), data.schema.get_field_index(key_column)
        data = data.set_column(index, key_column, keys) if index >= 0 else data.append_column(key_column, keys)
    return data


def is_email_key(key: str | None) -> bool:
    """Whether a key can be an e-mail address: one `@` with something on either side. What
    `stedi forget` accepts: an empty or e-mail-less request would erase nobody, silently."""
    local, at, domain = (key or "").partition("@")
    return bool(local and at and domain) and "@" not in domain
