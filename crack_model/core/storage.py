"""Open the store a URI names: ``s3://bucket/prefix`` (S3 or MinIO), ``file:///path`` or a plain path.

An ``s3://`` store uses the boto3 session and endpoint passed to ``open_store``; without them, the
ones lent by an enclosing ``lend_s3_session`` block (the library's deeper layers open sub-URIs such
as a holdout, a model folder or a drift reference by URI); else the usual AWS environment.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.core.object_keys import ObjectStore
from crack_model.core.s3_store import S3Store

LOCAL_FETCH_THREADS, REMOTE_FETCH_THREADS = 2, 8


def fetch_threads(store: ObjectStore) -> int:
    """Threads worth fetching a batch's objects with, by default.

    A local folder answers in tens of microseconds: more threads only take turns at the GIL (8 cost
    ~0.14 ms of CPU more per 227-px patch than 2, in thread switches;
    ``bench/results/pipeline-overhead-fetch-threads.md``).
    Two, not one, so that a network mount or a cold disk still has a read waiting while another is
    served. Object storage answers in milliseconds: 8 keep the decoder fed.
    """
    return LOCAL_FETCH_THREADS if isinstance(store, LocalStore) else REMOTE_FETCH_THREADS


def listed_spelling(store: ObjectStore, key: str) -> str:
    """``key`` as the store's listing shows an object written under it, to compare with listed keys.

    A local store writes every name composed (NFC: one name, one file, as macOS and the rest spell it), so the
    overlay written for a decomposed (NFD) upload name is listed composed. S3 keeps the bytes given: there an
    NFC and an NFD key are two objects, each with its own overlay.
    """
    return unicodedata.normalize("NFC", key) if isinstance(store, LocalStore) else key


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


def open_store(uri: str | os.PathLike[str] | ObjectStore, **options: Any) -> ObjectStore:
    """Open the store a URI names: ``s3://bucket/prefix``, ``file:///path`` or a path; an open store as it is.

    Args:
        options: for ``s3://`` only, passed to ``S3Store``: ``session`` (a boto3 Session),
            ``endpoint_url``, ``region_name``, ... (default: those lent by ``lend_s3_session``).
    """
    if not isinstance(uri, str | os.PathLike):
        if options:
            raise CrackModelError(f"store {uri.uri} is already open: options apply when opening a URI")
        return uri
    text = os.fspath(uri)
    if text.startswith("s3://"):
        bucket, prefix = split_s3_uri(text)
        return S3Store(bucket, prefix.strip("/"), **{**_lent_s3_options(), **options})
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise CrackModelError(f"unsupported storage URI {text!r}: use s3://, file:// or a local path, not {scheme}://")
    if text.startswith("file://"):
        text = file_uri_path(text)
    return LocalStore(Path(text))


def refuse_an_empty_store(store: ObjectStore) -> None:
    """A mistyped path or bucket holds nothing at all: refuse it rather than write into it or report it empty.

    A new store holds nothing either (compose creates the bucket empty): the message says what fills one, or its
    first night told the operator of a store rightly set to check the setting, and nothing else."""
    if not store.folders("") and next(iter(store.list("")), None) is None:
        msg = (f"the store {store.uri} holds nothing at all: check the store's path or bucket; if it is a new store, "
               "put labeled photos under labeled/<class>/ and train a champion (the crack_retraining DAG) before "
               "uploads under incoming/<batch>/ can be scored")  # fmt: skip
        raise CrackModelError(msg)


def folder_problem(store: ObjectStore, folder: str) -> str | None:
    """Why ``folder`` itself cannot be listed (a symbolic link, a file, a folder that cannot be opened), or None.

    Its listing is empty then, as that of an empty folder is: a caller that takes it for one sees nothing to do,
    night after night, and nobody hears of the uploads it holds.
    """
    name = folder.strip("/")
    first = next(iter(store.list(f"{name}/")), None)  # a store lists a folder that is no folder as one entry
    if first is None or first.key != name:
        return None
    return first.problem or f"{store.url(name)} is a file, not a folder"


def file_uri_path(uri: str) -> str:
    """``file:///data/a%20b`` -> "/data/a b": percent escapes decoded, ``?`` and ``#`` kept (they are in file names)."""
    host, slash, path = uri.removeprefix("file://").partition("/")
    if host.lower() not in ("", "localhost"):
        raise CrackModelError(f"file URI {uri!r} names host {host!r}: use file:///path for this machine's files")
    if not slash:
        raise CrackModelError(f"file URI {uri!r} names no path: use file:///path")
    return unquote("/" + path)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "a/b"). The rest is a key, taken as it is: S3 keys may hold ``?``,
    ``#`` and ``%``, which a URL parser would read as a query, a fragment or an escape."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise CrackModelError(f"S3 URI {uri!r} has no bucket: use s3://bucket/prefix")
    return bucket, key


# Process-wide rather than a ContextVar: the deeper layers read objects by URI from worker threads.
_LENT_S3_OPTIONS: dict[str, Any] = {}
_LENT_LOCK = threading.Lock()


def _lent_s3_options() -> dict[str, Any]:
    with _LENT_LOCK:
        return dict(_LENT_S3_OPTIONS)


@contextmanager
def lend_s3_session(session: Any = None, endpoint_url: str | None = None) -> Iterator[None]:
    """Within the block, ``s3://`` URIs opened without options use this boto3 session and endpoint.

    For one workflow step per process (an Airflow task is one): the step opens its store with a
    session, and the holdout, model folders and reports its deeper layers open by URI reuse it,
    with no credentials in ``os.environ``. The previous loan is restored on exit.
    """
    lent = {key: value for key, value in (("session", session), ("endpoint_url", endpoint_url)) if value is not None}
    with _LENT_LOCK:
        previous = dict(_LENT_S3_OPTIONS)
        _LENT_S3_OPTIONS.clear()
        _LENT_S3_OPTIONS.update(lent)
    try:
        yield
    finally:
        with _LENT_LOCK:
            _LENT_S3_OPTIONS.clear()
            _LENT_S3_OPTIONS.update(previous)


_BUCKETS: dict[tuple[str, int, str | None], S3Store] = {}
_BUCKETS_LOCK = threading.Lock()


def _bucket_store(bucket: str) -> S3Store:
    """One store (one boto3 client, one connection pool) per bucket and session for object-by-object reads."""
    options = _lent_s3_options()
    # The cached store holds the session, so its id cannot be reused by another session meanwhile.
    cache_key = (bucket, id(options.get("session")), options.get("endpoint_url"))
    with _BUCKETS_LOCK:
        if cache_key not in _BUCKETS:
            _BUCKETS[cache_key] = S3Store(bucket, **options)
        return _BUCKETS[cache_key]


def split_uri(uri: str) -> tuple[ObjectStore, str]:
    """Open the store holding one object and return it with the object's key.

    ``s3://bucket/a/b.jpg`` -> (store at s3://bucket, "a/b.jpg"); a local file -> (its folder, name).
    """
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        return _bucket_store(bucket), key.lstrip("/")
    path = Path(file_uri_path(uri) if uri.startswith("file://") else uri)
    return LocalStore(path.parent), path.name


def read_uri(uri: str) -> bytes:
    store, key = split_uri(uri)
    return store.read(key)
