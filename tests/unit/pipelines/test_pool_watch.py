"""The labeled-pool watch: what changes the digest, and when it is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.pool_watch import POOL_DIGEST_KEY, labeled_pool_changed, pool_digest, record_pool_digest


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


def _not_a_pool(root, kind: str) -> None:
    """A store at ``root`` whose pool is not there in the way ``kind`` names."""
    if kind == "linked labeled":  # the real pool lies elsewhere: the local store never follows the link
        real = _pool(root.parent / "real-pool")
        root.mkdir()
        (root / "labeled").symlink_to(real.root / "labeled")
    elif kind == "labeled a file":
        LocalStore(root).write("labeled", b"a file")
    elif kind == "no class folders":
        LocalStore(root).write("labeled/notes.txt", b"how to label")


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("missing store", "holds nothing at all: check the store's path or bucket"),
        ("linked labeled", "the labeled pool cannot be read: .*is a symbolic link"),
        ("labeled a file", "the labeled pool cannot be read: .*is a file, not a folder"),
        ("no class folders", "has no class folders: put the labeled photos in labeled/<class>/"),
    ],
)
def test_a_pool_that_is_not_there_is_refused_not_digested_as_empty(tmp_path, kind, said):
    """A mistyped store announced the digest of nothing, created labeled/_DIGEST in it and started a retraining."""
    root = tmp_path / "typo-store"
    _not_a_pool(root, kind)
    with pytest.raises(CrackModelError, match=said):
        labeled_pool_changed(LocalStore(root))
    assert not (root / "labeled" / "_DIGEST").exists()


def test_the_watch_task_fails_without_retries_and_announces_nothing(tmp_path):
    """The DAG task: AirflowFailException (a typo stays a typo), no Asset event extra, nothing written."""
    from airflow.sdk.exceptions import AirflowFailException

    from tests.unit.dags.nightly_dag import dag_task

    detect = dag_task("crack_labeled_pool_watch", "detect_pool_change")
    events: dict[object, object] = {}
    with pytest.raises(AirflowFailException, match="holds nothing at all"):
        detect(params={"store": str(tmp_path / "typo-store"), "aws_conn_id": "aws_default"}, outlet_events=events)
    assert events == {} and not (tmp_path / "typo-store").exists()


def test_a_store_without_any_labeled_pool_is_told_apart_from_a_mistyped_one(tmp_path):
    """A store that only scores (uploads, models, no labeled/) has no pool yet: its own error, saying where to put
    one; an empty labeled/ folder is a pool begun, and still refused for its missing class folders."""
    from crack_model.pipelines.pool_watch import NoLabeledPoolError

    store = LocalStore(tmp_path / "scoring-store")
    store.write("incoming/batch-1/a.jpg", b"photo")
    store.write("models/registry.json", b"{}")
    with pytest.raises(NoLabeledPoolError, match=r"no labeled pool yet.*put the labeled photos in .*labeled/<class>/"):
        labeled_pool_changed(store)
    (tmp_path / "scoring-store" / "labeled").mkdir()
    with pytest.raises(CrackModelError, match="has no class folders") as refused:
        labeled_pool_changed(store)
    assert not isinstance(refused.value, NoLabeledPoolError)


@pytest.mark.parametrize("kind", ["missing store", "linked labeled", "labeled a file", "no class folders"])
def test_what_is_no_pool_yet_is_only_a_store_without_labeled(tmp_path, kind):
    """A mistyped store, a linked or file `labeled` and a pool without class folders are not 'no pool yet'."""
    from crack_model.pipelines.pool_watch import NoLabeledPoolError

    root = tmp_path / "typo-store"
    _not_a_pool(root, kind)
    with pytest.raises(CrackModelError) as refused:
        labeled_pool_changed(LocalStore(root))
    assert not isinstance(refused.value, NoLabeledPoolError)


def test_the_watch_task_skips_a_store_that_has_no_labeled_pool(tmp_path):
    """The DAG task: AirflowSkipException saying where to put the pool (Airflow logs it as the skip's reason); no
    event, nothing written, where it failed every hour."""
    from airflow.sdk.exceptions import AirflowSkipException

    from tests.unit.dags.nightly_dag import dag_task

    store = LocalStore(tmp_path / "scoring-store")
    store.write("incoming/batch-1/a.jpg", b"photo")
    detect = dag_task("crack_labeled_pool_watch", "detect_pool_change")
    events: dict[object, object] = {}
    with pytest.raises(AirflowSkipException, match=r"no labeled pool yet.*scoring-store/labeled/<class>/"):
        detect(params={"store": str(store.root), "aws_conn_id": "aws_default"}, outlet_events=events)
    assert events == {} and not (store.root / "labeled").exists()


EARLIER_RELEASES = json.loads((Path(__file__).parent / "earlier_releases" / "pool_digests.json").read_text())
EARLIER_DIGESTS = EARLIER_RELEASES["digests"]
RICHER_POOL_DIGESTS = EARLIER_RELEASES["richer_pool"]["digests"]


@pytest.mark.parametrize("release", sorted(EARLIER_DIGESTS))
def test_a_digest_an_earlier_release_recorded_is_no_change(tmp_path, release):
    """After an upgrade the unchanged pool is not announced (it started a retraining): the record is rewritten."""
    store = _pool(tmp_path)
    store.write(POOL_DIGEST_KEY, EARLIER_DIGESTS[release].encode())

    assert labeled_pool_changed(store) is None
    assert store.read(POOL_DIGEST_KEY).decode() == pool_digest(store)
    assert labeled_pool_changed(store) is None


def test_a_pool_changed_since_an_earlier_release_recorded_it_is_announced(tmp_path):
    """The earlier forms match only the pool as it is now: a photo added since is still a change."""
    store = _pool(tmp_path)
    store.write(POOL_DIGEST_KEY, EARLIER_DIGESTS[sorted(EARLIER_DIGESTS)[0]].encode())
    store.write("labeled/Negative/c.jpg", b"new photo")

    assert labeled_pool_changed(store) == pool_digest(store)


def _richer_pool(tmp_path) -> LocalStore:
    """_pool with a photo beside a slice folder, a camera's ``_DSC`` name and notes beside the class folders."""
    store = _pool(tmp_path)
    store.write("labeled/Positive/z.jpg", b"crack 2")
    store.write("labeled/Negative/_DSC0001.JPG", b"clean 2")
    store.write("labeled/notes.txt", b"where the photos come from")
    return store


@pytest.mark.parametrize("release", sorted(RICHER_POOL_DIGESTS))
def test_a_digest_an_earlier_release_recorded_for_a_richer_pool_is_no_change(tmp_path, release):
    """The first release listed a local store's folder files first and left out names starting with "_" or ".":
    its digest of a pool with a ``_DSC`` photo or a photo beside a slice folder is no change either."""
    store = _richer_pool(tmp_path)
    store.write(POOL_DIGEST_KEY, RICHER_POOL_DIGESTS[release].encode())

    assert labeled_pool_changed(store) is None
    assert store.read(POOL_DIGEST_KEY).decode() == pool_digest(store)
