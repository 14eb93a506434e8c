"""The column contract of every lake table: one definition feeds the landing parser, the
Delta schema (with each column's description as its comment), the UI's table schema and the
Glue catalog, so they cannot drift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa

from stedi_assets.lake.delta import Staged, TableSpec
from stedi_assets.lake.glue import ATHENA_TYPES

if TYPE_CHECKING:
    import dagster as dg

# What a rejected line names: every e-mail's person key, every serial number (landing/named.py).
NAMES = pa.list_(pa.string())
# What a column holds, for telling an erased person's rows (erasure.py): person keys (the landing
# tables' `person_key`, the trusted and curated `email` and `user`), serial numbers, or subject ids.
EMAIL, SERIAL, SUBJECT = "email", "serial", "subject"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    required: bool = False  # a landing record without it is rejected
    key_of: str | None = None  # a person key: the column, as it arrived, it is computed from at landing (never read)

    @property
    def athena_type(self) -> str:
        return ATHENA_TYPES[self.type.value_type if pa.types.is_dictionary(self.type) else self.type]


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # customer, accelerometer, step_trainer, machine_learning
    zone: str  # landing, landing_rejects, landing_files, trusted, curated
    columns: tuple[Column, ...]
    unique_key: tuple[str, ...] = ()
    # (column, kind) telling an erased person's rows: a landing build leaves them out (its
    # rejects by what each line names, landing/erased.py), and so does a trusted or curated
    # build itself (incremental.py), even while a table upstream still holds them.
    erased_by: tuple[str, str] | None = None

    @property
    def location(self) -> str:
        """Where the table lives below the lake root: the seeds' `<source>/<zone>/` layout."""
        return f"{self.source}/{self.zone}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def spec(self) -> TableSpec:
        """The table as the lake stores it: location and columns, descriptions as comments."""
        schema = pa.schema([pa.field(c.name, c.type, metadata={"comment": c.description}) for c in self.columns])
        return TableSpec(self.name, self.location, schema)

    def conform(self, data: pa.Table) -> pa.Table:
        """The columns of the contract, in its order and types: what is judged is what is written."""
        return data.select(self.column_names).cast(self.spec.schema)

    def whole(self, data: pa.Table | Sequence[pa.Table] | Staged) -> pa.Table | Staged:
        """A table built in parts (one data file each) as one table, to judge them together."""
        if isinstance(data, (pa.Table, Staged)):
            return data
        return pa.concat_tables(data) if data else self.spec.schema.empty_table()

    @property
    def table_schema(self) -> dg.TableSchema:
        """The columns for Dagster's UI. Dagster is imported here, by the steps that show it:
        the `stedi` command reads tables without it."""
        import dagster as dg

        return dg.TableSchema([dg.TableColumn(c.name, c.athena_type, description=c.description) for c in self.columns])


# `source_file` repeats on each row of a file: dictionary-encoded in Arrow and in Parquet, it
# is one string per file instead of a copy per row. Readers still see text.
_LINEAGE = (
    Column("source_file", pa.dictionary(pa.int32(), pa.string()), "Landing file the record came from, relative to STEDI_SOURCE"),
    Column("source_line", pa.int64(), "1-based line number of the record in its landing file"),
)


