"""Copies of the objects validation holds back, in ``quarantine/<batch_id>/uploads/<relative key>``, and the
``quarantine.json`` that lists them with their reasons. Nothing is ever deleted: an earlier run's copy of other
bytes stays, and this run's copy goes beside it under the name with its digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.concurrency import map_bounded
from crack_model.core.documents import QuarantineManifest
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore, key_problem
from crack_model.core.uploads import ManifestEntry, UnservableObjectError, read_upload
from crack_model.quality.outcome import PASSED_WITH_QUARANTINE

log = module_logger(__name__)

# Held-back uploads being copied at once, in bytes: like profiling, within a validation worker's 1 GiB.
COPY_BYTES_IN_FLIGHT = 256 * 2**20


def quarantine_objects(
    source: ObjectStore,
    output: ObjectStore,
    batch_id: str,
    quarantined: list[dict[str, Any]],
    relative: Callable[[str], str],
    *,
    outcome: str = PASSED_WITH_QUARANTINE,
    workers: int = 8,
    judged: Mapping[str, ManifestEntry] | None = None,
    unread: Mapping[str, str] | None = None,
) -> None:
    """Copy each object's bytes to ``quarantine/<batch_id>/uploads/<relative key>`` and write ``quarantine.json``.

    Copies of earlier runs stay (nothing is deleted): where one holds other bytes (the upload was replaced
    since), this run's copy takes the name with its digest (``layout.quarantine_copy_key``), and
    ``quarantine_key`` says which. The manifest lists this run's objects only.
    ``judged`` (the profile's size and SHA-256 of each key) bounds the bytes copied at once, as
    profiling bounds them (what is held back is often the largest files), and a copy must be of the bytes
    judged: an upload replaced since is not copied, nor one judged without its bytes (``unread``: why
    the profile could not read it).
    """
    judged = judged or {}
    unread = unread or {}

    def size_of(item: dict[str, Any]) -> int:
        entry = judged.get(item["key"])
        return entry.size or 0 if entry else 0

    def copy(item: dict[str, Any]) -> None:
        try:
            entry = judged.get(item["key"])
            if entry and not entry.sha256:
                # No digest to check a copy against, and a read now may reach other bytes (a decomposed name
                # is read through its composed twin's file on a local store): no copy can be shown to be
                # of what was judged. First: the listing's reason (a name not in UTF-8) is the one to give.
                why = unread.get(item["key"]) or "its bytes could not be read when it was judged"
                item["quarantine_error"] = f"not copied: {why}"
                return
            if problem := key_problem(item["key"]):  # e.g. an S3 key ending in '/': the store would serve another
                item["quarantine_error"] = f"not copied: {problem}"
                return
            data = read_upload(source, item["key"])  # over the upload limit: refused unread
            sha256 = hashlib.sha256(data).hexdigest()
            if entry and sha256 != entry.sha256:
                item["quarantine_error"] = "not copied: the upload was replaced after it was judged; validate again"
                return
            target = _write_copy(output, batch_id, relative(item["key"]), data, sha256)
        except UnservableObjectError as error:
            item["quarantine_error"] = f"not copied: {error}"
            return
        except Exception as error:  # one object the store cannot copy keeps its reasons, without a copy
            item["quarantine_error"] = f"not copied: {type(error).__name__}: {error}"
            return
        item["quarantine_key"] = target

    list(map_bounded(copy, quarantined, workers=workers, max_in_flight_bytes=COPY_BYTES_IN_FLIGHT,
                     size_of=size_of, thread_name_prefix="quarantine"))  # fmt: skip
    manifest = QuarantineManifest(batch_id, outcome, utc_now(), quarantined)
    manifest.write(output, layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST))
    if quarantined:
        log.warning("quarantined %d object(s) of %s", len(quarantined), batch_id)


def _write_copy(output: ObjectStore, batch_id: str, relative_key: str, data: bytes, sha256: str) -> str:
    """Write ``data`` as an upload's copy and return its key: the plain one, unless an earlier run's copy of other
    bytes holds it (nothing is deleted), then the name with the digest. A copy of these bytes is not written again.
    """
    candidates = (layout.quarantine_copy_key(batch_id, relative_key),
                  layout.quarantine_copy_key(batch_id, relative_key, sha256))  # fmt: skip
    for key in candidates:
        earlier = output.head(key)
        if earlier is None:
            output.write(key, data)
            return key
        if earlier.size == len(data) and output.read(key) == data:
            return key
    msg = f"{' and '.join(map(output.url, candidates))} hold other bytes already (copies are never replaced)"
    raise CrackModelError(msg)
