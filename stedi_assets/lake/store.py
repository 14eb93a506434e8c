"""Object stores under the lake and the sources: a local folder, or S3. The landing zone is
read through them, the lake's files listed and deleted (delta-rs and Arrow write the lake).
Whole-object operations only, so the same code runs where there is no rename and no append."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from stedi_assets.lake.aws import AwsAccess


@dataclass(frozen=True)
class Entry:
    """What identifies one version of an object: size, modification time, on S3 the ETag
    (where the landing source also puts a content hash), and for a local file its ctime and
    inode, which no copy tool can set (landing/source.py `survey`). `unreadable` says why a
    listed file is never opened (a special file, a dangling symlink, one out of the root)."""

    size: int
    modified_ns: int
    etag: str | None = None
    unreadable: str | None = None
    changed_ns: int | None = None
    inode: int | None = None


class Store(Protocol):
    """Keys are `/`-separated paths relative to the store's root."""

    def uri(self, key: str = "") -> str: ...
    def entries(self, prefix: str) -> dict[str, Entry]: ...
    def read(self, key: str) -> bytes: ...
    def write(self, key: str, data: bytes) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """The keys of `entries` that can be read."""
        return [key for key, entry in self.entries(prefix).items() if entry.unreadable is None]

    def local_path(self, key: str) -> str | None:
        """The object as a local file, if it is one."""
        return None


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def uri(self, key: str = "") -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def entries(self, prefix: str) -> dict[str, Entry]:
        """Every file at `prefix` or below it, in key order; one that must not be opened is
        listed with why. Nothing leads out of the root: a symlink is read only when it names a
        regular file inside it, one to a folder is never walked (so no listing loops or reaches
        /etc), and special files are never opened (a FIFO would block a reader)."""
        base = self._path(prefix)
        if not os.path.lexists(base):
            return {}
        if not base.is_dir() or not base.resolve().is_relative_to(self.root):
            return {prefix.rstrip("/"): self._entry(base)}
        out = {}
        for folder, dirs, files in os.walk(base):
            for name in sorted(dirs + files):
                path = Path(folder, name)
                if name in dirs and not path.is_symlink():
                    continue  # walked in its turn
                out[path.relative_to(self.root).as_posix()] = self._entry(path)
        return dict(sorted(out.items()))

    def _entry(self, path: Path) -> Entry:
        try:
            target = path.resolve(strict=True) if path.is_symlink() else path
            info = target.lstat()
        except (OSError, RuntimeError):  # gone, or a symlink to nothing or to itself
            return Entry(0, 0, unreadable="a dangling symlink" if path.is_symlink() else "deleted while listed")
        if path.is_symlink() and not target.is_relative_to(self.root):
            return Entry(0, 0, unreadable="a symlink out of the root folder (not followed)")
        if not stat.S_ISREG(info.st_mode):
            return Entry(0, 0, unreadable=_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file, never opened"))
        return Entry(info.st_size, info.st_mtime_ns, changed_ns=info.st_ctime_ns, inode=info.st_ino)

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


_KINDS = {  # why a listed path that is not a regular file is never opened
    stat.S_IFDIR: "a symlink to a folder (not followed)",
    stat.S_IFIFO: "a FIFO, never opened",
    stat.S_IFSOCK: "a socket, never opened",
    stat.S_IFCHR: "a character device, never opened",
    stat.S_IFBLK: "a block device, never opened",
}


def open_store(uri: str, access: AwsAccess | None = None) -> Store:
    """The store for a lake or source location: `s3://bucket/prefix` (reached with `access`,
    default retries and timeouts if None) or a folder."""
    if uri.startswith("s3://"):
        from stedi_assets.lake.s3_store import S3Store

        return S3Store.from_uri(uri, access)
    return LocalStore(uri)


def arrow_buffer(data: bytes) -> pa.Buffer:
    """`data` copied into memory that Arrow owns. Never hand Arrow the Python object itself
    (`pa.BufferReader(data)`): a reader's pool thread can drop the last reference after the
    call returned, and releasing a Python object takes the GIL, which at interpreter shutdown
    ends in std::terminate (SIGABRT after `stedi sql` on an S3 lake). Arrow's own memory is
    freed without Python, on any thread."""
    buffer = pa.allocate_buffer(len(data))
    pa.FixedSizeBufferWriter(buffer).write(data)
    return buffer


def read_buffer(store: Store, key: str) -> pa.Buffer:
    """An object's bytes in memory that Arrow owns: a local file memory-mapped (a copy would
    cost more than parsing, about 1.5 s per GB), a download copied once."""
    local = store.local_path(key)
    if local is not None:
        with pa.memory_map(local) as f:
            return f.read_buffer()
    return arrow_buffer(store.read(key))
