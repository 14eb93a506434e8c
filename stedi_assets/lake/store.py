"""Object stores under the lake and the sources: a local folder, or S3.

The landing zone is read through them, and the lake's files are listed and deleted through
them (delta-rs and Arrow write its data files and log). Only whole-object operations are used (put, get, list,
delete), so the same code runs on a file system and on S3, where there is no rename and no
append."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from stedi_assets.lake.aws import AwsAccess


@dataclass(frozen=True)
class Entry:
    """What identifies one version of an object: its size and modification time, and on S3
    its ETag. A file rewritten in place gets a new one."""

    size: int
    modified_ns: int
    etag: str | None = None


class Store(Protocol):
    """Keys are `/`-separated paths relative to the store's root."""

    def uri(self, key: str = "") -> str: ...
    def list(self, prefix: str) -> list[str]: ...
    def entries(self, prefix: str) -> dict[str, Entry]: ...
    def read(self, key: str) -> bytes: ...
    def write(self, key: str, data: bytes) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def local_path(self, key: str) -> str | None: ...


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def uri(self, key: str = "") -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def entries(self, prefix: str) -> dict[str, Entry]:
        """`list`, with each file's size and modification time."""
        out = {}
        for key in self.list(prefix):
            try:
                stat = self._path(key).stat()
            except FileNotFoundError:  # deleted while we listed
                continue
            out[key] = Entry(stat.st_size, stat.st_mtime_ns)
        return out

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def write(self, key: str, data: bytes) -> None:
        # Write beside the target, then rename over it: a reader sees the old or the new
        # object, never a torn one (the same guarantee an S3 PUT gives).
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the lake from other readers
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def open_store(uri: str, access: AwsAccess | None = None) -> Store:
    """The store for a lake or source location: `s3://bucket/prefix` (reached with `access`,
    default retries and timeouts if None) or a folder."""
    if uri.startswith("s3://"):
        from stedi_assets.lake.s3_store import S3Store

        return S3Store.from_uri(uri, access)
    return LocalStore(uri)


def arrow_buffer(data: bytes) -> pa.Buffer:
    """`data` copied into memory that Arrow owns, for Arrow's readers to read from.

    Never hand Arrow the Python object itself (`pa.BufferReader(data)`, `io.BytesIO(data)`):
    the readers (pq.read_table, pyarrow.json) work on Arrow's thread pools, and a pool thread
    can drop the last reference to its input after the call has returned. Releasing a Python
    object takes the GIL, and a thread that asks for the GIL while the interpreter shuts down
    is ended by Python inside that C++ destructor: std::terminate, "terminate called without
    an active exception", SIGABRT after the process has done its work (`stedi sql` on an S3
    lake). Memory from Arrow's own pool is freed without Python, on any thread, at any time."""
    buffer = pa.allocate_buffer(len(data))
    pa.FixedSizeBufferWriter(buffer).write(data)
    return buffer


def read_buffer(store: Store, key: str) -> pa.Buffer:
    """An object's bytes in memory that Arrow owns, for Arrow to read from. A local file is
    memory-mapped: no copy and no fresh memory to fault in, which cost more than parsing
    (about 1.5 s per GB on our machines). A download is copied once."""
    local = store.local_path(key)
    if local is not None:
        with pa.memory_map(local) as f:
            return f.read_buffer()
    return arrow_buffer(store.read(key))
