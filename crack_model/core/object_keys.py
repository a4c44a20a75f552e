"""Object keys and the interface every store backend implements.

Keys are relative, ``/``-separated and validated: nothing can escape the store's root.
"""

from __future__ import annotations

import builtins
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from crack_model.core.errors import CrackModelError

TEMP_MARKER = ".tmp-"
# A local store keeps a name too long for the file system under a hashed name, with the original
# name in a small side file ``.longname-<digest>`` next to it (store bookkeeping, never listed).
LONG_NAME_MARKER = ".longname-"
MAX_KEY_BYTES = 1024  # S3's limit, kept by every backend
MULTIPART_THRESHOLD = 16 * 1024 * 1024


class PreconditionFailedError(CrackModelError):
    """A conditional write lost the race: the object changed since it was read."""


class ObjectNotFoundError(CrackModelError):
    """A read of a key the store holds no object at (never written, deleted, or moved away)."""


class ObjectTooLargeError(CrackModelError):
    """A read with ``max_bytes`` met a larger object, and read none of it (or stopped once it grew past)."""

    def __init__(self, name: str, size: int, max_bytes: int) -> None:
        super().__init__(f"{name} is {size:,} bytes, over the {max_bytes:,} this read allows")
        self.size = size
        self.max_bytes = max_bytes


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing.

    ``problem`` is None for an object the store can serve by ``key``. Otherwise it says why the store
    cannot (a symbolic link, a name that is not valid UTF-8 or not a valid key, ...) and what to do;
    ``key`` is then a printable rendering of the name that may not work with ``read``: report the
    object as a row with that reason instead of reading it. ``size`` is 0 when it is not known.
    ``modified`` says when it was last written, as the listing tells (compared, never read as a time): a
    local store's listing has no ETag, and an image replaced by another of the same size must still show.
    """

    key: str
    size: int
    etag: str | None = None
    problem: str | None = None
    modified: str | None = None

    @property
    def version(self) -> str | None:
        """What tells this write of the object from another: the ETag, else the modification time."""
        return self.etag or self.modified


def printable_key(key: str) -> str:
    """``key`` with the bytes of a non-UTF-8 file name shown as ``\\xe9`` escapes (for messages and rows)."""
    try:
        return os.fsencode(key).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return key.encode("utf-8", "backslashreplace").decode("utf-8")


def shown_key(key: str) -> str:
    """``printable_key``, with control characters escaped too: a name holding a line break, shown in a
    reason or a log line, must not start a line of its own."""
    text = printable_key(key)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def validate_key(key: str) -> str:
    """Return the key, NFC-normalised, if it is a safe relative key, else raise naming the problem."""
    if not key or not isinstance(key, str):
        raise CrackModelError(f"invalid object key {key!r}: it must be a non-empty string")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        msg = (
            f"invalid object key {printable_key(key)!r}: it is not valid UTF-8 text "
            "(a file name in another encoding?); rename it with a UTF-8 name"
        )
        raise CrackModelError(msg) from None
    # macOS writes names decomposed (NFD), the rest of the world composed (NFC): one name, one key.
    normal = unicodedata.normalize("NFC", key)
    if "\x00" in key or "\\" in key:
        raise CrackModelError(f"invalid object key {key!r}: NUL and backslash are not allowed")
    if key.startswith("/"):
        raise CrackModelError(f"invalid object key {key!r}: keys are relative, drop the leading '/'")
    if key.endswith("/"):
        raise CrackModelError(f"invalid object key {key!r}: a key names an object, not a folder; drop the trailing '/'")
    parts = key.split("/")
    if any(part in ("..", ".") for part in parts):
        raise CrackModelError(f"invalid object key {key!r}: '.' and '..' segments could escape the store")
    if any(part == "" for part in parts):
        raise CrackModelError(f"invalid object key {key!r}: empty path segment ('//')")
    size = len(key.encode("utf-8"))  # as S3 stores it: NFC can grow a name (U+0958 decomposes), not the key
    if size > MAX_KEY_BYTES:
        msg = f"invalid object key {key[:60]!r}...: it is {size} UTF-8 bytes, the limit is {MAX_KEY_BYTES}; shorten it"
        raise CrackModelError(msg)
    return normal


def key_problem(key: str) -> str | None:
    """None if ``key`` is a valid key, else why the store cannot serve the object (a listing's ``problem``)."""
    try:
        validate_key(key)
    except CrackModelError as error:
        return f"the object's name is not a usable key: {error} (rename the object)"
    return None


def read_within(stream: BinaryIO, size: int, max_bytes: int | None, name: str) -> bytes:
    """All of ``stream``, an object the store says is ``size`` bytes, within ``max_bytes`` (None: no limit).

    The size is checked before anything is read, on the object being read rather than on a listing made
    earlier, so an object replaced by a larger one since it was listed is refused unread
    (``ObjectTooLargeError``); one that grows while it is read is read no further than the limit.
    """
    if max_bytes is None:
        return stream.read()
    if size > max_bytes:
        raise ObjectTooLargeError(name, size, max_bytes)
    data = stream.read(size + 1)
    if len(data) > size:  # it grew since: read on, at most up to the limit
        data += stream.read(max_bytes + 1 - len(data))
        if len(data) > max_bytes:
            raise ObjectTooLargeError(name, len(data), max_bytes)
    return data


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts and stray slashes."""
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))


class ObjectStore(Protocol):
    """What the rest of the library needs from storage."""

    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def folders(self, prefix: str = "") -> builtins.list[str]: ...
    def files(self, prefix: str = "") -> builtins.list[str]: ...
    def read(self, key: str, *, max_bytes: int | None = None) -> bytes: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def exists(self, key: str) -> bool: ...
    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None: ...
    def write_if_match(self, key: str, data: bytes, etag: str | None) -> None: ...
    def delete(self, key: str) -> None: ...
    def download(self, key: str, path: Path) -> None: ...
    def upload(self, path: Path, key: str) -> None: ...
    def url(self, key: str) -> str: ...
