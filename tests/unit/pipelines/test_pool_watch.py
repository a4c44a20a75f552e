"""The labeled-pool watch: what changes the digest, and when it is recorded."""

from __future__ import annotations

from crack_model.core.local_store import LocalStore
from crack_model.pipelines.retraining import POOL_DIGEST_KEY, labeled_pool_changed, pool_digest, record_pool_digest


def _pool(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path)
    store.write("labeled/Positive/site-b/a.jpg", b"crack")
    store.write("labeled/Negative/b.jpg", b"clean")
    return store


def test_a_change_is_announced_until_it_is_recorded(tmp_path):
    """Detecting records nothing (a run that dies before its event is recorded announces the change again)."""
    store = _pool(tmp_path)

    first = labeled_pool_changed(store)
    assert first is not None and not store.exists(POOL_DIGEST_KEY)
    assert labeled_pool_changed(store) == first
    record_pool_digest(store, first)
    assert labeled_pool_changed(store) is None
    store.write("labeled/Negative/c.jpg", b"new photo")
    assert labeled_pool_changed(store) not in (None, first)


def test_only_what_training_reads_changes_the_digest(tmp_path):
    """The recorded digest, notes and markers beside the images are not the pool; a replaced image is."""
    store = _pool(tmp_path)
    before = pool_digest(store)

    store.write(POOL_DIGEST_KEY, b"something else")
    store.write("labeled/README.txt", b"how to label")
    store.write("labeled/Negative/_SUCCESS", b"")
    assert pool_digest(store) == before
    store.write("labeled/Negative/b.jpg", b"another clean photo")
    assert pool_digest(store) != before


def test_an_image_replaced_by_another_of_the_same_size_changes_the_digest(tmp_path):
    """A local store's listing has no ETag: the digest was keys and sizes, and such an edit was never announced."""
    import os

    store = _pool(tmp_path)
    before = pool_digest(store)
    path = tmp_path / "labeled" / "Negative" / "b.jpg"
    stat = path.stat()
    store.write("labeled/Negative/b.jpg", b"CLEAN")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # file systems with coarse clocks
    assert pool_digest(store) != before
