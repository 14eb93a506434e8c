"""What a rejected line still names, read from its raw text whatever else is wrong with it."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from stedi_assets.landing.named import named_keys, with_named_keys
from stedi_assets.person import person_key


def test_the_emails_and_serials_of_a_rejected_line_are_found_as_person_keys():
    assert named_keys('{"customerName":"B\ufffd","email":"b@x.com","serialNumber":"s-1"}') == (["b@x.com"], ["s-1"])
    assert named_keys('{"EMAIL" : " B@X.COM ", "shareWithResearchAsOfDate": false}') == (["b@x.com"], [])
    assert named_keys('{"user":"a@x","timestamp":"yesterday"') == (["a@x"], [])  # truncated, still names a@x
    assert named_keys('{"serialnumber":"s\\u002d2"}') == ([], ["s-2"])  # escapes decoded
    assert named_keys("not json at all") == ([], [])


def test_every_name_of_a_line_is_kept_in_every_position_each_once():
    raw = '{"email": "A@x.com", "user": "b@x.com", "note": "cc C@X.com and a@x.com"}'
    assert named_keys(raw)[0] == ["a@x.com", "b@x.com", "c@x.com"]


def test_rejects_gain_the_named_columns():
    rejects = pa.table({"raw": ['{"email":"a@x"}', None, '{"email":"a@x","user":"b@y"}'], "reason": ["r", "r", "r"]})
    out = with_named_keys(rejects)
    assert out["named_person_keys"].to_pylist() == [["a@x"], [], ["a@x", "b@y"]]
    assert out["named_serials"].to_pylist() == [[], [], []]


@given(st.text())
def test_any_text_is_scanned_without_error_and_gives_keys(raw):
    emails, serials = named_keys(raw)
    assert all(isinstance(e, str) and person_key(e) == e for e in emails)
    assert all(isinstance(s, str) for s in serials)


def test_names_and_rescued_fields_are_masked_wherever_dagster_shows_them():
    from stedi_assets.privacy import mask

    assert mask("named_person_keys", ["angie.huey@test.com", "bo@x"]) == ["an***@test.com", "bo***@x"]
    assert mask("named_serials", ["50f7b4f3-7af5"]) == ["50***"]
    assert mask("rescued_data", '{"phone": "8015551212"}') == "<23 characters>"
