"""The uploads of a batch, and the manifest validation keeps of what it saw.

Every object under ``incoming/<batch_id>/`` that is not bookkeeping (``layout.is_marker``) is an
upload and ends as one row, including those the store cannot serve (a symbolic link, a name that
is not a usable key): their listing entry carries a ``problem``, which becomes the row's reason.

Validation writes ``validation/<batch_id>/manifest.csv`` (key, size, sha256 of every upload it
profiled, and the listing's version of it: ETag or modification time). Scoring works from it: an upload
added after validation waits for the next validation, one whose bytes changed since is not scored
(``status=changed``), and one gone since, or gone when validation read it (``gone``), is not either
(``status=missing``): the next night scores it if it is back.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from crack_model.core import layout
from crack_model.core.csv_text import csv_bytes
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectInfo, ObjectNotFoundError, ObjectStore, ObjectTooLargeError
from crack_model.core.storage import split_uri

MANIFEST_COLUMNS = ("key", "size", "sha256")  # what the digest covers (``manifest_digest``)
MANIFEST_FILE_COLUMNS = (*MANIFEST_COLUMNS, "listed", "gone")

# Validation and scoring read an upload whole, so its size is what it costs in memory (times the
# fetching threads): an upload over the limit is refused by its listed size, and by the size of what a
# read opens (``read_upload``), for one replaced by a larger file since it was listed. The largest image
# decoded is 80 MP (imaging.DEFAULT_MAX_PIXELS): as an uncompressed 16-bit RGBA TIFF that is 640 MB,
# which still fits; a camera JPEG is a few dozen.
MAX_UPLOAD_BYTES = 640 * 2**20

Fetch = Callable[[str], bytes]


class UnservableObjectError(CrackModelError):
    """The store listed the object but cannot serve it (its listing entry has a ``problem``)."""


class ObjectChangedError(CrackModelError):
    """The object's bytes differ from what validation saw: it is not scored (``status=changed``)."""

    row_status = "changed"


class UploadGoneError(CrackModelError):
    """The upload is gone when scoring reads it, or was when validation did (deleted, or moved away): not scored
    (``status=missing``); the next night validates the batch again and scores it if it is back."""

    row_status = "missing"


def list_uploads(store: ObjectStore, batch_id: str) -> list[ObjectInfo]:
    """Every upload of ``incoming/<batch_id>/``, sorted by key, problem entries included."""
    uploads = [info for info in store.list(layout.incoming_prefix(batch_id)) if not layout.is_marker(info.key)]
    return sorted((within_size_limit(info) for info in uploads), key=lambda info: info.key)


def within_size_limit(info: ObjectInfo) -> ObjectInfo:
    """``info``, with a ``problem`` when it is too large to read: one such upload must not exhaust a worker's memory."""
    problem = None if info.problem else size_problem(info.size)
    return replace(info, problem=problem) if problem else info


def size_problem(size: int) -> str | None:
    """Why an object of ``size`` bytes is not read (None: it may be)."""
    if size <= MAX_UPLOAD_BYTES:
        return None
    return (
        f"too large: {size:,} bytes, over the limit of {MAX_UPLOAD_BYTES:,} for one upload; "
        "upload the photo as JPEG, or cut a larger scan into photos"
    )


def read_upload(store: ObjectStore, key: str) -> bytes:
    """The bytes of an upload or a labeled photo; one over the size limit is refused unread
    (``UnservableObjectError``)."""
    try:
        return store.read(key, max_bytes=MAX_UPLOAD_BYTES)
    except ObjectTooLargeError as error:
        raise UnservableObjectError(size_problem(error.size) or str(error)) from None


def read_photo_uri(uri: str) -> bytes:
    """``read_upload`` of the object a URI names: a labeled photo of a training folder or manifest, read again
    long after it was fingerprinted (features, tiles, the photo rule), so within the limit each time."""
    return read_upload(*split_uri(uri))


def unusable_batch_folders(store: ObjectStore) -> dict[str, str]:
    """Folders under ``incoming/`` that no night will score, each with why: their name is not a batch id."""
    unusable = {}
    for name in store.folders(layout.INCOMING):
        try:
            layout.validate_batch_id(name)
        except CrackModelError as error:
            unusable[name] = str(error)
    return unusable


def uploads_outside_batches(store: ObjectStore) -> list[str]:
    """Keys of uploads put straight into ``incoming/``, in no batch folder, so that no night scores them."""
    return [key for name in store.files(layout.INCOMING) if not layout.is_marker(key := f"{layout.INCOMING}/{name}")]


