"""The bucket layout: a contract between uploaders, the workflow and downstream readers.

```
incoming/<batch_id>/...                    uploads (any nesting)
validation/<batch_id>/...                  data-quality results and report
validation/<batch_id>/manifest.csv         key, size, sha256 of every upload validation saw (scoring uses it)
validation/<batch_id>/data_docs/index.html GX Data Docs of the batch's last validation run (pages and assets beside it)
quarantine/<batch_id>/quarantine.json     the objects held back, with reasons
quarantine/<batch_id>/uploads/...          their byte-identical copies
results/<batch_id>/predictions.csv         one row per input object
results/<batch_id>/summary.json            counts, crack rate, model version, throughput
results/<batch_id>/overlays/<key>.png      heat maps for images labeled crack (drawn on demand, then kept; a
                                           folder of <key> named *.png gets a "~": ``overlay_key``)
results/<batch_id>/overlays/long-keys.png/<digest>.png  that of an upload whose plain overlay key would be too long
                                                        (or this folder's name: an upload ``long-keys``)
quarantine/<batch_id>/long-keys/<digest><ext>           the copy of one whose plain copy key would be too long
results/<batch_id>/_parts/...              per-shard partial results (resume state): part-N-<try>.csv rows,
                                           part-N-<try>.tiles.jsonl each image's tile boxes and probabilities
results/<batch_id>/_SUCCESS                written last: the batch is complete
runs/<run_id>.json                         one summary per nightly run
alerts/<run_id>.json                       the alerts a run raised and where each was sent (once per run)
incoming/<batch_id>/_READY                 optional: the uploader's "batch complete" marker
models/<name>/...                          the model registry
labeled/<class>/..., holdout/<class>/...   training pool and the gate's holdout
```
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import MAX_KEY_BYTES, join_key

INCOMING = "incoming"
RESULTS = "results"
VALIDATION = "validation"
QUARANTINE = "quarantine"
MODELS = "models"
SUCCESS = "_SUCCESS"
DONE = "_DONE"  # a finished shard, under results/<batch_id>/_parts/...
READY = "_READY"  # an uploader's "this batch is complete", in incoming/<batch_id>/
PARTS = "_parts"
OVERLAYS = "overlays"
TILE_SCORES_SUFFIX = ".tiles.jsonl"  # beside each part's .csv: the boxes and probabilities overlays are drawn from
MARKER_NAMES = frozenset({SUCCESS, DONE, READY})
PREDICTIONS = "predictions.csv"
SUMMARY = "summary.json"
OUTCOME = "outcome.json"
VALIDATED_MANIFEST = "manifest.csv"
QUARANTINE_MANIFEST = "quarantine.json"
QUARANTINE_COPIES = "uploads"
DRIFT_REFERENCE = "drift_reference.json"
RUNS = "runs"
ALERTS = "alerts"  # not under runs/: every runs/*.json is read as a run summary
DATA_DOCS = "data_docs"
DATA_DOCS_INDEX = "index.html"
# Where a key derived from an upload's that would pass MAX_KEY_BYTES goes instead, under a name from the digest of
# the upload's key (``long_key_name``). Out of every upload's reach: an upload's folder named like "long-keys.png"
# takes a "~" among the overlays, and every upload's copy goes under "uploads/".
LONG_KEY_OVERLAYS = "long-keys.png"
LONG_KEY_COPIES = "long-keys"

_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


def validate_batch_id(batch_id: str) -> str:
    if not _BATCH_ID.match(batch_id or ""):
        msg = (
            f"invalid batch id {batch_id!r}: use letters, digits, '.', '_', '=' and '-' "
            "(up to 128 characters, e.g. 2026-11-24 or site-7_run-3)"
        )
        raise CrackModelError(msg)
    return batch_id


def incoming_prefix(batch_id: str) -> str:
    return join_key(INCOMING, validate_batch_id(batch_id)) + "/"


def results_key(batch_id: str, *parts: str) -> str:
    return join_key(RESULTS, validate_batch_id(batch_id), *parts)


def validation_key(batch_id: str, *parts: str) -> str:
    return join_key(VALIDATION, validate_batch_id(batch_id), *parts)


def quarantine_key(batch_id: str, *parts: str) -> str:
    return join_key(QUARANTINE, validate_batch_id(batch_id), *parts)


def quarantine_copy_key(batch_id: str, relative_key: str, sha256: str | None = None) -> str:
    """``quarantine/<batch_id>/uploads/<key relative to the batch>``: a held-back upload's copy, in a folder of its
    own so that no upload's name (``quarantine.json``, or a folder of that name) can meet the manifest's.

    With ``sha256`` (the copy's digest), the name of a later copy of other bytes, beside the earlier one that
    holds the plain name: ``cut.<first 16 hex digits>.jpg``. A name that would make the key too long for a
    store gives way to the whole digest: ``uploads/<folder>/<sha256>.jpg``, or ``uploads/<sha256>``.

    An upload whose plain copy key would be too long (its key within 10 bytes of the limit) has its copy at
    ``quarantine/<batch_id>/long-keys/<digest of its key>.jpg`` instead (``.<16 hex>.jpg`` with ``sha256``).
    """
    plain = quarantine_key(batch_id, QUARANTINE_COPIES, relative_key)
    if not fits(plain):
        stem, extension = long_key_name(relative_key)
        name = stem if sha256 is None else f"{stem}.{sha256[:16]}"
        return quarantine_key(batch_id, LONG_KEY_COPIES, f"{name}{extension}")
    if sha256 is None:
        return plain
    folder, _, name = relative_key.rpartition("/")
    stem, extension = posixpath.splitext(name)
    for key in (
        quarantine_key(batch_id, QUARANTINE_COPIES, folder, f"{stem}.{sha256[:16]}{extension}"),
        quarantine_key(batch_id, QUARANTINE_COPIES, folder, f"{sha256}{extension[:16]}"),
    ):
        if fits(key):
            return key
    return quarantine_key(batch_id, QUARANTINE_COPIES, sha256)


def fits(key: str) -> bool:
    """Is ``key`` within the key length every store keeps (S3's)?"""
    return len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def long_key_name(relative_key: str) -> tuple[str, str]:
    """(stem, extension) of the name a derived key too long for a store takes instead: the SHA-256 of the upload's
    key relative to its batch (two keys differing anywhere get two names), and its extension (at most 16 bytes)."""
    digest = hashlib.sha256(relative_key.encode("utf-8", "surrogatepass")).hexdigest()
    extension = posixpath.splitext(relative_key.rpartition("/")[2])[1]
    return digest, extension[:16]


def run_summary_key(run_id: str) -> str:
    """``runs/<run_id>.json``, the run id made safe for a key (Airflow run ids hold ':' and '+')."""
    return join_key(RUNS, f"{_run_file_stem(run_id)}.json")


def alerts_key(run_id: str) -> str:
    """``alerts/<run_id>.json``: the alerts one run raised and which were sent (a retry sends none twice)."""
    return join_key(ALERTS, f"{_run_file_stem(run_id)}.json")


def _run_file_stem(run_id: str) -> str:
    """The run id where it is safe as it is; else its safe characters and a digest of it whole: two run ids
    that differ only in the characters replaced (``a:b`` and ``a+b``, run ids an API caller chose) or past the
    200th would otherwise share one file, and one run's summary or sent alerts would pass for the other's."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", run_id)
    if safe == run_id and len(run_id) <= 200:
        return run_id
    return f"{safe[:180]}-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


def data_docs_key(batch_id: str, *parts: str) -> str:
    """``validation/<batch_id>/data_docs/...``: the GX Data Docs site of the batch's validation."""
    return validation_key(batch_id, DATA_DOCS, *parts)


def data_docs_index_key(batch_id: str) -> str:
    """``validation/<batch_id>/data_docs/index.html``: the page to open (the ops view links to it)."""
    return data_docs_key(batch_id, DATA_DOCS_INDEX)


def notification_key(model_name: str, version: str, run_id: str) -> str:
    """``models/<name>/notifications/<run_id>-<version>.json``: one notice per run and candidate version."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", run_id)[:120]
    return join_key(MODELS, model_name, "notifications", f"{safe}-{version}.json")


def relative_to_batch(key: str, batch_id: str) -> str:
    return key.removeprefix(incoming_prefix(batch_id))


def parts_key(batch_id: str, model_version: str, *parts: str) -> str:
    """``results/<batch_id>/_parts/<model_version>/...``: a shard's parts go under its ``Shard.name``."""
    return results_key(batch_id, PARTS, model_version, *parts)


# An upload folder named like an overlay file (``x.jpg.png/``), or like one escaped already (``x.jpg.png~/``); in
# any case, for a file system that does not tell case.
_OVERLAY_FILE_LIKE = re.compile(r".*\.png~*", re.DOTALL | re.IGNORECASE)


def overlay_key(batch_id: str, object_key: str) -> str:
    """``results/<batch_id>/overlays/<key relative to the batch>.png``: the heat map of one upload.

    A folder whose name ends in ``.png`` (then any ``~``) takes one ``~`` more among the overlays: the overlay
    of ``x.jpg`` is the file ``x.jpg.png``, which a file system cannot also hold as the folder of the overlay of
    ``x.jpg.png/y.jpg`` (``x.jpg.png~/y.jpg.png``). Overlays stored before keep the plain form
    (``legacy_overlay_key``); readers look there too.

    An upload whose overlay key would be too long for a store (its key within 12 bytes of the limit), or would be
    the name of that folder (an upload ``long-keys`` at the top of the batch, in any case), has its overlay at
    ``results/<batch_id>/overlays/long-keys.png/<digest of its key>.png`` (``long_key_overlay_batch``).
    """
    relative_key = relative_to_batch(object_key, batch_id)
    *folders, name = relative_key.split("/")
    escaped = [f"{folder}~" if _OVERLAY_FILE_LIKE.fullmatch(folder) else folder for folder in folders]
    plain = results_key(batch_id, OVERLAYS, *escaped, f"{name}.png")
    # An upload named "long-keys" at the top of the batch would have its overlay as a file where the folder of
    # the digest-named overlays goes (a file system holds one or the other): it takes a digest name too.
    if fits(plain) and (folders or f"{name}.png".casefold() != LONG_KEY_OVERLAYS):
        return plain
    return results_key(batch_id, OVERLAYS, LONG_KEY_OVERLAYS, f"{long_key_name(relative_key)[0]}.png")


def legacy_overlay_key(batch_id: str, object_key: str) -> str:
    """Where an overlay was stored before its folders were escaped (``overlay_key``): the same key unless the
    upload is in a folder named like an overlay file."""
    return results_key(batch_id, OVERLAYS, f"{relative_to_batch(object_key, batch_id)}.png")


def overlay_keys(batch_id: str, object_key: str) -> list[str]:
    """Where an upload's overlay may be stored: ``overlay_key``, then ``legacy_overlay_key`` if it differs and is
    no other upload's overlay key (that of ``a.png~/z.jpg`` is that of ``a.png/z.jpg`` now: not read as its)."""
    key, legacy = overlay_key(batch_id, object_key), legacy_overlay_key(batch_id, object_key)
    if legacy != key and fits(legacy) and overlay_source(legacy) == (batch_id, object_key):
        return [key, legacy]
    return [key]


def overlay_source(key: str) -> tuple[str, str] | None:
    """(batch id, upload key) of an overlay key, of either form; None if ``key`` is not one, or is the digest-named
    overlay of a long key, which names no upload (``long_key_overlay_batch``)."""
    parts = key.split("/", 3)
    if len(parts) < 4 or parts[0] != RESULTS or parts[2] != OVERLAYS or not parts[3].endswith(".png"):
        return None
    if not _BATCH_ID.match(parts[1]) or parts[3] == ".png" or long_key_overlay_batch(key):
        return None
    *folders, name = parts[3].removesuffix(".png").split("/")
    # A legacy key's folder is never escaped: "x.png" is itself either way; only "x.png~" loses its "~".
    plain = [folder[:-1] if folder.endswith("~") and _OVERLAY_FILE_LIKE.fullmatch(folder) else folder
             for folder in folders]  # fmt: skip
    return parts[1], incoming_prefix(parts[1]) + "/".join([*plain, name])


_LONG_KEY_OVERLAY = re.compile(rf"{RESULTS}/([^/]+)/{OVERLAYS}/{re.escape(LONG_KEY_OVERLAYS)}/[0-9a-f]{{64}}\.png")


def long_key_overlay_batch(key: str) -> str | None:
    """The batch id of ``key`` if it is the overlay of an upload whose key was too long for a plain overlay key
    (``overlay_key``), else None. Which upload's it is, only the batch's rows tell (``long_key_overlays``)."""
    found = _LONG_KEY_OVERLAY.fullmatch(key)
    return found[1] if found and _BATCH_ID.match(found[1]) else None


def long_key_overlays(batch_id: str, object_keys: Iterable[str]) -> dict[str, str]:
    """Overlay key -> upload key, of those of ``object_keys`` whose overlay is named by a digest."""
    overlays = {overlay_key(batch_id, key): key for key in object_keys}
    return {overlay: key for overlay, key in overlays.items() if long_key_overlay_batch(overlay)}


def is_marker(key: str) -> bool:
    """Is this bookkeeping rather than an upload? An explicit list, nothing else:

    ``_SUCCESS``, ``_DONE`` and ``_READY``, and anything under ``results/<batch_id>/_parts/``. Every
    other name is an upload and gets a row: ``_DSC1234.JPG``, ``.hidden.jpg``, ``.DS_Store``, ``__MACOSX/...``,
    and ``.tmp-scan.jpg`` (the local store's own temporary and side files never show in its listings).
    """
    parts = key.split("/")
    name = parts[-1]
    if name in MARKER_NAMES:
        return True
    return len(parts) > 3 and parts[0] == RESULTS and parts[2] == PARTS


def parse_batch_uri(uri: str) -> tuple[str, str]:
    """``<store>/incoming/<batch_id>`` -> (store URI, batch id)."""
    head, _, batch_id = uri.rstrip("/").rpartition("/")
    folder = head.rpartition("/")[2]
    if folder != INCOMING or not batch_id:
        msg = f"batch URI {uri!r} must end in {INCOMING}/<batch_id> (e.g. s3://bucket/{INCOMING}/2026-11-24)"
        raise CrackModelError(msg)
    root = head[: -len(INCOMING)]
    scheme, separator, path = root.partition("://")
    if not separator:  # a local path: "incoming/b" is here, "/incoming/b" at the top of the file system
        return root.rstrip("/") or ("/" if root.startswith("/") else "."), validate_batch_id(batch_id)
    if scheme == "s3" and not path.strip("/"):
        raise CrackModelError(f"batch URI {uri!r} names no bucket: use s3://<bucket>/{INCOMING}/<batch_id>")
    return f"{scheme}://{path.rstrip('/') or '/'}", validate_batch_id(batch_id)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count``; a key belongs to the shard its hash picks."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise CrackModelError(f"invalid shard {self.index}/{self.count}: need 0 <= index < count")

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise CrackModelError(f"invalid shard {text!r}: use INDEX/COUNT with a 0-based index, e.g. 0/4") from None
        return cls(index, count)

    def owns(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    @property
    def name(self) -> str:
        return f"shard-{self.index:04d}-of-{self.count:04d}"
