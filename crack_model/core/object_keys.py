"""Object keys and the interface every store backend implements.

Keys are relative, ``/``-separated and validated: nothing can escape the store's root.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from crack_model.core.errors import CrackModelError

TEMP_MARKER = ".tmp-"
MULTIPART_THRESHOLD = 16 * 1024 * 1024


class PreconditionFailedError(CrackModelError):
    """A conditional write lost the race: the object changed since it was read."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None


def validate_key(key: str) -> str:
    """Return the key if it is a safe relative key, else raise naming the problem."""
    if not key or not isinstance(key, str):
        raise CrackModelError(f"invalid object key {key!r}: it must be a non-empty string")
    if "\x00" in key or "\\" in key:
        raise CrackModelError(f"invalid object key {key!r}: NUL and backslash are not allowed")
    if key.startswith("/"):
        raise CrackModelError(f"invalid object key {key!r}: keys are relative, drop the leading '/'")
    parts = key.split("/")
    if any(part in ("..", ".") for part in parts):
        raise CrackModelError(f"invalid object key {key!r}: '.' and '..' segments could escape the store")
    if any(part == "" for part in parts[:-1]):
        raise CrackModelError(f"invalid object key {key!r}: empty path segment ('//')")
    return key


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts and stray slashes."""
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))


class ObjectStore(Protocol):
    """What the rest of the library needs from storage."""

    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def folders(self, prefix: str = "") -> builtins.list[str]: ...
    def read(self, key: str) -> bytes: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def exists(self, key: str) -> bool: ...
    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None: ...
    def write_if_match(self, key: str, data: bytes, etag: str | None) -> None: ...
    def delete(self, key: str) -> None: ...
    def download(self, key: str, path: Path) -> None: ...
    def upload(self, path: Path, key: str) -> None: ...
    def url(self, key: str) -> str: ...
