"""Where the raw JSON arrives: a folder or `s3://bucket/prefix` holding one folder per source."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

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
        """The JSON files of one source with what identifies their content (size and
        modification time, and on S3 the ETag), in a stable order: one listing of the
        folder or bucket prefix, every page of it."""
        return self.survey(source)[0]

    def survey(self, source: str) -> tuple[dict[str, Entry], dict[str, str]]:
        """One listing of a source: the files that are read (`entries`), and every other file
        under its folder with why it is not read, so no file is ignored without a word."""
        entries, skipped = {}, {}
        for key, entry in self.store().entries(self._folder(source) + "/").items():
            reason = skip_reason(key)
            if reason is None:
                entries[key] = entry
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
