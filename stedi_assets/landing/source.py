"""Where the raw JSON arrives: a folder or `s3://bucket/prefix` holding one folder per source."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.store import Entry, Store, open_store, read_buffer

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


class NoLandingFilesError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class LandingSource:
    """The landing zone: `<root>/<source>/...` holds line-delimited JSON files at any depth,
    only ever read. `prefixes` names another folder for a source (the course bucket has
    `customers/`); `aws` may read an S3 source unsigned (a public bucket)."""

    root: str
    prefixes: dict[str, str] = field(default_factory=dict)
    aws: AwsAccess = field(default_factory=AwsAccess)

    def store(self) -> Store:
        return open_store(self.root, self.aws)

    def location(self, source: str) -> str:
        return self.store().uri(self._folder(source))

    def survey(
        self, source: str, recorded: Mapping[str, Mapping[str, Any]] | None = None, hashed: bool = True
    ) -> tuple[dict[str, Entry], dict[str, str]]:
        """One listing of a source: the files that are read (`entries`, each with its content
        hash), and every other file under its folder with why it is not read. A local file whose
        STATUS is the one `recorded` (ledger rows by file) keeps its recorded hash, so that a tick
        does not read the whole source: why that is safe, docs/ingestion.md, "What is re-read".
        Without `hashed`, entries as listed (for a reader that reads every file anyway)."""
        store = self.store()
        entries, skipped = {}, {}
        recorded = recorded or {}
        listed_ns = time.time_ns()
        for key, entry in store.entries(self._folder(source) + "/").items():
            reason = entry.unreadable or skip_reason(key)
            if reason is not None:
                skipped[key] = reason
            elif not hashed:
                entries[key] = entry
            elif _unchanged(entry, recorded.get(key)):
                entries[key] = replace(entry, etag=recorded[key]["etag"])
            else:
                entry = with_content_hash(store, key, entry)
                racy = entry.changed_ns is not None and entry.changed_ns > listed_ns - _RACY_NS
                entries[key] = replace(entry, changed_ns=None) if racy else entry
        if not entries:
            raise NoLandingFilesError(
                f"no landing files for {source}: {self.location(source)}/ holds no "
                f"{'/'.join(JSON_SUFFIXES)} files to read (STEDI_SOURCE={self.root}, STEDI_SOURCE_PREFIXES)"
                + (f"; not read: {', '.join(f'{k} ({why})' for k, why in list(skipped.items())[:5])}" if skipped else "")
            )
        return entries, skipped

    def _folder(self, source: str) -> str:
        return self.prefixes.get(source, source)

    def read_all(self, source: str) -> Iterator[tuple[str, pa.Buffer]]:
        """Every JSON file of one source and its bytes, in a stable order."""
        store = self.store()
        for key in self.survey(source, hashed=False)[0]:
            yield key, read_buffer(store, key)


def with_content_hash(store: Store, key: str, entry: Entry) -> Entry:
    """`entry` with a hash of the file's content in `etag`: an S3 ETag, unless the object was
    uploaded in parts (`"<hash>-<parts>"`); else blake2b (faster than MD5 or SHA-256), streamed."""
    if entry.etag and "-" not in entry.etag:
        return entry
    digest = hashlib.blake2b(digest_size=16)
    local = store.local_path(key)
    if local is None:
        digest.update(store.read(key))
    else:
        with open(local, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return replace(entry, etag=f"blake2b:{digest.hexdigest()}")


# A status this recent is not recorded (`survey`): the file is hashed again next time, as a write
# right after the listing could leave its times as they were (git's "racy clean" problem).
_RACY_NS = 1_000_000_000
STATUS = ("size", "modified_ns", "changed_ns", "inode")  # what a ledger row records of a file beside its hash


def _unchanged(entry: Entry, row: Mapping[str, Any] | None) -> bool:
    """Whether a local file's status is the one recorded with its hash, all of it known."""
    if row is None or row.get("etag") is None:
        return False
    return all(row.get(name) is not None and row.get(name) == getattr(entry, name) for name in STATUS)


def skip_reason(key: str) -> str | None:
    """Why a file of the landing folder is not read (its name), or None if it is."""
    name = key.rsplit("/", 1)[-1]
    if name.startswith((".", "_")):  # `.DS_Store`, `_SUCCESS`, `_manifest.json`
        return f"name starts with {name[0]!r} (a hidden or marker file)"
    if not name.lower().endswith(JSON_SUFFIXES):
        return f"not a {'/'.join(JSON_SUFFIXES)} file"
    return None
