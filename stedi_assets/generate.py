"""Synthetic STEDI landing data in the STEDI_SOURCE layout, with the real data's traps.

At scale 1 the course data's shape (956 customers, 81 thousand readings) and traps: the
consent key *missing* for non-consenting customers, several accelerometer rows per (user,
timestamp), reading times colliding across customers, readings before the consent date; on
request, customers listed twice and serial numbers re-used.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stedi_assets.lake.store import Store

CUSTOMERS_PER_SCALE = 956
STEP_READINGS_PER_CUSTOMER = 30
BASE_TIME_MS = 1_655_560_000_000  # June 2022, like the course data
_FIRST_NAMES = ("Santosh", "Ben", "Frank", "Sarah", "Jerry", "Lyn", "Bobby", "Liz", "Don", "Jacob", "Chris", "Trevor")
_LAST_NAMES = ("Clayton", "Khatib", "Doshi", "Lincoln", "Wu", "Jones", "Staples", "Huey", "Mitra", "Hansen", "Davis")
_TRIPLES = np.array([(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)], dtype=float)


@dataclass(frozen=True)
class GenerateOptions:
    scale: float = 1.0
    seed: int = 0
    consent_share: float = 0.5
    null_consent_share: float = 0.02  # consent key present but null: still no consent
    duplicate_emails: int = 0
    reused_serials: int = 0
    dirty_lines: bool = False  # add one line of every kind the landing parser must reject or tolerate
    files_per_source: tuple[int, int, int] = (1, 9, 3)  # customer, accelerometer, step trainer


@dataclass(frozen=True)
class GeneratedCounts:
    customer: int
    accelerometer: int
    step_trainer: int


def generate(store: Store, options: GenerateOptions = GenerateOptions()) -> GeneratedCounts:
    rng = np.random.default_rng(options.seed)
    n = max(1, round(CUSTOMERS_PER_SCALE * options.scale))
    ids = np.arange(n)
    registered = BASE_TIME_MS + np.sort(rng.integers(0, 5_000_000, n))
    consents = rng.random(n) < options.consent_share
    null_consent = ~consents & (rng.random(n) < options.null_consent_share)
    # Consent is given some time after registration, often after the first readings.
    consent_at = registered + rng.integers(0, 60_000, n)
    serials = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in ids]
    if options.reused_serials:
        donors = rng.choice(n, size=min(options.reused_serials, n // 2), replace=False)
        for receiver, donor in zip(rng.choice(np.setdiff1d(ids, donors), size=len(donors), replace=False), donors):
            serials[receiver] = serials[donor]
    emails = [f"{_FIRST_NAMES[i % len(_FIRST_NAMES)]}.{_LAST_NAMES[(i // 7) % len(_LAST_NAMES)]}{i}@test.com" for i in ids]

    def customer_line(i: int, consents: bool, null_consent: bool, age_ms: int = 0) -> str:
        record = {
            "customerName": emails[i].split("@")[0].replace(".", " ").rstrip("0123456789"),
            "email": emails[i],
            "phone": "8015551212",
            "birthDay": f"{1930 + i % 70}-01-01",
            "serialNumber": serials[i],
            "registrationDate": int(registered[i]),
            "lastUpdateDate": int(registered[i]) + 1000 - age_ms,
        }
        if consents:
            record["shareWithResearchAsOfDate"] = int(consent_at[i])
        elif null_consent:
            record["shareWithResearchAsOfDate"] = None
        if rng.random() < 0.5:
            record["shareWithPublicAsOfDate"] = int(registered[i])
        if rng.random() < 0.5:
            record["shareWithFriendsAsOfDate"] = int(registered[i])
        return json.dumps(record)

    customer_lines = [customer_line(i, consents[i], null_consent[i]) for i in ids]
    for i in rng.choice(n, size=min(options.duplicate_emails, n), replace=False):
        # An older record of the same customer; the newer one must win.
        customer_lines.append(customer_line(i, not consents[i], False, age_ms=86_400_000))

    # Reading times: 30 per customer from a session start on a 100 ms grid, so that times
    # collide across customers as they do in the course data.
    starts = registered + rng.integers(0, 600, n) * 100
    steps = rng.integers(1, 40, (n, STEP_READINGS_PER_CUSTOMER)) * 100
    times = starts[:, None] + np.cumsum(steps, axis=1)
    distances = rng.integers(180, 300, (n, STEP_READINGS_PER_CUSTOMER))

    def step_line(j: int) -> str:
        i, r = divmod(j, STEP_READINGS_PER_CUSTOMER)
        return f'{{"sensorReadingTime":{times[i, r]},"serialNumber":"{serials[i]}","distanceFromObject":{distances[i, r]}}}'

    per_time = rng.choice([1, 2, 3], p=[0.003, 0.16, 0.837], size=(n, STEP_READINGS_PER_CUSTOMER))
    # Each accelerometer line as numbers (its step reading, its triple), formatted only when
    # its file is written: the generator's memory grows with the numbers, not the text.
    reading = np.repeat(np.arange(n * STEP_READINGS_PER_CUSTOMER, dtype=np.int64), per_time.ravel())
    triple = np.empty(reading.size, dtype=np.int8)
    at = 0
    for k in per_time.ravel().tolist():
        triple[at : at + k] = rng.choice(len(_TRIPLES), size=k, replace=False)
        at += k
    triples = _TRIPLES.tolist()

    def accelerometer_line(j: int) -> str:
        i, r = divmod(int(reading[j]), STEP_READINGS_PER_CUSTOMER)
        x, y, z = triples[triple[j]]
        return f'{{"user":"{emails[i]}","timestamp":{times[i, r]},"x":{x},"y":{y},"z":{z}}}'

    counts = GeneratedCounts(len(customer_lines), reading.size, n * STEP_READINGS_PER_CUSTOMER)
    files_c, files_a, files_s = options.files_per_source
    _write(store, "customer", counts.customer, customer_lines.__getitem__, files_c, rng)
    _write(store, "accelerometer", counts.accelerometer, accelerometer_line, files_a, rng)
    _write(store, "step_trainer", counts.step_trainer, step_line, files_s, rng)
    if options.dirty_lines:
        store.write("accelerometer/landing/late/accelerometer-dirty.json", DIRTY_ACCELEROMETER.encode())
    return counts


# Every kind of line the landing zone must survive: CRLF, blank lines, two objects on a line,
# other spellings of field names, and four kinds of reject. Two rows, five rejects.
DIRTY_ACCELEROMETER = (
    '{"User":"Ben.Khatib@test.com","TimeStamp":1655564440170,"x":1,"y":0,"z":-1}\r\n'
    "\r\n"
    '{"user":"Ben.Khatib@test.com","timestamp":1655564440171,"x":0,"y":0,"z":1}{"user":"Ben.Khatib@test.com"}\n'
    "   \n"
    "this is not json\n"
    '{"user":"Ben.Khatib@test.com","timestamp":"yesterday","x":0,"y":0,"z":0}\n'
    '["a", "list"]\n'
    '{"user":"Ben.Khatib@test.com","timestamp":1655564440172,"x":0,\n'
)


def _write(store: Store, source: str, size: int, line: Callable[[int], str], files: int, rng: np.random.Generator) -> None:
    """`size` lines, each made by `line(j)` only when its file is written, in `files` files."""
    store.delete_prefix(f"{source}/landing")
    order = rng.permutation(size)  # files are not sorted by customer, as in the real data
    for part, chunk in enumerate(np.array_split(order, max(1, files))):
        # Encoded a slice at a time: one file's bytes in memory, not its text as well.
        body = b"".join(
            "".join(line(j) + "\n" for j in piece.tolist()).encode() for piece in np.array_split(chunk, max(1, len(chunk) // 100_000))
        )
        store.write(f"{source}/landing/{source}-{BASE_TIME_MS + part}.json", body or b"\n")
