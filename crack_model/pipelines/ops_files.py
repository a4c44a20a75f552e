"""Which store files the ops view may serve, with which content type, and streaming them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.core.object_keys import ObjectStore, validate_key
from crack_model.core.s3_store import S3Store

_GATE_HTML = re.compile(
    r"^models/[A-Za-z0-9][A-Za-z0-9._-]{0,63}/versions/[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}/gate_report\.html$"
)
_VALIDATION_REPORT = re.compile(r"^validation/[^/]+/report\.html$")
# A batch's GX Data Docs: a whole static site (pages, styles, scripts, images) that links within itself.
_DATA_DOCS = re.compile(rf"^{layout.VALIDATION}/[^/]+/{layout.DATA_DOCS}/.+")
_DATA_DOCS_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
}
_INLINE_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".txt": "text/plain; charset=utf-8",
}
HTML_TYPE = "text/html; charset=utf-8"
DOWNLOAD_TYPE = "application/octet-stream"


def viewable(key: str) -> tuple[str, bool] | None:
    """May the ops view serve this key, and how? ``(content type, inline)``, or None to refuse.

    Served: anything under ``results/``, ``validation/`` and ``quarantine/``, and a model version's
    ``gate_report.html``. HTML is shown inline only for the reports the workflow writes (with a
    batch's GX Data Docs site, ``validation/<batch>/data_docs/``, its styles, scripts and images);
    any other HTML (an upload named ``x.html`` copied to quarantine) and unknown types are downloads.
    """
    try:
        validate_key(key)
    except CrackModelError:
        return None
    top = key.split("/", 1)[0]
    if _GATE_HTML.match(key) or _VALIDATION_REPORT.match(key):
        return HTML_TYPE, True
    docs_type = _DATA_DOCS_TYPES.get(PurePosixPath(key).suffix.lower()) if _DATA_DOCS.match(key) else None
    if docs_type:
        return docs_type, True
    if top not in (layout.RESULTS, layout.VALIDATION, layout.QUARANTINE) or "/" not in key:
        return None
    suffix = PurePosixPath(key).suffix.lower()
    if suffix in _INLINE_TYPES:
        return _INLINE_TYPES[suffix], True
    return DOWNLOAD_TYPE, False


def iter_object(store: ObjectStore, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The object's bytes in chunks, without holding a large ``predictions.csv`` in memory."""
    if isinstance(store, LocalStore):
        if not store.exists(key):  # also False for a symbolic link: the view never serves one
            raise CrackModelError(f"object not found: {store.url(key)}")
        with store.open_object(key) as handle:
            while chunk := handle.read(chunk_size):
                yield chunk
    elif isinstance(store, S3Store):
        bucket, _, full_key = store.url(key).removeprefix("s3://").partition("/")
        body = store.client.get_object(Bucket=bucket, Key=full_key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()
    else:
        yield store.read(key)
