"""Synthetic STEDI landing data in the STEDI_SOURCE layout: at scale 1 the course data's shape
(956 customers, 81 thousand readings) and traps: the consent key *missing* for non-consenting
customers, several accelerometer rows per (user, timestamp), reading times colliding across
customers, readings before the consent date; on request, customers listed twice and serial
numbers re-used."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import numpy as np

from stedi_assets.lake.store import Store
from stedi_assets.settings import SAMPLE_SOURCE

CUSTOMERS_PER_SCALE = 956
STEP_READINGS_PER_CUSTOMER = 30
BASE_TIME_MS = 1_655_560_000_000  # June 2022, like the course data
_FIRST_NAMES = ("Santosh", "Ben", "Frank", "Sarah", "Jerry", "Lyn", "Bobby", "Liz", "Don", "Jacob", "Chris", "Trevor")
_LAST_NAMES = ("Clayton", "Khatib", "Doshi", "Lincoln", "Wu", "Jones", "Staples", "Huey", "Mitra", "Hansen", "Davis")
# Every kind of line the landing zone must survive, written by hand in the bundled sample: CRLF,
# blank lines, two objects on a line, other spellings of field names, four kinds of reject.
DIRTY_LINES = "accelerometer/landing/late/accelerometer-dirty.json"
_TRIPLES = [(x, y, z) for x in (-1.0, 0.0, 1.0) for y in (-1.0, 0.0, 1.0) for z in (-1.0, 0.0, 1.0)]
CONSENT_SHARE = 0.5
NULL_CONSENT_SHARE = 0.02  # consent key present but null: still no consent


def generate(
    store: Store, scale: float = 1.0, seed: int = 0, duplicate_emails: int = 0, reused_serials: int = 0,
    dirty_lines: bool = False, files_per_source: tuple[int, int, int] = (1, 9, 3),
) -> dict[str, int]:
    """Write each source's landing files (`files_per_source`: customer, accelerometer, step
    trainer) and, with `dirty_lines`, the DIRTY_LINES file; return how many records each holds."""
    rng = np.random.default_rng(seed)
    n = max(1, round(CUSTOMERS_PER_SCALE * scale))
    ids = np.arange(n)
    registered = BASE_TIME_MS + np.sort(rng.integers(0, 5_000_000, n))
    consents = rng.random(n) < CONSENT_SHARE
    null_consent = ~consents & (rng.random(n) < NULL_CONSENT_SHARE)
    # Consent is given some time after registration, often after the first readings.
    consent_at = registered + rng.integers(0, 60_000, n)
    serials = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in ids]
    if reused_serials:
        donors = rng.choice(n, size=min(reused_serials, n // 2), replace=False)
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
        if consents or null_consent:
            record["shareWithResearchAsOfDate"] = int(consent_at[i]) if consents else None
        for sharing in ("shareWithPublicAsOfDate", "shareWithFriendsAsOfDate"):
            if rng.random() < 0.5:
                record[sharing] = int(registered[i])
        return json.dumps(record)

    customer_lines = [customer_line(i, consents[i], null_consent[i]) for i in ids]
    for i in rng.choice(n, size=min(duplicate_emails, n), replace=False):
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
    drawn = (rng.choice(len(_TRIPLES), size=k, replace=False).tolist() for k in per_time.ravel().tolist())  # k distinct triples
    triple = np.fromiter((t for triples in drawn for t in triples), np.int8, reading.size)

    def accelerometer_line(j: int) -> str:
        i, r = divmod(int(reading[j]), STEP_READINGS_PER_CUSTOMER)
        x, y, z = _TRIPLES[triple[j]]
        return f'{{"user":"{emails[i]}","timestamp":{times[i, r]},"x":{x},"y":{y},"z":{z}}}'

    counts = {"customer": len(customer_lines), "accelerometer": reading.size, "step_trainer": n * STEP_READINGS_PER_CUSTOMER}
    lines = (customer_lines.__getitem__, accelerometer_line, step_line)
    for (source, size), line, files in zip(counts.items(), lines, files_per_source):
        _write(store, source, size, line, files, rng)
    if dirty_lines:
        store.write(DIRTY_LINES, (SAMPLE_SOURCE / DIRTY_LINES).read_bytes())
    return counts


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
