"""The right to erasure: requests recorded by keyed hash, and every table kept clear of them.

`stedi forget EMAIL` records only the person's *erasure key* (HMAC-SHA256 of their person key
with STEDI_SUBJECT_KEY, also their `subject_id`) and the time, never the e-mail. Every run then
leaves them out at landing, takes exactly their rows out of every published table as a change
each step follows, judges every table with the blocking rule `no_erased_person`, and purges the
earlier versions that held them. docs/privacy.md ("Right to erasure", "Key rotation") says how.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.audit import Rule
from stedi_assets.engine import Relation
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.errors import LakeError, TableNotPublishedError
from stedi_assets.person import is_email_key, person_key, person_keys
from stedi_assets.privacy import PrivacyPolicy, now_ms
from stedi_assets.landing.named import named_tokens
from stedi_assets.tables import EMAIL, ERASURE_REQUESTS, LAKE_TABLES, SERIAL, SUBJECT

ERASED_SERIALS = "erased_serials"  # the key of the customer landing commit info that lists them
ERASURES_APPLIED = "erasures_applied"  # the commit info key: a fingerprint of the requests a version was built with
PREVIOUS_KEY_VARIABLE = "STEDI_PREVIOUS_SUBJECT_KEY"  # the retiring key, read by `stedi forget --rekey` only
NO_ERASED_PERSON = "no_erased_person"
# The relations the rules read the requests from: (name, column) of the subjects', then the serials' keys.
_RELATIONS = (("erasures", "erasure_key"), ("erased_serial_keys", "serial_key"))


class SubjectKeyChangedError(LakeError):
    pass


def key_id(privacy: PrivacyPolicy) -> str:
    """A fingerprint of the subject key: tells which key made an erasure key, reveals nothing."""
    return hmac.new(privacy.subject_key.encode(), b"stedi erasure key id", hashlib.sha256).hexdigest()[:16]


def erasure_keys(values: Iterable[str | None], privacy: PrivacyPolicy, kind: str = EMAIL) -> dict[str, str]:
    """Each distinct value -> its keyed hash: an e-mail's erasure key (the HMAC of its person
    key; a value without one has none), or a serial number's (`kind` SERIAL)."""
    distinct = sorted({v for v in values if v is not None})
    given = pa.array(distinct, pa.string())
    hashes = privacy.subject_ids(person_keys(given) if kind == EMAIL else given).to_pylist()
    return {v: h for v, h in zip(distinct, hashes) if h is not None}


@dataclass(frozen=True)
class Erasures:
    """The erasure requests in force: the people's erasure keys, and the keyed hashes of the
    serial numbers only erased people own (once the customer landing step has found them)."""

    subjects: frozenset[str] = frozenset()
    serials: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.subjects)

    def with_serials(self, serials: Iterable[str]) -> Erasures:
        return Erasures(self.subjects, frozenset(serials))

    def fingerprint(self) -> str:
        """Names exactly these requests (keys only): a version built with others is rebuilt."""
        return hashlib.sha256("\n".join([*sorted(self.subjects), "", *sorted(self.serials)]).encode()).hexdigest()[:16]

    def applied_by(self, version: Snapshot) -> bool:
        return version.info.get(ERASURES_APPLIED) == self.fingerprint()

    def relations(self) -> dict[str, pa.Table]:
        """The requests as relations for the rules (`not_erased`)."""
        keys = (self.subjects, self.serials)
        return {name: pa.table({column: pa.array(sorted(k), pa.string())}) for (name, column), k in zip(_RELATIONS, keys)}

    @classmethod
    def from_relations(cls, relations: Mapping[str, Relation]) -> Erasures:
        tables = [(relations.get(name), column) for name, column in _RELATIONS]
        return cls(*(frozenset(t[c].to_pylist()) if isinstance(t, pa.Table) else frozenset() for t, c in tables))

    def dropping(self, table: pa.Table, column: str, kind: str, privacy: PrivacyPolicy) -> pa.ChunkedArray | pa.Array:
        """The mask of `table`'s rows whose `column` names an erased person: a person key
        (`EMAIL`: keyed again, a no-op on a key, so a value that is not one is still judged as
        hers), a serial number only erased people own (`SERIAL`), or an erasure key (`SUBJECT`)."""
        values = table[column]
        if pa.types.is_dictionary(values.type):
            values = values.cast(pa.string())
        erased = sorted(self.subjects)
        if kind != SUBJECT:
            wanted = self.subjects if kind == EMAIL else self.serials
            erased = [v for v, key in erasure_keys(values.unique().to_pylist(), privacy, kind).items() if key in wanted]
        return pc.fill_null(pc.is_in(values, value_set=pa.array(erased, pa.string())), False)