_CUSTOMER = (
    Column("customerName", pa.string(), "Full name (direct identifier)"),
    Column("email", pa.string(), "E-mail address: in landing as it arrived, from the trusted zone on its person key "
           "(direct identifier)", required=True),
    Column("phone", pa.string(), "Phone number (direct identifier)"),
    Column("birthDay", pa.string(), "Date of birth, yyyy-mm-dd (direct identifier)"),
    Column("serialNumber", pa.string(), "Serial number of the customer's step trainer"),
    Column("registrationDate", pa.int64(), "Registration time, epoch ms"),
    Column("lastUpdateDate", pa.int64(), "Last update of this record, epoch ms"),
    Column("shareWithResearchAsOfDate", pa.int64(), "Research consent since, epoch ms; null = no consent"),
    Column("shareWithPublicAsOfDate", pa.int64(), "Public sharing consent since, epoch ms"),
    Column("shareWithFriendsAsOfDate", pa.int64(), "Friends sharing consent since, epoch ms"),
)
_XYZ = tuple(Column(axis, pa.float64(), f"Acceleration along {axis}") for axis in "xyz")
_ACCELEROMETER = (
    Column("user", pa.string(), "E-mail of the customer who owns the phone: in landing as it arrived, from the trusted zone "
           "on its person key", required=True),
    Column("timestamp", pa.int64(), "Reading time, epoch ms", required=True),
    *_XYZ,
)
_STEP_TRAINER = (
    Column("sensorReadingTime", pa.int64(), "Reading time, epoch ms", required=True),
    Column("serialNumber", pa.string(), "Serial number of the step trainer", required=True),
    Column("distanceFromObject", pa.int64(), "Distance measured by the sensor"),
)
# A rejected line as the parser reports it (landing/json_lines.py); its table adds what it names.
REJECTED_LINE = (
    Column("source_file", pa.string(), "Landing file, relative to STEDI_SOURCE"),
    Column("source_line", pa.int64(), "1-based line number in that file"),
    Column("raw", pa.string(), "The rejected text, as it was (direct identifiers possible)"),
    Column("reason_code", pa.string(), "Why it was rejected, one stable code per cause (not_json, bad_type:<column>, "
           "missing:<columns>, conflicting_values, ...: docs/ingestion.md), to group the rejects by"),
    Column("reason", pa.string(), "Why it was rejected, for people: the code's detail, a value of the line included"),
)
_REJECTS = REJECTED_LINE + (
    Column("named_person_keys", NAMES, "The person key (stedi_assets/person.py) of every e-mail address the line names, "
           "anywhere in its text, in any quoting or key spelling (landing/named.py); empty: none (direct identifiers)"),
    Column("named_serials", NAMES, "Every step trainer serial number the line names, anywhere in its text; empty: none"),
)
# The ledger of a landing table (landing/ledger.py): each source file, its identity when parsed, what became of its lines.
_LANDING_FILES = (
    Column("source_file", pa.string(), "Landing file, relative to STEDI_SOURCE"),
    Column("size", pa.int64(), "Its size in bytes when it was parsed"),
    Column("modified_ns", pa.int64(), "Its modification time when it was parsed, epoch ns"),
    Column("etag", pa.string(), "A hash of its content when it was parsed: its S3 ETag, else blake2b:<hex>"),
    Column("changed_ns", pa.int64(), "A local file's status-change time (ctime) when it was hashed, epoch ns; null: on S3, "
           "or too recent to trust"),
    Column("inode", pa.int64(), "A local file's inode when it was hashed"),
    Column("lines", pa.int64(), "Its non-blank lines"),
    Column("rows", pa.int64(), "Rows it gave the landing table"),
    Column("rejects", pa.int64(), "Lines of it in the rejects table"),
    Column("lines_erased", pa.int64(), "Lines of it left out because they name a person whose erasure was requested"),
    Column("present", pa.bool_(), "Still in the source at the last ingest; false: gone, its rows kept"),
)
SUBJECT_ID = Column("subject_id", pa.string(), "Pseudonymous subject key: HMAC-SHA256 of the person key with STEDI_SUBJECT_KEY")
# Fields of a landing record outside its table's contract: kept with the row, never dropped.
RESCUED_DATA = Column("rescued_data", pa.string(), "The record's fields outside this table's contract, as a JSON object "
                      "(null: none), like Auto Loader's _rescued_data; landing only: the trusted zone selects contract "
                      "columns (personal values possible)")


def _person_key(of: str) -> Column:
    return Column("person_key", pa.string(), f"The person key of `{of}` (stedi_assets/person.py: NFKC, case-folded, no "
                  "whitespace, control or format character; null if nothing is left): what every rule, erasure request "
                  "and subject_id compares", key_of=of)


CUSTOMER_LANDING = Table(
    "customer_landing", "customer", "landing", _CUSTOMER + (_person_key("email"), RESCUED_DATA) + _LINEAGE, (), ("person_key", EMAIL)
)
ACCELEROMETER_LANDING = Table(
    "accelerometer_landing", "accelerometer", "landing", _ACCELEROMETER + (_person_key("user"), RESCUED_DATA) + _LINEAGE, (),
    ("person_key", EMAIL),
)
STEP_TRAINER_LANDING = Table(
    "step_trainer_landing", "step_trainer", "landing", _STEP_TRAINER + (RESCUED_DATA,) + _LINEAGE, (), ("serialNumber", SERIAL)
)
_LANDING = (CUSTOMER_LANDING, ACCELEROMETER_LANDING, STEP_TRAINER_LANDING)
_LANDING_REJECTS = tuple(Table(f"{t.name}_rejects", t.source, "landing_rejects", _REJECTS) for t in _LANDING)
_LANDING_LEDGERS = tuple(Table(f"{t.name}_files", t.source, "landing_files", _LANDING_FILES) for t in _LANDING)
CUSTOMER_LANDING_REJECTS, ACCELEROMETER_LANDING_REJECTS, STEP_TRAINER_LANDING_REJECTS = _LANDING_REJECTS
CUSTOMER_LANDING_FILES, ACCELEROMETER_LANDING_FILES, STEP_TRAINER_LANDING_FILES = _LANDING_LEDGERS

