"""The local-folder store: the embedded default.

Writes go to a temporary name in the same directory and are renamed into place, so readers
never see half a file.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import TEMP_MARKER, ObjectInfo, PreconditionFailedError, validate_key


class LocalStore:
    """A directory on a local (or mounted) file system."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard = threading.Lock()

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root.joinpath(*PurePosixPath(key).parts)
        if self.root != path and self.root not in path.parents:
            raise CrackModelError(f"invalid object key {key!r}: it escapes the store root {self.root}")
        return path

    def url(self, key: str) -> str:
        return str(self._path(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        start = self._path(prefix) if prefix else self.root
        if start.is_file():
            yield ObjectInfo(prefix, start.stat().st_size)
            return
        if not start.is_dir():
            return
        for directory, subdirs, files in os.walk(start):
            subdirs.sort()
            for name in sorted(files):
                if name.startswith(TEMP_MARKER):
                    continue
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key, path.stat().st_size)

    def folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate sub-folders of ``prefix`` (one level, like S3 common prefixes)."""
        start = self._path(prefix.strip("/")) if prefix.strip("/") else self.root
        if not start.is_dir():
            return []
        return sorted(entry.name for entry in start.iterdir() if entry.is_dir() and not entry.name.startswith("."))

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise CrackModelError(f"object not found: {path}") from None
        except IsADirectoryError:
            raise CrackModelError(f"{path} is a folder, not an object") from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return ObjectInfo(key, path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest())

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}-{path.name}")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def write_if_match(self, key: str, data: bytes, etag: str | None) -> None:
        """Write only if the object still has ``etag`` (None: only if it does not exist)."""
        path = self._path(key)
        with self._lock_for(path):
            current = self.head(key)
            current_etag = current.etag if current else None
            if current_etag != etag:
                msg = f"{path} changed since it was read (expected {etag}, found {current_etag})"
                raise PreconditionFailedError(msg)
            self.write(key, data)

    def _lock_for(self, path: Path) -> Any:
        # Threads share a lock; processes serialise on an flock of a side file.
        with self._locks_guard:
            thread_lock = self._locks.setdefault(str(path), threading.Lock())
        return _FileLock(path.with_name(f".{path.name}.lock"), thread_lock)

    def delete(self, key: str) -> None:
        """Remove one object (bookkeeping only: uploads and quarantine are never deleted)."""
        self._path(key).unlink(missing_ok=True)

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.read(key))

    def upload(self, path: Path, key: str) -> None:
        self.write(key, Path(path).read_bytes())


class _FileLock:
    def __init__(self, path: Path, thread_lock: threading.Lock) -> None:
        self.path = path
        self.thread_lock = thread_lock
        self.handle: Any = None

    def __enter__(self) -> _FileLock:
        import fcntl

        self.thread_lock.acquire()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+b")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        self.thread_lock.release()
