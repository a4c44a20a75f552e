"""The local-folder store: the embedded default.

Writes go to a temporary name in the same directory and are renamed into place, so readers
never see half a file. No symbolic link below the root is ever followed: paths are opened one
folder at a time with ``O_NOFOLLOW``, and listings report links as problems. A key segment too long
for the file system is stored as ``<first 100 bytes>~<sha256[:16]><extension>``, its original name
in a side file ``.longname-<sha256[:16]>`` beside it; keys are served and listed by original name.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar

from crack_model.core.disk_names import READ_FLAGS, digest, disk_name, name_max, read_small, shown_names
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import (
    LONG_NAME_MARKER,
    TEMP_MARKER,
    ObjectInfo,
    ObjectNotFoundError,
    PreconditionFailedError,
    key_problem,
    read_within,
    validate_key,
)

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_SUBFOLDER = _FOLDER | os.O_NOFOLLOW
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_ADVICE = "the store never follows symbolic links (they can point outside it); put the real file or folder there"


class LinkRefusedError(CrackModelError):
    """A key leads through a symbolic link, which the local store never follows."""


class LocalStore:
    """A directory on a local (or mounted) file system."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _locks_guard = threading.Lock()

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)
        self._name_max = name_max(self.root)

    def url(self, key: str) -> str:
        """The object's path on disk (a trailing '/' names a folder); nothing is opened."""
        spellings = self._spellings(key.rstrip("/") or key)
        paths = [self.root.joinpath(*map(self._disk_name, segments)) for segments in spellings]
        return str(next((path for path in paths[1:] if not paths[0].exists() and path.exists()), paths[0]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The objects under ``prefix`` (a folder, or one object's key), in name order.

        Never raises for what it finds: a symbolic link, a name that is not valid UTF-8 or not a valid
        key, a pipe or a folder it cannot open comes back as an entry with ``problem`` set.
        """
        if not prefix.strip("/"):
            try:
                root = os.open(self.root, _FOLDER)
            except (FileNotFoundError, NotADirectoryError):
                return
            yield from self._walk(root, "", None)
            return
        for segments in self._spellings(prefix.rstrip("/")):
            key = "/".join(segments)
            try:
                folder = self._open_folder(segments[:-1], create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except LinkRefusedError as error:
                yield ObjectInfo(key, 0, problem=str(error))
                return
            try:
                if _lstat(folder, self._disk_name(segments[-1])) is None:
                    continue
                yield from self._describe(folder, self._disk_name(segments[-1]), key, None)
                return
            finally:
                os.close(folder)

    def folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate sub-folders of ``prefix`` (one level, like S3 common prefixes), links left out."""
        return self._names_in(prefix, want_folders=True)

    def files(self, prefix: str = "") -> builtins.list[str]:
        """Names of what is in ``prefix`` itself and is no folder (files, links: listed, never followed)."""
        return self._names_in(prefix, want_folders=False)

    def _names_in(self, prefix: str, *, want_folders: bool) -> builtins.list[str]:
        stripped = prefix.strip("/")
        for segments in self._spellings(stripped) if stripped else [[]]:
            try:
                folder = self._open_folder(segments, create=False)
            except (FileNotFoundError, NotADirectoryError, LinkRefusedError):
                continue
            try:
                with os.scandir(folder) as scan:
                    is_folder = {entry.name: entry.is_dir(follow_symlinks=False) for entry in scan}
                shown = shown_names(folder, is_folder, self._name_max)
                return sorted(shown[name][0] for name in shown if is_folder[name] == want_folders)
            finally:
                os.close(folder)
        return []

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        with self.open_object(key) as handle:
            return read_within(handle, os.fstat(handle.fileno()).st_size, max_bytes, self.url(key))

    def open_object(self, key: str) -> io.BufferedReader:
        """The object as an open binary file (for streaming); never through a symbolic link."""
        return os.fdopen(self._open_object(key), "rb")

    def head(self, key: str) -> ObjectInfo | None:
        """Size and MD5 of the object; None if there is no object the store can serve (missing, a link, a folder)."""
        validate_key(key)
        try:
            handle = self.open_object(key)
        except CrackModelError:
            return None
        with handle:  # hashed in chunks: an object of any size costs no more memory than a small one
            digest = hashlib.file_digest(handle, "md5")
            return ObjectInfo(key, handle.tell(), digest.hexdigest())

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            os.close(self._open_object(key))
        except CrackModelError:
            return False
        return True

    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        segments = validate_key(key).split("/")
        folder = self._open_folder(segments[:-1], create=True)
        try:
            name = self._keep_name(folder, segments[-1])
            try:
                self._write_at(folder, name, data)
            except IsADirectoryError:
                raise CrackModelError(f"cannot write {self.url(key)}: a folder of that name is there") from None
            except OSError as error:  # named by the temporary file, relative to the folder: name the object
                if error.errno is None:
                    raise
                raise OSError(error.errno, error.strerror, self.url(key)) from None
        finally:
            os.close(folder)

    def write_if_match(self, key: str, data: bytes, etag: str | None) -> None:
        """Write only if the object still has ``etag`` (None: only if it does not exist)."""
        with self._lock_for(key):
            current = self.head(key)
            if (current_etag := current.etag if current else None) != etag:
                msg = f"{self.url(key)} changed since it was read (expected {etag}, found {current_etag})"
                raise PreconditionFailedError(msg)
            self.write(key, data)

    @contextmanager
    def _lock_for(self, key: str) -> Iterator[None]:
        # Threads share a lock; processes serialise on an flock of a side file whose short name fits beside any.
        import fcntl

        segments = validate_key(key).split("/")
        with self._locks_guard:
            thread_lock = self._locks.setdefault(f"{self.root}/{'/'.join(segments)}", threading.Lock())
        with thread_lock:
            folder = self._open_folder(segments[:-1], create=True)
            try:
                lock_name = f"{TEMP_MARKER}lock-{digest(segments[-1])}"
                handle = os.open(lock_name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
            except OSError as error:  # a read-only store: name where, not the lock file alone
                if error.errno is None:
                    raise
                raise OSError(error.errno, error.strerror, self.url(key)) from None
            finally:
                os.close(folder)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
            finally:
                os.close(handle)  # closing drops the flock

    def delete(self, key: str) -> None:
        """Remove one object (bookkeeping only: uploads and quarantine are never deleted)."""
        for segments in self._spellings(key):
            try:
                folder = self._open_folder(segments[:-1], create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                name = self._disk_name(segments[-1])
                os.unlink(name, dir_fd=folder)
                if name != segments[-1]:
                    with suppress(FileNotFoundError):
                        os.unlink(f"{LONG_NAME_MARKER}{digest(segments[-1])}", dir_fd=folder)
                return
            except FileNotFoundError:
                continue
            except OSError as error:  # named relative to the folder (a bare "_DONE"): name the object
                if error.errno is None:
                    raise
                raise OSError(error.errno, error.strerror, self.url(key)) from None
            finally:
                os.close(folder)

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)  # a local destination the caller chose
        with self.open_object(key) as source, path.open("wb") as target:
            shutil.copyfileobj(source, target)  # in chunks: memory does not grow with the object

    def upload(self, path: Path, key: str) -> None:
        self.write(key, Path(path).read_bytes())

    def _spellings(self, key: str) -> builtins.list[builtins.list[str]]:
        """The key's segments in NFC, then as given (a decomposed name another tool put on disk)."""
        normal = validate_key(key)
        return [normal.split("/")] if normal == key else [normal.split("/"), key.split("/")]

    def _disk_name(self, segment: str) -> str:
        return disk_name(segment, self._name_max)

    def _keep_name(self, folder: int, segment: str) -> str:
        """The on-disk name for ``segment`` in ``folder``, first recording the original beside a hashed one."""
        name = self._disk_name(segment)
        sidecar = f"{LONG_NAME_MARKER}{digest(segment)}"
        if name != segment and read_small(folder, sidecar) != segment:
            self._write_at(folder, sidecar, segment.encode("utf-8"))
        return name

    def _open_folder(self, segments: builtins.list[str], *, create: bool) -> int:
        """The folder ``segments`` names, opened a level at a time, never through a link (LinkRefusedError).

        Without ``create``, FileNotFoundError or NotADirectoryError if it is not there."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        folder = os.open(self.root, _FOLDER)  # the root itself may be a link: whoever configured it chose it
        try:
            for depth, segment in enumerate(segments):
                name = self._keep_name(folder, segment) if create else self._disk_name(segment)
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(name, dir_fd=folder)
                try:
                    child = os.open(name, _SUBFOLDER, dir_fd=folder)
                except OSError as error:
                    if error.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    where = self.root.joinpath(*segments[: depth + 1])
                    if stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                        raise LinkRefusedError(f"{where} is a symbolic link: {_LINK_ADVICE}") from None
                    if create:
                        raise CrackModelError(f"cannot create the folder {where}: a file is there") from None
                    raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(where)) from None
                os.close(folder)
                folder = child
        except BaseException:
            os.close(folder)
            raise
        return folder

    def _open_object(self, key: str) -> int:
        """A read-only descriptor of the regular file ``key`` names; CrackModelError says why there is none."""
        for segments in self._spellings(key):
            try:
                folder = self._open_folder(segments[:-1], create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            where = self.root.joinpath(*segments)
            try:
                handle = os.open(self._disk_name(segments[-1]), READ_FLAGS, dir_fd=folder)
            except FileNotFoundError:
                continue
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise LinkRefusedError(f"{where} is a symbolic link: {_LINK_ADVICE}") from None
                raise
            finally:
                os.close(folder)
            if stat.S_ISREG(mode := os.fstat(handle).st_mode):
                return handle
            os.close(handle)
            what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
            raise CrackModelError(f"{where} is {what}, not an object")
        raise ObjectNotFoundError(f"object not found: {self.url(key)}")

    def _write_at(self, folder: int, name: str, data: bytes) -> None:
        temporary = f"{TEMP_MARKER}{uuid.uuid4().hex}"  # fixed length: fits beside a name of any length
        try:
            with os.fdopen(os.open(temporary, _CREATE, 0o666, dir_fd=folder), "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=folder)

    def _walk(self, folder: int, base: str, problem: str | None) -> Iterator[ObjectInfo]:
        """Everything under an open folder (closed when done), with ``problem`` inherited from its name."""
        try:
            try:
                with os.scandir(folder) as scan:
                    names = [entry.name for entry in scan]
            except OSError as error:
                yield ObjectInfo(base, 0, problem=f"the folder {base or self.root} cannot be listed: {error}")
                return
            entries = [(*shown, name) for name, shown in shown_names(folder, names, self._name_max).items()]
            for segment, name_problem, name in sorted(entries, key=lambda entry: entry[0]):
                key = f"{base}/{segment}" if base else segment
                yield from self._describe(folder, name, key, problem or name_problem)
        finally:
            os.close(folder)

    def _describe(self, folder: int, name: str, key: str, problem: str | None) -> Iterator[ObjectInfo]:
        """The listing entries of one name in an open folder: one object, a folder's objects, or a problem."""
        try:
            info = _lstat(folder, name)
        except OSError as error:
            yield ObjectInfo(key, 0, problem=f"{key} cannot be examined: {error}")
            return
        if info is None:  # removed while listing
            return
        if stat.S_ISLNK(info.st_mode):
            yield ObjectInfo(key, 0, problem=f"{key} is a symbolic link: {_LINK_ADVICE}")
        elif stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, _SUBFOLDER, dir_fd=folder)
            except OSError as error:
                yield ObjectInfo(key, 0, problem=f"the folder {key} cannot be opened: {error}")
                return
            yield from self._walk(child, key, problem)
        elif stat.S_ISREG(info.st_mode):
            yield ObjectInfo(key, info.st_size, problem=problem or key_problem(key), modified=str(info.st_mtime_ns))
        else:
            yield ObjectInfo(key, 0, problem=f"{key} is not a regular file (a pipe, socket or device)")


def _lstat(folder: int, name: str) -> os.stat_result | None:
    with suppress(FileNotFoundError):
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    return None
