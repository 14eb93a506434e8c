"""The right to erasure: requests recorded by keyed hash, and every table kept clear of them.

`stedi forget EMAIL` appends to the lake table `erasure_requests` the person's *erasure key*
(HMAC-SHA256 of their person key, stedi_assets/person.py, with STEDI_SUBJECT_KEY, which is
also their `subject_id`) and the request time; never the e-mail itself. Rows are told by the
person key computed at landing, so every spelling of the address is the same person. From
then on every run of the graph:

- drops them at landing: their customer records, the readings under their e-mail, the step
  trainer readings of serial numbers only they own, and rejected lines that name them (not
  stored in the rejects either), counted in the landing asset's metadata;
- judges every table with a blocking rule that no row belongs to an erased person, so
  nothing can bring them back, re-ingesting the same source files included;
- purges each table's history after the first commit that follows a request (a vacuum that
  keeps only the new version), so no old version holds them. The Delta log never held their
  values: its file statistics are row counts only, and commit info holds no personal value.

The serial numbers only erased people own are found by the customer landing step, from the
records it drops, and recorded as keyed hashes in its commit info, where the step trainer
landing step (which reads customer_landing) takes them from.

Erasure keys depend on STEDI_SUBJECT_KEY: every request records a fingerprint of the key
(`key_id`), and a run with another key refuses to start instead of letting erased people back.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.audit import Rule
from stedi_assets.engine import Relation
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.errors import LakeError, TableNotPublishedError
from stedi_assets.person import is_email_key, person_key, person_keys
from stedi_assets.privacy import PrivacyPolicy, now_ms
from stedi_assets.landing.named import with_named_keys
from stedi_assets.tables import ERASURE_REQUESTS, RESCUED_DATA

# What a column holds, for telling an erased person's rows: person keys (`EMAIL`: the landing
# tables' `person_key`, the trusted and curated `email` and `user`), serial numbers, or subject ids.
EMAIL, SERIAL, SUBJECT = "email", "serial", "subject"
ERASED_SERIALS = "erased_serials"  # the key of the customer landing commit info that lists them
ERASURES_APPLIED = "erasures_applied"  # the commit info key: a fingerprint of the requests a version was built with


class SubjectKeyChangedError(LakeError):
    pass


def key_id(privacy: PrivacyPolicy) -> str:
    """A fingerprint of the subject key: tells which key made an erasure key, reveals nothing."""
    return hmac.new(privacy.subject_key.encode(), b"stedi erasure key id", hashlib.sha256).hexdigest()[:16]


def erasure_keys(values: Iterable[str | None], privacy: PrivacyPolicy) -> dict[str, str]:
    """Each distinct e-mail as written -> its erasure key (the HMAC of its person key);
    values without a key have none."""
    distinct = sorted({v for v in values if v is not None})
    keys = person_keys(pa.array(distinct, pa.string()))
    return {v: s for v, s in zip(distinct, privacy.subject_ids(keys).to_pylist()) if s is not None}


def refused(given: str) -> str | None:
    """Why a request to forget `given` is refused (None: it is not): an empty request, or one
    that is no e-mail address, would be recorded and erase nobody."""
    key = person_key(given)
    if key is None:
        return "an empty e-mail address names nobody"
    if not is_email_key(key):
        return f"{given!r} is not an e-mail address (one @, something on either side)"
    return None


def serial_keys(values: Iterable[str | None], privacy: PrivacyPolicy) -> dict[str, str]:
    """Each distinct serial number -> its keyed hash."""
    distinct = sorted({v for v in values if v is not None})
    return dict(zip(distinct, privacy.subject_ids(pa.array(distinct, pa.string())).to_pylist()))


@dataclass(frozen=True)
class Erasures:
    """The erasure requests in force: the people's erasure keys, the latest request time, and
    the keyed hashes of the serial numbers only erased people own (once the customer landing
    step has found them)."""

    subjects: frozenset[str] = frozenset()
    requested_until: int = 0
    serials: frozenset[str] = field(default=frozenset())

    def __bool__(self) -> bool:
        return bool(self.subjects)

    def with_serials(self, serials: Iterable[str]) -> Erasures:
        return Erasures(self.subjects, self.requested_until, frozenset(serials))

    def fingerprint(self) -> str:
        """Names exactly these requests (keys only): a version built with others is rebuilt."""
        return hashlib.sha256("\n".join([*sorted(self.subjects), "", *sorted(self.serials)]).encode()).hexdigest()[:16]

    def relations(self) -> dict[str, pa.Table]:
        """The requests as relations for the rules (`not_erased`)."""
        return {
            "erasures": pa.table({"erasure_key": pa.array(sorted(self.subjects), pa.string())}),
            "erased_serial_keys": pa.table({"serial_key": pa.array(sorted(self.serials), pa.string())}),
        }

    @classmethod
    def from_relations(cls, relations: Mapping[str, Relation]) -> Erasures:
        def keys(name: str, column: str) -> frozenset[str]:
            table = relations.get(name)
            return frozenset(table[column].to_pylist()) if isinstance(table, pa.Table) else frozenset()

        return cls(keys("erasures", "erasure_key"), 0, keys("erased_serial_keys", "serial_key"))

    def dropping(self, table: pa.Table, column: str, kind: str, privacy: PrivacyPolicy) -> pa.ChunkedArray | pa.Array:
        """The mask of `table`'s rows whose `column` names an erased person: a person key
        (`EMAIL`), a serial number only erased people own (`SERIAL`), or an erasure key
        itself (`SUBJECT`: a subject_id)."""
        values = table[column]
        if pa.types.is_dictionary(values.type):
            values = values.cast(pa.string())
        if kind == SUBJECT:
            erased = sorted(self.subjects)
        else:
            # A person key column is keyed again, by the same function: a no-op on a key (the
            # key of a key is itself), and a value that is not one is still judged as her.
            keyed = (erasure_keys if kind == EMAIL else serial_keys)(values.unique().to_pylist(), privacy)
            wanted = self.subjects if kind == EMAIL else self.serials
            erased = [value for value, key in keyed.items() if key in wanted]
        if not erased:
            return pa.array([False] * table.num_rows, pa.bool_())
        return pc.fill_null(pc.is_in(values, value_set=pa.array(erased, pa.string())), False)


def load(lake: Lake, privacy: PrivacyPolicy) -> Erasures:
    """The requests recorded in the lake (none if there is no table yet)."""
    try:
        requests = lake.current(ERASURE_REQUESTS.spec).to_arrow()
    except TableNotPublishedError:
        return Erasures()
    if requests.num_rows == 0:
        return Erasures()
    if set(requests["key_id"].to_pylist()) != {key_id(privacy)}:
        raise SubjectKeyChangedError(
            "erasure requests in the lake were recorded under another STEDI_SUBJECT_KEY: with this key the erased "
            "people would come back. Run with the key they were recorded under, or record them again with "
            "`stedi forget` under the new key and rebuild the lake"
        )
    return Erasures(frozenset(requests["erasure_key"].to_pylist()), int(pc.max(requests["requested_at"]).as_py()))


def record(lake: Lake, privacy: PrivacyPolicy, emails: Iterable[str]) -> int:
    """Append erasure requests for `emails` (only their keys and the time); returns how many
    people were not requested before. Refuses (ValueError, nothing recorded) if any of them is
    empty or no e-mail address."""
    emails = list(emails)
    for given in emails:
        if (why := refused(given)) is not None:
            raise ValueError(f"not recorded: {why}")
    keys = sorted(set(erasure_keys(emails, privacy).values()) - load(lake, privacy).subjects)
    if not keys:
        return 0
    now = now_ms()
    rows = pa.table(
        {
            "erasure_key": pa.array(keys, pa.string()),
            "requested_at": pa.array([now] * len(keys), pa.int64()),
            "key_id": pa.array([key_id(privacy)] * len(keys), pa.string()),
        }
    )
    lake.write(ERASURE_REQUESTS.spec, rows, {"requests": len(keys)}, mode="append")
    return len(keys)


def erased_serials(snapshot: Snapshot | None) -> frozenset[str]:
    """The serial keys a customer landing version recorded as owned only by erased people."""
    return frozenset(snapshot.info.get(ERASED_SERIALS, [])) if snapshot is not None else frozenset()


# The column a kind of personal value is reported under in a rule's evidence (masked there).
_EVIDENCE = {EMAIL: "email", SERIAL: "serialNumber", SUBJECT: "subject_id"}
NO_ERASED_PERSON = "no_erased_person"


def not_erased(*columns: tuple[str, str, str]) -> Rule:
    """The blocking rule that no row belongs to an erased person: for each (table, column,
    kind), the rows whose `column` names one (see `Erasures.dropping`), by the relations
    `erasures` and `erased_serial_keys`."""
    kinds = {kind for _, _, kind in columns}
    assert len(kinds) == 1, "one kind of value per rule, reported under one column"
    evidence = _EVIDENCE[kinds.pop()]

    def evaluate(relations: Mapping[str, Relation], privacy: PrivacyPolicy) -> pa.Table:
        erasures = Erasures.from_relations(relations)
        found: list[pa.Table] = []
        for table, column, kind in columns if erasures else ():
            relation = relations[table]
            data = relation if isinstance(relation, pa.Table) else relation.dataset().to_table(columns=[column])
            if pa.types.is_list(data.schema.field(column).type):  # a rejected line's names: each one counts
                data = pa.table({column: pc.list_flatten(data[column])})
            hits = data.filter(erasures.dropping(data, column, kind, privacy))[column].cast(pa.string())
            found.append(pa.table({"table": pa.array([table] * len(hits), pa.string()), evidence: hits}))
        return pa.concat_tables(found) if found else pa.table({"table": pa.array([], pa.string()), evidence: pa.array([], pa.string())})

    names = ", ".join(sorted({table for table, _, _ in columns}))
    return Rule(NO_ERASED_PERSON, f"No row of {names} belongs to a person whose erasure was requested.", evaluate=evaluate)


@dataclass(frozen=True)
class LeftOut:
    """What a landing step kept of its parse once erased people are left out, and what it
    left out: lines per file (neither rows nor rejects) and, for customers, the keyed hashes
    of serial numbers that only erased people own."""

    rows: pa.Table
    rejects: pa.Table
    lines: dict[str, int]
    serials: list[str]

    @property
    def count(self) -> int:
        return sum(self.lines.values())


def leave_out(
    rows: pa.Table, rejects: pa.Table, erasures: Erasures, privacy: PrivacyPolicy, column: str, kind: str
) -> LeftOut:
    """Leave out of a landing parse the rows whose `column` (compared as `kind`) names an
    erased person, and the rejected lines that name one anywhere (`_naming`)."""
    if not erasures:
        return LeftOut(rows, rejects, {}, [])
    rows = _rescued_without_erased(rows, erasures, privacy)
    row_mask = erasures.dropping(rows, column, kind, privacy)
    reject_mask = pa.array(_naming(rejects, erasures, privacy))
    kept_rows, dropped_rows = rows.filter(pc.invert(row_mask)), rows.filter(row_mask)
    kept_rejects, dropped_rejects = rejects.filter(pc.invert(reject_mask)), rejects.filter(reject_mask)
    lines = _lines_left_out(
        [dropped_rows, dropped_rejects], [kept_rows, kept_rejects]
    ) if dropped_rows.num_rows or dropped_rejects.num_rows else {}
    serials: list[str] = []
    if "serialNumber" in rows.column_names and kind == EMAIL:  # customers: their devices
        def named(table: pa.Table) -> set[str]:
            return set(pc.list_flatten(table["named_serials"]).to_pylist())

        theirs = set(dropped_rows["serialNumber"].to_pylist()) | named(dropped_rejects)
        others = set(pc.unique(kept_rows["serialNumber"]).to_pylist()) | named(kept_rejects)
        serials = sorted(serial_keys(theirs - others, privacy).values())
    return LeftOut(kept_rows, kept_rejects, lines, serials)


def _naming(rejects: pa.Table, erasures: Erasures, privacy: PrivacyPolicy) -> np.ndarray:
    """The mask of rejected lines that name an erased person, in whatever position: any of the
    person keys they name (`named_person_keys`: every e-mail anywhere in the text,
    landing/named.py) is hers, or any serial number they name (`named_serials`) only erased
    people own. Their text is kept nowhere."""
    mask = np.zeros(rejects.num_rows, dtype=bool)
    for column, kind in (("named_person_keys", EMAIL), ("named_serials", SERIAL)):
        if column not in rejects.column_names or not rejects.num_rows:
            continue
        lists = rejects[column].combine_chunks()
        names = pa.table({column: pc.list_flatten(lists)})
        hits = erasures.dropping(names, column, kind, privacy)
        mask[pc.list_parent_indices(lists).filter(hits).to_numpy()] = True
    return mask


def _rescued_without_erased(rows: pa.Table, erasures: Erasures, privacy: PrivacyPolicy) -> pa.Table:
    """`rows` with the fields outside the contract (`rescued_data`) cleared where they name an
    erased person, as a rejected line's text would: the row is someone else's and stays, her
    name goes."""
    if RESCUED_DATA.name not in rows.column_names or rows[RESCUED_DATA.name].null_count == rows.num_rows:
        return rows
    rescued = rows[RESCUED_DATA.name]
    naming = pa.array(_naming(with_named_keys(pa.table({"raw": rescued})), erasures, privacy))
    if not pc.any(naming).as_py():
        return rows
    cleared = pc.if_else(naming, pa.scalar(None, pa.string()), rescued)
    return rows.set_column(rows.column_names.index(RESCUED_DATA.name), RESCUED_DATA.name, cleared)


def _lines_left_out(dropped: list[pa.Table], kept: list[pa.Table]) -> dict[str, int]:
    """Lines (per file) of the dropped rows and rejects that no kept row or reject shares."""
    def lines(tables: list[pa.Table]) -> pa.Table:
        return pa.concat_tables(
            [t.select(["source_file", "source_line"]).cast(pa.schema([("source_file", pa.string()), ("source_line", pa.int64())])) for t in tables]
        )

    with duckdb.connect() as con:
        con.register("dropped", lines(dropped))
        con.register("kept", lines(kept))
        result = con.sql(
            """
            SELECT d.source_file, COUNT(*) AS n FROM (SELECT DISTINCT source_file, source_line FROM dropped) AS d
            WHERE NOT EXISTS (SELECT 1 FROM kept AS k WHERE k.source_file = d.source_file AND k.source_line = d.source_line)
            GROUP BY d.source_file
            """
        ).fetchall()
    return {file: int(n) for file, n in result}
