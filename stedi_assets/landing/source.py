"""Where the raw JSON arrives: a folder or `s3://bucket/prefix` holding one folder per source."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import pyarrow as pa

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.store import Entry, Store, open_store, read_buffer

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
HIDDEN_PREFIXES = (".", "_")  # hidden and marker files (`.DS_Store`, `_SUCCESS`, `_manifest.json`)


class NoLandingFilesError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class LandingSource:
    """The landing zone: `<root>/<source>/...` holds line-delimited JSON files at any depth.
    `prefixes` names another folder for a source (the course bucket has `customers/`); `aws`
    may read an S3 source unsigned (a public bucket). The files are only ever read."""

    root: str
    prefixes: dict[str, str] = field(default_factory=dict)
    aws: AwsAccess = field(default_factory=AwsAccess)

    def store(self) -> Store:
        return open_store(self.root, self.aws)

    def location(self, source: str) -> str:
        return self.store().uri(self._folder(source))

    def files(self, source: str) -> list[str]:
        """The JSON files of one source, as keys relative to the root, in a stable order."""
        return list(self.entries(source))

    def entries(self, source: str) -> dict[str, Entry]:
        """The JSON files of one source with what identifies their content (size,
        modification time and a content hash), in a stable order: one listing of the folder
        or bucket prefix, every page of it."""
        return self.survey(source)[0]

    def survey(self, source: str) -> tuple[dict[str, Entry], dict[str, str]]:
        """One listing of a source: the files that are read (`entries`, each with its content
        hash), and every other file under its folder with why it is not read, so no file is
        ignored without a word. Special files and symlinks out of the root are never opened."""
        store = self.store()
        entries, skipped = {}, {}
        for key, entry in store.entries(self._folder(source) + "/").items():
            reason = entry.unreadable or skip_reason(key)
            if reason is None:
                entries[key] = with_content_hash(store, key, entry)
            else:
                skipped[key] = reason
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
        yield from self.read(self.files(source))

    def read(self, keys: Iterable[str]) -> Iterator[tuple[str, pa.Buffer]]:
        store = self.store()
        for key in keys:
            yield key, read_buffer(store, key)


def with_content_hash(store: Store, key: str, entry: Entry) -> Entry:
    """`entry` with a hash of the file's content in `etag`, so that a file corrected in place
    is read again even when its size and modification time were kept (`cp -p`, `rsync -t`,
    sync clients). An S3 ETag is already one, unless the object was uploaded in parts
    (`"<hash>-<parts>"`, a hash of the parts' hashes: the same bytes uploaded in other parts
    get another, and it is only the same for the same upload). Anything else is hashed here,
    streamed: blake2b, in the standard library and faster than MD5 or SHA-256."""
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


def skip_reason(key: str) -> str | None:
    """Why a file of the landing folder is not read, or None if it is: a landing file is any
    file at any depth whose name ends in .json, .jsonl or .ndjson (any case) and does not
    start with `.` or `_`."""
    name = key.rsplit("/", 1)[-1]
    if name.startswith(HIDDEN_PREFIXES):
        return f"name starts with {name[0]!r} (a hidden or marker file)"
    if not name.lower().endswith(JSON_SUFFIXES):
        return f"not a {'/'.join(JSON_SUFFIXES)} file"
    return None
