"""One small object-store interface, two backends chosen by URI.

* ``s3://bucket/prefix``: boto3, so the endpoint, region and credentials come from the
  usual AWS environment and config files (``AWS_ENDPOINT_URL`` points it at MinIO or
  another S3-compatible store). Retries use botocore's standard mode; large objects go
  up in multipart chunks. An S3 PUT is atomic: readers see the old object or the new one.
* ``file:///path`` or a plain path: a local directory, the embedded default. Writes go to
  a temporary name in the same directory and are renamed into place, so readers never
  see half a file.

Keys are relative, ``/``-separated and validated: nothing can escape the store's root.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote, urlparse

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


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


def open_store(uri: str | os.PathLike[str], **options: Any) -> ObjectStore:
    """Open the store a URI names: ``s3://bucket/prefix``, ``file:///path`` or a path."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise CrackModelError(f"S3 URI {text!r} has no bucket: use s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path.strip("/"), **options)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise CrackModelError(f"unsupported storage URI {text!r}: use s3://, file:// or a local path, not {scheme}://")
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    return LocalStore(Path(text))


_BUCKETS: dict[str, S3Store] = {}
_BUCKETS_LOCK = threading.Lock()


def _bucket_store(bucket: str) -> S3Store:
    """One store (one boto3 client, one connection pool) per bucket for object-by-object reads."""
    with _BUCKETS_LOCK:
        if bucket not in _BUCKETS:
            _BUCKETS[bucket] = S3Store(bucket)
        return _BUCKETS[bucket]


def split_uri(uri: str) -> tuple[ObjectStore, str]:
    """Open the store holding one object and return it with the object's key.

    ``s3://bucket/a/b.jpg`` -> (store at s3://bucket, "a/b.jpg"); a local file -> (its folder, name).
    """
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        return _bucket_store(parsed.netloc), parsed.path.lstrip("/")
    path = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri)
    return LocalStore(path.parent), path.name


def read_uri(uri: str) -> bytes:
    store, key = split_uri(uri)
    return store.read(key)


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


class S3Store:
    """A bucket and key prefix on S3 or an S3-compatible store (MinIO, Ceph, ...)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        max_pool_connections: int = 32,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client
        self._client_options = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "max_pool_connections": max_pool_connections,
        }
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        # boto3 clients are thread-safe; build one lazily so that opening a store is free.
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                options = self._client_options
                config = Config(
                    retries={"mode": "standard", "max_attempts": 8},
                    max_pool_connections=options["max_pool_connections"],
                )
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=options["endpoint_url"],
                    region_name=options["region_name"],
                    config=config,
                )
            return self._client

    def _key(self, key: str) -> str:
        validate_key(key)
        return join_key(self.prefix, key)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix and not prefix.endswith("/"):
            # A key names one object; otherwise list it as a folder, so that
            # "incoming/b1" does not also match "incoming/b10/...".
            single = self.head(prefix)
            if single is not None:
                yield single
                return
        base = self._key(prefix.rstrip("/")) if prefix.strip("/") else self.prefix
        full_prefix = f"{base}/" if base else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for item in page.get("Contents", []):
                key = item["Key"][strip:]
                if key.endswith("/"):
                    continue  # folder placeholder objects some tools create
                yield ObjectInfo(key, int(item["Size"]), item.get("ETag", "").strip('"') or None)

    def folders(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate sub-folders of ``prefix`` (S3 common prefixes)."""
        base = self._key(prefix.strip("/")) if prefix.strip("/") else self.prefix
        full_prefix = f"{base}/" if base else ""
        names: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.add(common["Prefix"][len(full_prefix) :].strip("/"))
        return sorted(names)

    def read(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise CrackModelError(f"object not found: {self.url(key)}") from None
            raise

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return ObjectInfo(key, int(response["ContentLength"]), response.get("ETag", "").strip('"') or None)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        if len(data) >= MULTIPART_THRESHOLD:
            import io

            from boto3.s3.transfer import TransferConfig

            transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(key), ExtraArgs=extra, Config=transfer)
        else:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def write_if_match(self, key: str, data: bytes, etag: str | None) -> None:
        """Conditional PUT: If-Match the ETag read before, or If-None-Match for a new object."""
        from botocore.exceptions import ClientError

        condition = {"IfMatch": f'"{etag}"'} if etag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise PreconditionFailedError(f"{self.url(key)} changed since it was read") from None
            raise

    def delete(self, key: str) -> None:
        """Remove one object (bookkeeping only: uploads and quarantine are never deleted)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{TEMP_MARKER}{uuid.uuid4().hex}-{path.name}")
        try:
            self.client.download_file(self.bucket, self._key(key), str(temporary))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def upload(self, path: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)
        self.client.upload_file(str(path), self.bucket, self._key(key), Config=transfer)