def load(lake: Lake, privacy: PrivacyPolicy, read: Iterable[Snapshot] = ()) -> Erasures:
    """The requests recorded in the lake (none if there is no table yet), with the serial keys
    only erased people own as the versions `read` recorded them."""
    serials = frozenset().union(*(erased_serials(s) for s in read))
    try:
        requests = lake.current(ERASURE_REQUESTS.spec).to_arrow()
    except TableNotPublishedError:
        return Erasures(serials=serials)
    if requests.num_rows and set(requests["key_id"].to_pylist()) != {key_id(privacy)}:
        raise SubjectKeyChangedError(
            "erasure requests in the lake were recorded under another STEDI_SUBJECT_KEY: with this key the erased "
            f"people would come back. Run with the key they were recorded under, or re-key them: the old key in "
            f"{PREVIOUS_KEY_VARIABLE}, the new one in STEDI_SUBJECT_KEY, then `stedi forget --rekey` "
            "(docs/privacy.md, Key rotation)"
        )
    return Erasures(frozenset(requests["erasure_key"].to_pylist()), serials)


def record(lake: Lake, privacy: PrivacyPolicy, emails: Iterable[str]) -> int:
    """Append erasure requests for `emails` (only their keys and the time); returns how many
    are new. Refuses them all (ValueError) if one is empty or no e-mail address: it would be
    recorded and erase nobody."""
    emails = list(emails)
    for given in emails:
        if not is_email_key(key := person_key(given)):
            why = "an empty e-mail address names nobody" if key is None else f"{given!r} is not an e-mail address"
            raise ValueError(f"nothing recorded: {why} (one @, something on either side)")
    keys = sorted(set(erasure_keys(emails, privacy).values()) - load(lake, privacy).subjects)
    if not keys:
        return 0
    now, made_with = now_ms(), key_id(privacy)
    rows = pa.Table.from_pylist([dict(erasure_key=k, requested_at=now, key_id=made_with) for k in keys], ERASURE_REQUESTS.spec.schema)
    lake.write(ERASURE_REQUESTS.spec, rows, {"requests": len(keys)}, mode="append")
    return len(keys)


def rekey(lake: Lake, old: PrivacyPolicy, new: PrivacyPolicy, texts: Iterable[str], drop_unfound: bool = False) -> tuple[int, int]:
    """Record the erasure requests again under the new subject key: a request holds only
    HMAC(old key, person key), so each person is found again among the e-mail-shaped tokens of
    `texts` (the landing source). A request whose person is found nowhere changes nothing
    (LakeError) unless `drop_unfound` drops it (docs/privacy.md, Key rotation). Returns how many
    requests were re-keyed, and how many dropped."""
    requests = lake.current(ERASURE_REQUESTS.spec).to_arrow()
    old_id, new_id = key_id(old), key_id(new)
    if unknown := set(requests["key_id"].to_pylist()) - {old_id, new_id}:
        raise SubjectKeyChangedError(f"{len(unknown)} key(s) recorded that are neither {PREVIOUS_KEY_VARIABLE} nor STEDI_SUBJECT_KEY: nothing re-keyed")
    emails = {e for text in texts for e in named_tokens(text)[0]}
    new_keys = erasure_keys(emails, new)
    found = {old_key: new_keys[email] for email, old_key in erasure_keys(emails, old).items()}
    rows = requests.to_pylist()
    rekeyed = [{**r, "erasure_key": found[r["erasure_key"]], "key_id": new_id} for r in rows if r["key_id"] == old_id and r["erasure_key"] in found]
    kept = [r for r in rows if r["key_id"] == new_id]
    dropped = len(rows) - len(rekeyed) - len(kept)
    if dropped and not drop_unfound:
        raise LakeError(
            f"{dropped} erasure request(s) name a person found nowhere in the source: they cannot be re-keyed, and "
            "nothing was changed. Keep running with the old key, or drop them with --drop-unfound (they then "
            "must ask again if their data is ever delivered again)"
        )
    # One person asked under both keys: the first request (the last one set, in reverse order).
    merged = {r["erasure_key"]: r for r in sorted([*kept, *rekeyed], key=lambda r: r["requested_at"])[::-1]}
    table = pa.Table.from_pylist(list(merged.values()), schema=requests.schema)
    lake.write(ERASURE_REQUESTS.spec, table, {"rekeyed": len(rekeyed), "dropped_unfound": dropped})
    return len(rekeyed), dropped


