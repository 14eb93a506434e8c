"""What a rejected line still names, read from its raw text whatever else is wrong with it."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from stedi_assets.landing.named import named_keys, with_named_keys


def test_the_email_and_serial_of_a_rejected_line_are_found():
    assert named_keys('{"customerName":"B\ufffd","email":"b@x.com","serialNumber":"s-1"}') == ("b@x.com", "s-1")
    assert named_keys('{"EMAIL" : " B@X.COM ", "shareWithResearchAsOfDate": false}') == (" B@X.COM ", None)
    assert named_keys('{"user":"a@x","timestamp":"yesterday"') == ("a@x", None)  # truncated, still names a@x
    assert named_keys('{"serialnumber":"s\\u002d2"}') == (None, "s-2")  # escapes decoded
    assert named_keys("not json at all") == (None, None)


def test_rejects_gain_the_named_columns():
    rejects = pa.table({"raw": ['{"email":"a@x"}', None], "reason": ["r", "r"]})
    out = with_named_keys(rejects)
    assert out["named_email"].to_pylist() == ["a@x", None]
    assert out["named_serial"].to_pylist() == [None, None]


@given(st.text())
def test_any_text_is_scanned_without_error(raw):
    email, serial = named_keys(raw)
    assert email is None or isinstance(email, str)
    assert serial is None or isinstance(serial, str)