def upload_fetch(store: ObjectStore, uploads: Iterable[ObjectInfo]) -> Fetch:
    """``read_upload`` from ``store``, raising ``UnservableObjectError`` with the listing's reason for a problem
    entry (never read)."""
    problems = {info.key: info.problem for info in uploads if info.problem}

    def checked(key: str) -> bytes:
        problem = problems.get(key)
        if problem:
            raise UnservableObjectError(problem)
        return read_upload(store, key)

    return checked


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    size: int | None
    sha256: str | None
    listed: str | None = None  # the listing's version (``ObjectInfo.version``) when validated; None: not kept
    gone: bool = False  # listed, then gone when validation read it: never validated, so never scored (``missing``)

    def relisted(self, info: ObjectInfo) -> bool:
        """Does the listing show another write of the object than validation saw (same size or not)?"""
        if self.size is not None and info.size != self.size:
            return True
        return self.listed is not None and info.version is not None and info.version != self.listed


def manifest_key(batch_id: str) -> str:
    return layout.validation_key(batch_id, layout.VALIDATED_MANIFEST)


def _manifest_rows(entries: Iterable[ManifestEntry]) -> Iterator[dict[str, object]]:
    for entry in sorted(entries, key=lambda item: item.key):
        yield {"key": entry.key, "size": "" if entry.size is None else entry.size, "sha256": entry.sha256 or "",
               "listed": entry.listed or "", "gone": "yes" if entry.gone else ""}  # fmt: skip


def write_manifest(store: ObjectStore, batch_id: str, entries: Iterable[ManifestEntry]) -> None:
    rows = _manifest_rows(entries)
    store.write(manifest_key(batch_id), csv_bytes(MANIFEST_FILE_COLUMNS, rows), content_type="text/csv")


def read_manifest(store: ObjectStore, batch_id: str) -> dict[str, ManifestEntry] | None:
    """The validated manifest by key, or None if the batch was validated before manifests existed (or never)."""
    key = manifest_key(batch_id)
    if not store.exists(key):
        return None
    rows = csv.DictReader(io.StringIO(store.read(key).decode("utf-8")))
    entries = {}
    for row in rows:
        size = int(row["size"]) if row.get("size") else None
        entries[row["key"]] = ManifestEntry(row["key"], size, row.get("sha256") or None, row.get("listed") or None,
                                            gone=bool(row.get("gone")))  # fmt: skip
    return entries


def manifest_digest(store: ObjectStore, batch_id: str) -> str | None:
    """A digest of the validated manifest: it changes when a batch is validated again with other contents.

    It digests the rows, not the file's bytes, in the form manifests were written in until every field
    came quoted (``csv_text.py``): a batch validated before that change and again after it is the same batch.
    """
    manifest = read_manifest(store, batch_id)
    if manifest is None:
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_manifest_rows(manifest.values()))
    return hashlib.sha256(buffer.getvalue().encode("utf-8")).hexdigest()[:16]


def validated_fetch(fetch: Fetch, manifest: dict[str, ManifestEntry]) -> Fetch:
    """``fetch`` that refuses bytes that differ from what validation saw (``ObjectChangedError``), and says of an
    upload gone since, or gone when validation read it (never read here), that the next night scores it if it is
    back (``UploadGoneError``)."""

    def checked(key: str) -> bytes:
        entry = manifest.get(key)
        if entry is not None and entry.gone:  # back since, its bytes are still unvalidated: the next night's to check
            msg = (
                f"{key} was gone when validation read it (deleted or moved away meanwhile): not validated, so not "
                "scored; put it back under the same name, or upload it again, before the next nightly run, which "
                "validates the batch again and scores it (one not back by then is no longer part of the batch: its "
                "row goes)"
            )
            raise UploadGoneError(msg)
        try:
            data = fetch(key)
        except ObjectNotFoundError:  # a folder moved away to be looked at: back by the next night, it is scored then
            msg = (
                f"{key} is gone since validation (deleted or moved away before it was scored): not scored; put it "
                "back under the same name, or upload it again, before the next nightly run, which validates the "
                "batch again and scores it (one not back by then is no longer part of the batch: its row goes)"
            )
            raise UploadGoneError(msg) from None
        if entry is not None and entry.sha256 and hashlib.sha256(data).hexdigest() != entry.sha256:
            msg = (
                f"{key} changed after validation (validated sha256 {entry.sha256[:12]}..., now "
                f"{hashlib.sha256(data).hexdigest()[:12]}...): not scored; the next nightly run validates the "
                "batch again and scores the new bytes (or run validate and score again now)"
            )
            raise ObjectChangedError(msg)
        return data

    return checked
