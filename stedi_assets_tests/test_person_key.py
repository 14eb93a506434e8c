"""The person key (stedi_assets/person.py): one definition, every hostile spelling one key."""

from __future__ import annotations

import unicodedata

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stedi_assets import erasure
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.person import is_email_key, person_key, person_keys, with_person_keys
from stedi_assets.privacy import PrivacyPolicy

PLAIN = "angie.huey@test.com"


def hostile_spellings(address: str) -> dict[str, str]:
    """`address` (plain: lower case, no space) as issue 20 found it re-delivered, and kin:
    each must be the same person, on every engine."""
    local, _, domain = address.partition("@")
    return {
        "trailing tab": address + "\t",
        "trailing newline": address + "\n",
        "zero-width space before the @": f"{local}\u200b@{domain}",
        "leading BOM": "\ufeff" + address,
        "full-width letters": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in address),
        "upper case with a no-break space": address.upper() + "\u00a0",
        "ideographic space": "\u3000" + address.title(),
        "spaces around": f"  {address.capitalize()}  ",
        "carriage return and vertical tab": address + "\r\x0b",
        "word joiner and soft hyphen": f"{local[:1]}\u2060{local[1:]}\u00ad@{domain}",
        "line separator": address + "\u2028",
    }


HOSTILE = hostile_spellings(PLAIN)


def _removed(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in {"Zs", "Zl", "Zp", "Cc", "Cf"}


@pytest.mark.parametrize("spelling", list(HOSTILE.values()), ids=list(HOSTILE))
def test_every_hostile_spelling_is_the_plain_address(spelling):
    assert person_key(spelling) == PLAIN
    assert person_keys(pa.array([spelling])).to_pylist() == [PLAIN]


def test_nothing_left_is_no_key():
    for empty in ("", " ", "\t\n", "\u200b\ufeff", "\u3000\u00a0", None):
        assert person_key(empty) is None
    assert person_keys(pa.array(["", " \u200b", None, "A@B"])).to_pylist() == [None, None, None, "a@b"]


def test_case_folding_is_stronger_than_lower_casing():
    assert person_key("STRASSE@X.DE") == person_key("straße@x.de") == "strasse@x.de"
    assert person_key("İ@x") == person_key("i̇@x")  # one key, whatever an engine's lower() makes of 'İ'


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_the_key_of_a_key_is_itself(text):
    key = person_key(text)
    assert person_key(key) == key


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_no_whitespace_control_or_format_character_survives(text):
    key = person_key(text)
    assert key is None or (key and not any(_removed(c) for c in key))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(), st.text(alphabet=st.characters(max_codepoint=127))), max_size=30))
def test_the_vectorised_keys_are_the_scalar_keys(values):
    """The pure-ASCII fast path (pyarrow) and the Python path agree, nulls and repeats included."""
    assert person_keys(pa.array(values, pa.string())).to_pylist() == [person_key(v) for v in values]
    chunked = pa.chunked_array([pa.array(values[:3], pa.string()), pa.array(values[3:], pa.string())])
    assert person_keys(chunked).to_pylist() == [person_key(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(HOSTILE.values())), st.sampled_from(list(HOSTILE.values())))
def test_any_two_spellings_of_her_have_one_erasure_key(a, b):
    keys = erasure.erasure_keys([a, b, PLAIN], PrivacyPolicy())
    assert len(set(keys.values())) == 1


def test_with_person_keys_sets_the_key_column_beside_the_spelling():
    rows = pa.table({"email": [" A@X ", "a\u200b@x"], "person_key": ["forged", None]})
    out = with_person_keys(rows, {"person_key": "email"})
    assert out.column_names == ["email", "person_key"]
    assert out["person_key"].to_pylist() == ["a@x", "a@x"]
    assert out["email"].to_pylist() == [" A@X ", "a\u200b@x"]  # the spelling as it arrived


def test_a_dictionary_column_is_keyed_like_text():
    values = pa.array(["B@X ", "b@x", None]).dictionary_encode()
    assert person_keys(values).to_pylist() == ["b@x", "b@x", None]


@pytest.mark.parametrize(
    ("given_text", "accepted"),
    [("", False), ("  \u200b", False), ("not-an-email", False), ("@x", False), ("a@", False), ("a@b@c", False),
     ("a@b", True), (" Angie.Huey@TEST.com\t", True)],
)
def test_what_forget_accepts(given_text, accepted, tmp_path):
    assert is_email_key(person_key(given_text)) is accepted
    lake = Lake(LocalStore(tmp_path))
    if accepted:
        assert erasure.record(lake, PrivacyPolicy(), [given_text]) == 1
    else:
        with pytest.raises(ValueError, match="nothing recorded"):
            erasure.record(lake, PrivacyPolicy(), [given_text])
