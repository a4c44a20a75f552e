"""The labeled-pool watch: a digest of what training reads from ``labeled/``, and the last one announced.

The ``crack_labeled_pool_watch`` DAG compares the two every hour and announces a change (which starts a
retraining) before it records the new digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from crack_model.core import layout
from crack_model.core.config import DataConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectInfo, ObjectStore, join_key
from crack_model.core.storage import folder_problem, open_store, refuse_an_empty_store
from crack_model.pipelines.stores import StoreLike
from crack_model.quality.profile import LABELED_PREFIX, labeled_objects

POOL_DIGEST_KEY = join_key(LABELED_PREFIX, "_DIGEST")

log = module_logger(__name__)


class NoLabeledPoolError(CrackModelError):
    """The store holds other things (uploads, models) and no ``labeled`` at all: a deployment that only scores, or
    one whose pool is still to come. Nothing to watch, and nothing wrong: the watch skips, where it failed every
    hour."""


def pool_digest(store: StoreLike) -> str:
    """A digest of what training reads from the pool (keys, sizes, ETags, or where there are none, as on a local
    store, modification times of the images in class folders).

    The recorded digest itself (``labeled/_DIGEST``) and files training ignores are left out: on S3 the digest
    object's own ETag changed with every recording, so an unchanged pool read as changed every hour.

    Raises:
        NoLabeledPoolError: the store has no ``labeled`` at all (``check_pool``).
        CrackModelError: there is no pool to digest (``check_pool``).
    """
    opened = open_store(store)
    check_pool(opened)
    return _digest(labeled_objects(opened, LABELED_PREFIX), modified=True)


def _digest(listing: Iterable[ObjectInfo], *, modified: bool) -> str:
    """SHA-256 of one line per object: key, size, and its ETag (else, if ``modified``, its modification time)."""
    digest = hashlib.sha256()
    for info in listing:
        version = info.etag or (info.modified if modified else None) or ""
        digest.update(f"{info.key}\t{info.size}\t{version}\n".encode())
    return digest.hexdigest()


def earlier_release_digests(store: ObjectStore) -> set[str]:
    """The digests releases before 2026-12-07 recorded for the pool as it is now. They had no modification time
    where a store has no ETag (a local store), and the first ones digested everything under ``labeled/`` but
    markers, the recorded digest included (once there was one; 50e801e: in its own order, without the names
    starting with "." or "_"): without these, the first watch after an upgrade
    took an unchanged pool for a changed one and started a retraining, which could replace the champion."""
    images = labeled_objects(store, LABELED_PREFIX)
    everything = list(store.list(LABELED_PREFIX + "/"))
    listed = [info for info in everything if not layout.is_marker(info.key)]
    unrecorded = [info for info in listed if info.key != POOL_DIGEST_KEY]
    # The first release (50e801e) took every name starting with "." or "_" for a marker (``_DSC1234.JPG`` and the
    # record too), and its local store listed a folder's files before its sub-folders (os.walk).
    first = [info for info in everything if not info.key.rpartition("/")[2].startswith((".", "_"))]
    walked = sorted(first, key=_walk_order)
    return {_digest(listing, modified=False) for listing in (images, listed, unrecorded, first, walked)}


def _walk_order(info: ObjectInfo) -> list[tuple[int, str]]:
    """Sorts keys as os.walk with sorted names lists them: in each folder its files first, then each sub-folder."""
    *folders, name = info.key.split("/")
    return [(1, folder) for folder in folders] + [(0, name)]


def check_pool(store: ObjectStore) -> None:
    """Refuse a store holding nothing (a mistyped path or bucket), a ``labeled`` that cannot be listed (a symbolic
    link, a file) and a pool without class folders: each digests as an empty pool, a change announced to
    retraining, which then failed on a pool that was never there.

    Raises:
        NoLabeledPoolError: the store holds things, but no ``labeled`` of any kind.
        CrackModelError: any of the above.
    """
    refuse_an_empty_store(store)
    if _has_no_labeled_entry(store):
        classes = ", ".join(DataConfig().class_names)
        msg = (
            f"the store {store.uri} has no labeled pool yet: nothing to watch; to retrain on this store, put the "
            f"labeled photos in {store.url(LABELED_PREFIX)}/<class>/ ({classes})"
        )
        raise NoLabeledPoolError(msg)
    if problem := folder_problem(store, LABELED_PREFIX):
        raise CrackModelError(f"the labeled pool cannot be read: {problem}")
    if not store.folders(LABELED_PREFIX):
        classes = ", ".join(DataConfig().class_names)
        msg = (
            f"the labeled pool {store.url(LABELED_PREFIX)} has no class folders: put the labeled photos in "
            f"{LABELED_PREFIX}/<class>/ ({classes}), or check the store's path or bucket"
        )
        raise CrackModelError(msg)


def _has_no_labeled_entry(store: ObjectStore) -> bool:
    """No ``labeled`` folder, link or file at the top of the store (an empty folder, or a console's folder marker,
    is a pool begun, and still refused for its missing class folders)."""
    return LABELED_PREFIX not in store.folders("") and LABELED_PREFIX not in store.files("")


def labeled_pool_changed(store: StoreLike) -> str | None:
    """The pool's digest if it differs from the last recorded one, else None. Records no change: the caller
    records it (``record_pool_digest``) once the change is announced, so a run that dies in between announces
    it again instead of losing it. A digest an earlier release recorded for the same pool is no change: it is
    recorded again in this release's form (``earlier_release_digests``), and nothing is announced."""
    store = open_store(store)
    current = pool_digest(store)
    previous = store.read(POOL_DIGEST_KEY).decode().strip() if store.exists(POOL_DIGEST_KEY) else None
    if current == previous:
        return None
    if previous is not None and previous in earlier_release_digests(store):
        log.info("the pool digest %s recorded by an earlier release is the same pool: recorded anew, unchanged",
                 previous)  # fmt: skip
        record_pool_digest(store, current)
        return None
    return current


def record_pool_digest(store: StoreLike, digest: str) -> None:
    """Remember ``digest`` as the pool's last announced state."""
    open_store(store).write(POOL_DIGEST_KEY, digest.encode())
