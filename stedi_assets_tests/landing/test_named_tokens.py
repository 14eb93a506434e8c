"""What a rejected line names, second pass (issue 20, #3 and #4): any quoting, any key spelling,
bare tokens anywhere; and a line of concatenated records cut off inside the last keeps every
complete record as a row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc

from stedi_assets import erasure
from stedi_assets.landing.json_lines import parse_file
from stedi_assets.landing.named import named_keys, named_tokens
from stedi_assets.landing.erased import leave_out
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets.tables import CUSTOMER_LANDING, as_read
from stedi_assets_tests.test_person_key_erasure import run

SERIAL = "50f7b4f3-7af5-4b07-a421-7b902c8d2b7c"


def test_python_dict_quoting_and_padded_keys_name_the_person():
    assert named_keys(f"{{'email': 'Angie.Huey@test.com', 'serialNumber': '{SERIAL}'}}") == (["angie.huey@test.com"], [SERIAL])
    assert named_keys('{"email ": "a@test.com", "SerialNumber ": "s-1"}') == (["a@test.com"], ["s-1"])
    assert named_keys("{' USER ' : 'b@test.com'}") == (["b@test.com"], [])


def test_bare_email_and_serial_shaped_tokens_anywhere_are_named():
    emails, serials = named_tokens(f"contact: a@test.com; ({SERIAL}) and ｂ＠ｔｅｓｔ.ｃｏｍ, c\u200b@test.com")
    assert emails == ["a@test.com", "b@test.com", "c\u200b@test.com"]  # full-width letters after NFKC
    assert serials == [SERIAL]
    assert named_tokens(f"x{SERIAL}0 and 1-{SERIAL}") == ([], [])  # not a whole UUID
    # The pairs first, then what else the line names, each once.
    assert named_tokens('{"email": "a@test.com", "note": "also d@test.com", "x": "a@test.com"}')[0] == ["a@test.com", "d@test.com"]


def _record(i: int) -> dict:
    return {"customerName": f"C{i}", "email": f"c{i}@test.com", "serialNumber": f"s{i}", "lastUpdateDate": i}


def test_a_line_of_concatenated_records_cut_off_keeps_every_complete_record():
    whole = "".join(json.dumps(_record(i)) for i in range(171))
    cut = whole[: whole.rindex('"serialNumber"')]  # inside the last record
    parsed = parse_file(f"{cut}\n".encode(), "customer/landing/c.json", as_read(CUSTOMER_LANDING))
    assert parsed.rows["email"].to_pylist() == [f"c{i}@test.com" for i in range(170)]
    assert set(parsed.rows["source_line"].to_pylist()) == {1}
    [reject] = parsed.rejects.to_pylist()
    assert reject["source_line"] == 1 and reject["reason"].startswith("not JSON")
    assert reject["raw"].startswith('{"customerName": "C170"') and named_keys(reject["raw"])[0] == ["c170@test.com"]


def test_a_cut_in_the_middle_keeps_the_records_before_it_and_rejects_the_rest_whole():
    line = json.dumps(_record(1)) + '{"email": "c2@test.com", "x": }' + json.dumps(_record(3))
    parsed = parse_file(f"{line}\n".encode(), "customer/landing/c.json", as_read(CUSTOMER_LANDING))
    assert parsed.rows["email"].to_pylist() == ["c1@test.com"]
    [reject] = parsed.rejects.to_pylist()
    assert reject["raw"] == '{"email": "c2@test.com", "x": }' + json.dumps(_record(3))


def test_an_erased_persons_rejected_lines_in_any_quoting_leave_no_text(tmp_path: Path):
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / "source"))
    lake = tmp_path / "lake"
    email = "Erin.Erased@test.com"
    (source / "customer" / "landing" / "hostile.json").write_text(
        f"{{'customerName': 'Erin Erased', 'email': '{email}', 'birthDay': '1990-01-01'}}\n"
        f'{{"customerName": "Erin Erased", "email ": "{email}", "serialNumber": "erin-serial"}}\n'
        f'{{"customerName": "Erin Erased", "note": "write to {email.upper()}", "lastUpdateDate": "soon"}}\n'
    )
    before = run(source, lake)["customer_landing_rejects"]
    assert sum("Erin" in raw for raw in before["raw"].to_pylist()) == 3
    erasure.record(Lake(LocalStore(lake)), PrivacyPolicy(), [email])
    after = run(source, lake)["customer_landing_rejects"]
    assert not [raw for raw in after["raw"].to_pylist() if "Erin" in raw]
    assert after.num_rows == before.num_rows - 3


def test_a_rejected_line_naming_an_erased_person_second_is_dropped_too(tmp_path: Path):
    """The rejects table keeps every e-mail a line names, and erasure drops the line whichever
    position names her."""
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / "source"))
    lake = tmp_path / "lake"
    (source / "customer" / "landing" / "pair.json").write_text(
        '{"email": "first.named@test.com", "note": "cc Erin.Second@test.com", "lastUpdateDate": "soon"}\n'
        "{'email': 'other.person@test.com', 'lastUpdateDate': 'soon'}\n"
    )
    before = run(source, lake)["customer_landing_rejects"]
    erin = before.filter(pc.match_substring(before["raw"], "Erin"))
    assert erin["named_person_keys"].to_pylist() == [["first.named@test.com", "erin.second@test.com"]]
    assert erin["reason_code"].to_pylist() == ["bad_type:lastUpdateDate"]
    erasure.record(Lake(LocalStore(lake)), PrivacyPolicy(), ["erin.second@test.com"])
    after = run(source, lake)["customer_landing_rejects"]
    assert not [raw for raw in after["raw"].to_pylist() if "Erin" in raw]
    assert ["other.person@test.com"] in after["named_person_keys"].to_pylist()  # nobody else's line goes


def test_rescued_fields_naming_an_erased_person_are_cleared_from_another_persons_row():
    """Fields outside the contract are kept with their row; where they name an erased person
    (someone else's reading that mentions her), her name goes and the row stays."""
    import pyarrow as pa

    from stedi_assets.tables import ACCELEROMETER_LANDING, ACCELEROMETER_LANDING_REJECTS
    from stedi_assets_tests.builders import table

    privacy = PrivacyPolicy()
    erasures = erasure.Erasures(frozenset(privacy.subject_ids(pa.array(["erin@test.com"])).to_pylist()))
    reading = {"timestamp": 1, "x": 0.0, "source_file": "a.json", "source_line": 1}
    rows = table(
        ACCELEROMETER_LANDING,
        {**reading, "user": "bo@test.com", "rescued_data": '{"shared_with": "ERIN@test.com"}'},
        {**reading, "user": "bo@test.com", "rescued_data": '{"battery": 0.5}', "source_line": 2},
        {**reading, "user": "erin@test.com", "rescued_data": None, "source_line": 3},
    )
    kept = leave_out(rows, table(ACCELEROMETER_LANDING_REJECTS), erasures, privacy, "person_key", erasure.EMAIL)
    assert kept.rows.select(["user", "rescued_data"]).to_pylist() == [
        {"user": "bo@test.com", "rescued_data": None},
        {"user": "bo@test.com", "rescued_data": '{"battery": 0.5}'},
    ]
    assert kept.lines == 1  # her own reading is left out