def erased_serials(snapshot: Snapshot | None) -> frozenset[str]:
    """The serial keys a customer landing version recorded as owned only by erased people."""
    return frozenset(snapshot.info.get(ERASED_SERIALS, [])) if snapshot is not None else frozenset()


# The column a kind of personal value is reported under in a rule's evidence (masked there).
_EVIDENCE = {EMAIL: "email", SERIAL: "serialNumber", SUBJECT: "subject_id"}


def not_erased(*columns: tuple[str, str, str]) -> Rule:
    """The blocking rule that no row belongs to an erased person: for each (table, column, kind),
    the rows whose `column` names one (`Erasures.dropping`)."""
    [evidence] = {_EVIDENCE[kind] for _, _, kind in columns}  # one kind of value per rule, reported under one column

    def evaluate(relations: Mapping[str, Relation], privacy: PrivacyPolicy) -> pa.Table:
        erasures = Erasures.from_relations(relations)
        found = [pa.table({"table": pa.array([], pa.string()), evidence: pa.array([], pa.string())})]
        for table, column, kind in columns if erasures else ():
            relation = relations[table]
            data = relation if isinstance(relation, pa.Table) else relation.dataset().to_table(columns=[column])
            if pa.types.is_list(data.schema.field(column).type):  # a rejected line's names: each one counts
                data = pa.table({column: pc.list_flatten(data[column])})
            hits = data.filter(erasures.dropping(data, column, kind, privacy))[column].cast(pa.string())
            found.append(pa.table({"table": pa.array([table] * len(hits), pa.string()), evidence: hits}))
        return pa.concat_tables(found)

    names = ", ".join(sorted({table for table, _, _ in columns}))
    return Rule(NO_ERASED_PERSON, f"No row of {names} belongs to a person whose erasure was requested.", evaluate=evaluate, reads_erasures=True)


def awaiting_purge(lake: Lake, spec: Any) -> list[int]:
    """The versions of a table built with other erasure requests than its current one whose own
    data files are still stored (they may hold an erased person's rows), read from the Delta log
    and the store alone: a run that died first, or another Dagster instance, finds the purge
    still to do. With no request in force (almost every run), one commit is read."""
    latest = lake.history(spec, 1)
    if not latest or latest[0].info.get(ERASURES_APPLIED) == Erasures().fingerprint():
        return []
    history = lake.history(spec)
    current = lake.at(spec, history[0].version)
    applied, present = history[0].info.get(ERASURES_APPLIED), set(current.files)
    pending: list[int] = []
    for commit in history[1:]:
        if commit.info.get(ERASURES_APPLIED) == applied:
            continue
        try:
            files = [f for f in lake.at(spec, commit.version).files if f not in present]
        except LakeError:  # its log entry is gone (cleaned up after a checkpoint): nothing to read it by
            break
        if not files:
            continue
        if not any(lake.store.exists(f"{spec.location}/{f.rsplit('/', 1)[1]}") for f in files):
            break  # all gone: retention deletes older files first
        pending.append(commit.version)
    return pending


def purge(lake: Lake, name: str, force: bool = False) -> tuple[list[int], dict[str, list[str]]]:
    """If table `name` awaits the purge: delete every earlier version of it and of its
    companions, keeping only their current files; unless `force`, not while a reader's current
    version was built from one of them (its next build needs them). Returns the versions that
    awaited it, and the files deleted per table."""
    spec = LAKE_TABLES[name].spec
    pending = awaiting_purge(lake, spec)
    if not pending:
        return pending, {}
    companions = lake.current(spec).companions
    if not force:
        current = lake.current_versions([t.spec for t in LAKE_TABLES.values()])
        # A companion's commit info is its table's, as it was when last written: not a reader.
        paired = {c for snapshot in current.values() for c in snapshot.companions}
        readers = [s.info.get("inputs", {}) for reader, s in current.items() if reader not in paired]
        # Built from a pending version, or from a companion's version other than its current one.
        if any(i.get(name) in pending or any(c in i and i[c] != v for c, v in companions.items()) for i in readers):
            return pending, {}
    return pending, {s.name: lake.vacuum(s, 0, apply=True, untracked=False) for s in (spec, *(LAKE_TABLES[c].spec for c in companions))}