CUSTOMER_TRUSTED = Table("customer_trusted", "customer", "trusted", _CUSTOMER, ("email",), ("email", EMAIL))
ACCELEROMETER_TRUSTED = Table(
    "accelerometer_trusted", "accelerometer", "trusted", _ACCELEROMETER, ("user", "timestamp", "x", "y", "z"), ("user", EMAIL)
)
STEP_TRAINER_TRUSTED = Table(
    "step_trainer_trusted", "step_trainer", "trusted", _STEP_TRAINER, ("serialNumber", "sensorReadingTime"), ("serialNumber", SERIAL)
)
CUSTOMER_CURATED = Table("customer_curated", "customer", "curated", _CUSTOMER + (SUBJECT_ID,), ("email",), ("email", EMAIL))
_MACHINE_LEARNING = (
    SUBJECT_ID,
    Column("sensorReadingTime", pa.int64(), "Reading time of both sensors, epoch ms"),
    Column("distanceFromObject", pa.int64(), "Step trainer distance"),
    *_XYZ,
)
MACHINE_LEARNING_CURATED = Table(
    "machine_learning_curated", "machine_learning", "curated", _MACHINE_LEARNING,
    ("subject_id", "sensorReadingTime", "distanceFromObject", "x", "y", "z"), ("subject_id", SUBJECT),
)

# Written by `stedi forget`, read by every step: keyed hashes only, never an e-mail (erasure.py).
_ERASURE_REQUEST = (
    Column("erasure_key", pa.string(), "HMAC-SHA256 of the erased person's person key with STEDI_SUBJECT_KEY (= their subject_id)"),
    Column("requested_at", pa.int64(), "When the erasure was requested, epoch ms"),
    Column("key_id", pa.string(), "Fingerprint of the STEDI_SUBJECT_KEY the erasure key was made with"),
)
ERASURE_REQUESTS = Table("erasure_requests", "privacy", "erasure_requests", _ERASURE_REQUEST, ("erasure_key",))

# The person keys a landing table keeps beside the e-mail as it arrived (key column -> the column
# it is the key of); from the trusted zone on, `email` and `user` hold the key itself.
PERSON_KEY_OF: dict[str, dict[str, str]] = {t.name: {c.name: c.key_of for c in t.columns if c.key_of} for t in _LANDING}


def as_read(table: Table) -> Table:
    """The contract a landing file is read against: without the person keys."""
    return replace(table, columns=tuple(c for c in table.columns if c.key_of is None))


# Columns that name a person; none may reach the machine-learning table.
DIRECT_IDENTIFIERS = frozenset({"customerName", "email", "user", "person_key", "phone", "birthDay", "named_person_keys"})
# Columns that lead to a person: masked wherever Dagster shows a value (metadata, previews, check evidence, logs).
PERSONAL = DIRECT_IDENTIFIERS | {"serialNumber", "named_serials", "raw", RESCUED_DATA.name}

# Each landing table's rejects: built, judged and published with it, read at the version it names.
REJECTS_OF: dict[str, Table] = {t.name: rejects for t, rejects in zip(_LANDING, _LANDING_REJECTS)}

# The tables the asset graph builds.
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        *_LANDING,
        *_LANDING_REJECTS,
        *_LANDING_LEDGERS,
        *(CUSTOMER_TRUSTED, ACCELEROMETER_TRUSTED, STEP_TRAINER_TRUSTED, CUSTOMER_CURATED, MACHINE_LEARNING_CURATED),
    )
}
# Every table under the lake: the graph's, and the erasure requests `stedi forget` writes.
LAKE_TABLES: dict[str, Table] = {**TABLES, ERASURE_REQUESTS.name: ERASURE_REQUESTS}
