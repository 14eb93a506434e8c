"""Small hand-made tables for rule tests, conformed to the contracts."""

from __future__ import annotations

import pyarrow as pa

from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.person import with_person_keys
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import ConsentPolicy
from stedi_assets.tables import PERSON_KEY_OF, REJECTS_OF, Table


def table(contract: Table, *rows: dict) -> pa.Table:
    """`rows` with every contract column present (missing ones null), in contract types, and
    the person keys computed as landing computes them."""
    filled = [{**{c: None for c in contract.column_names}, **row} for row in rows]
    return with_person_keys(pa.Table.from_pylist(filled, schema=contract.spec.schema), PERSON_KEY_OF.get(contract.name, {}))


def sorted_rows(data: pa.Table) -> list[dict]:
    """The rows in a fixed order, for comparing tables whatever their row order and types
    (pyarrow cannot sort a dictionary column such as a landing table's source_file)."""
    return sorted(data.to_pylist(), key=lambda row: [repr(v) for v in row.values()])


def customer(email: str, serial: str, consent: int | None, updated: int = 0, line: int = 1, **more) -> dict:
    return {
        "customerName": email.split("@")[0],
        "email": email,
        "phone": "8015551212",
        "birthDay": "1990-01-01",
        "serialNumber": serial,
        "registrationDate": 0,
        "lastUpdateDate": updated,
        "shareWithResearchAsOfDate": consent,
        "source_file": "customer/landing/c.json",
        "source_line": line,
        **more,
    }


def with_rejects(relations: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """`relations`, with an empty rejects table for each landing table that has none."""
    empty = {rejects.name: table(rejects) for landing, rejects in REJECTS_OF.items() if landing in relations}
    return {**empty, **relations}


def run(sql: str, policy: ConsentPolicy = ConsentPolicy.ANY, as_of: int | None = None, **relations: pa.Table) -> list[dict]:
    """The rule's rows, sorted, as the DuckDB engine computes them (consent as of `as_of`, default now)."""
    result = DuckDBEngine().query(PrivacyPolicy(consent_policy=policy).render(sql, as_of), with_rejects(relations))
    return sorted(result.to_pylist(), key=lambda r: [str(v) for v in r.values()])
