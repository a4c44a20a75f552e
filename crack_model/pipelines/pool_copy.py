"""The local copy of the labeled pool that training reads, and the store URLs a registered version names.

Training reads local files; the copy is made of exactly what the training suite judged (people go on
uploading meanwhile), and the model's ``split.csv`` and ``metrics.json`` name each photo by its store URL,
not by the copy's path, which is deleted after training.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectInfo, ObjectStore
from crack_model.core.storage import open_store
from crack_model.core.uploads import within_size_limit
from crack_model.data.image_names import why_not_an_image
from crack_model.pipelines.stores import StoreLike

log = module_logger(__name__)


def download_labeled(
    store: StoreLike, prefix: str, destination: Path, class_names: list[str], validated: Mapping[str, str] | None = None
) -> Path:
    """Make ``destination/<class>/...`` a copy of ``<prefix>/<class>/...`` in a store, and return it.

    Training reads local files. A folder kept from an earlier run (``crack-model retrain --work``) is
    brought up to date: a file whose bytes are known to be the object's (same size and MD5 ETag) is kept,
    every other one copied again, and a file whose object is gone is removed, so a photo taken out of
    the pool is never trained on again.

    ``validated`` (key -> SHA-256 of the bytes the training suite judged): only those objects, with those
    bytes, are copied. People go on uploading between validation and training, and a photo added or
    replaced since was never checked: it waits for the next retraining, with a warning.
    """
    store = open_store(store)
    prefix = prefix.strip("/")
    wanted: set[Path] = set()
    for class_name in class_names:
        for info in map(within_size_limit, store.list(f"{prefix}/{class_name}/")):
            if layout.is_marker(info.key) or why_not_an_image(info.key[len(prefix) + 1 :]):
                continue  # not part of the pool (the training suite names what it leaves out, and why)
            if info.problem:  # a link, an unusable name, over the size limit: never trained on, and said so
                log.warning("skipping labeled object %s: %s", info.key, info.problem)
                continue
            if validated is not None and info.key not in validated:
                log.warning("skipping labeled object %s: added after the pool was validated (next retraining)",
                            info.key)  # fmt: skip
                continue
            target = destination / Path(*info.key[len(prefix) + 1 :].split("/"))
            if not _holds(target, info):
                store.download(info.key, target)
            if validated is not None and _sha256(target) != validated[info.key]:
                log.warning("skipping labeled object %s: replaced after the pool was validated (next retraining)",
                            info.key)  # fmt: skip
                target.unlink()
                continue
            wanted.add(target)
    if not wanted:
        raise CrackModelError(f"no labeled images under {store.url(prefix)}/<class>/ for classes {class_names}")
    for class_name in class_names:
        for stale in [path for path in (destination / class_name).rglob("*") if path.is_file() and path not in wanted]:
            log.info("removing %s from the local pool: it is no longer part of the pool in the store", stale)
            stale.unlink()
    return destination


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _holds(target: Path, info: ObjectInfo) -> bool:
    """Does the local file hold the object's bytes? Only an MD5 ETag can say so (S3, not multipart): the size alone
    cannot (a fixed-size BMP or TIFF replaced by another), so without one the object is copied again."""
    if not info.etag or "-" in info.etag or not target.is_file() or target.stat().st_size != info.size:
        return False
    with target.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest() == info.etag


def judged_photos(store: ObjectStore, profile_key: str, validated_at: str | None) -> dict[str, str]:
    """Key -> SHA-256 of each photo the training suite profiled (its ``profile.csv``), in the validation of
    ``validated_at``: a later validation of the pool (a rerun, ``crack-model validate``) writes the same
    files, and training must not take what another run judged beside this run's quarantine list."""
    outcome_key = f"{profile_key.rsplit('/', 1)[0]}/{layout.OUTCOME}"

    def check() -> None:
        stored = json.loads(store.read(outcome_key)).get("validated_at")
        if validated_at is not None and stored != validated_at:
            msg = (f"the labeled pool was validated again ({stored}) since this run validated it ({validated_at}): "
                   "run the whole retraining again")  # fmt: skip
            raise CrackModelError(msg)

    check()
    rows = csv.DictReader(io.StringIO(store.read(profile_key).decode("utf-8")))
    judged = {row["key"]: row["sha256"] for row in rows if row.get("sha256")}
    check()  # not replaced while it was read
    return judged


def named_in_store(value: Any, local: str, url: str) -> Any:
    """``value`` (metrics.json's) with each path into the local copy of the pool as the object's store URL."""
    if isinstance(value, str):
        return _as_url(value, local, url)
    if isinstance(value, dict):
        return {key: named_in_store(item, local, url) for key, item in value.items()}
    if isinstance(value, list):
        return [named_in_store(item, local, url) for item in value]
    return value


def name_split_in_store(split_csv: Path, local: str, url: str) -> None:
    """split.csv with each photo's store URL: the local copy is deleted after training, and a registered
    version must say which objects it learned from (and ``evaluate --split`` read them)."""
    with split_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[1:] = [[_as_url(row[0], local, url), *row[1:]] for row in rows[1:]]
    with split_csv.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _as_url(path: str, local: str, url: str) -> str:
    return url + path.removeprefix(local) if path.startswith(local) else path
