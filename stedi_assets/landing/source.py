"""Where the raw JSON arrives: a folder or `s3://bucket/prefix` holding one folder per source."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.store import Store, open_store, read_buffer

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


class NoLandingFilesError(FileNotFoundError):
    pass


class LandingSource(dg.ConfigurableResource):
    """The landing zone: `<root>/<source>/...` holds line-delimited JSON files at any depth.
    `prefixes` names another folder for a source (the course bucket has `customers/`); `aws`
    may read an S3 source unsigned (a public bucket). The files are only ever read."""

    root: str
    prefixes: dict[str, str] = {}
    aws: AwsAccess = AwsAccess()

    def store(self) -> Store:
        return open_store(self.root, self.aws)

    def location(self, source: str) -> str:
        return self.store().uri(self._folder(source))

    def files(self, source: str) -> list[str]:
        """The JSON files of one source, as keys relative to the root, in a stable order."""
        keys = [k for k in self.store().list(self._folder(source) + "/") if _is_json(k)]
        if not keys:
            raise NoLandingFilesError(
                f"no landing files for {source}: {self.location(source)}/ holds no "
                f"{'/'.join(JSON_SUFFIXES)} files (STEDI_SOURCE={self.root}, STEDI_SOURCE_PREFIXES)"
            )
        return keys

    def _folder(self, source: str) -> str:
        return self.prefixes.get(source, source)

    def read_all(self, source: str) -> Iterator[tuple[str, pa.Buffer]]:
        store = self.store()
        for key in self.files(source):
            yield key, read_buffer(store, key)


def _is_json(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return not name.startswith((".", "_")) and name.lower().endswith(JSON_SUFFIXES)
