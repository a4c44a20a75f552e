"""Markers are an explicit list: everything else in a batch is an upload and gets a row."""

from __future__ import annotations

import hashlib

import pytest

from crack_model.core import layout
from crack_model.core.local_store import LocalStore


@pytest.mark.parametrize(
    "key",
    [
        "incoming/b1/_DSC1234.JPG",
        "incoming/b1/_MG_0001.jpg",
        "incoming/b1/.hidden.jpg",
        "incoming/b1/.DS_Store",
        "incoming/b1/__MACOSX/._photo.jpg",
        "incoming/b1/sub/_SUCCESS.jpg",
        "incoming/b1/_parts/photo.jpg",
        "incoming/b1/.tmp.jpg",
        "incoming/b1/.longname-photo.jpg",
        "incoming/b1/.tmp-0123abcd-photo.jpg",  # named like a store's bookkeeping: no store's listing holds those
        "incoming/b1/.longname-0123456789abcdef",
        "labeled/crack/_DSC0001.JPG",
    ],
)
def test_uploads_with_underscore_or_dot_names_are_not_markers(key):
    """Camera names like _DSC1234.JPG, hidden files and __MACOSX/ entries are uploads, not bookkeeping."""
    assert not layout.is_marker(key)


@pytest.mark.parametrize(
    "key",
    [
        "results/b1/_SUCCESS",
        "results/b1/_parts/v1/shard-0000-of-0001/_DONE",
        "results/b1/_parts/v1/shard-0000-of-0001/part-000000.csv",
        "incoming/b1/_READY",
        "_SUCCESS",
    ],
)
def test_the_listed_bookkeeping_names_are_markers(key):
    """_SUCCESS, _DONE, _READY and results/<batch>/_parts/... are markers."""
    assert layout.is_marker(key)


def test_a_batch_listing_keeps_every_upload_and_drops_only_markers(tmp_path):
    """Filtering a listing with is_marker leaves _DSC1234.JPG, .hidden.jpg and __MACOSX/ in, _READY out."""
    store = LocalStore(tmp_path)
    uploads = [
        "incoming/b1/_DSC1234.JPG",
        "incoming/b1/.hidden.jpg",
        "incoming/b1/__MACOSX/._a.jpg",
        "incoming/b1/a.jpg",
    ]
    for key in [*uploads, "incoming/b1/_READY"]:
        store.write(key, b"x")
    kept = [info.key for info in store.list(layout.incoming_prefix("b1")) if not layout.is_marker(info.key)]
    assert sorted(kept) == sorted(uploads)


def test_an_overlay_key_leads_back_to_its_upload():
    """overlay_source inverts overlay_key (nested names, spaces, unicode) and refuses any other key."""
    for key in ("incoming/b1/a.jpg", "incoming/b1/site a/ünï/photo 1.JPG"):
        overlay = layout.overlay_key("b1", key)
        assert overlay.startswith("results/b1/overlays/") and overlay.endswith(".png")
        assert layout.overlay_source(overlay) == ("b1", key)
    for key in ("incoming/b1/x.jpg.png/y.jpg", "incoming/b1/a.PNG~/b.png/c.jpg", "incoming/b1/a~/c.jpg"):
        assert layout.overlay_source(layout.overlay_key("b1", key)) == ("b1", key)
        assert layout.overlay_source(layout.legacy_overlay_key("b1", key)) == ("b1", key.replace("PNG~", "PNG"))
    for other in ("results/b1/predictions.csv", "results/b1/overlays/a.jpg", "results/b1/overlays/.png",
                  "results/../overlays/a.png", "validation/b1/overlays/a.png", "results/b1/overlays"):  # fmt: skip
        assert layout.overlay_source(other) is None


def test_run_ids_that_differ_only_in_unsafe_characters_get_files_of_their_own():
    """`a:b` and `a+b` (run ids an API caller chose) shared runs/a_b.json: one run's summary passed for the other's."""
    ids = [
        "manual__2026-12-07T02:00:00+00:00",
        "manual__2026-12-07T02_00_00_00_00",
        "manual__2026-12-07T02+00+00+00+00",
    ]
    for key_of in (layout.run_summary_key, layout.alerts_key):
        keys = [key_of(run_id) for run_id in ids]
        assert len(set(keys)) == 3 and keys[1].endswith("/manual__2026-12-07T02_00_00_00_00.json")
        assert key_of(ids[0]) == key_of(ids[0]) and "+" not in keys[0] and ":" not in keys[0]
        long_ids = ["x" * 200 + "a", "x" * 200 + "b"]
        assert key_of(long_ids[0]) != key_of(long_ids[1]) and len(key_of(long_ids[0])) < 220


def test_a_later_quarantine_copy_is_named_with_its_digest_and_stays_within_the_key_limit():
    """Beside the plain name: ``cut.<16 hex digits>.jpg``; a name too long for that takes the whole digest."""
    digest = "ab" * 32
    assert layout.quarantine_copy_key("b", "site/cut.jpg") == "quarantine/b/uploads/site/cut.jpg"
    assert layout.quarantine_copy_key("b", "site/cut.jpg", digest) == f"quarantine/b/uploads/site/cut.{digest[:16]}.jpg"
    assert layout.quarantine_copy_key("b", ".hidden", digest) == f"quarantine/b/uploads/.hidden.{digest[:16]}"
    long_name = "n" * 990 + ".jpg"
    assert layout.quarantine_copy_key("b", long_name, digest) == f"quarantine/b/uploads/{digest}.jpg"
    long_folder = "f" * 990
    assert layout.quarantine_copy_key("b", f"{long_folder}/x.jpg", digest) == f"quarantine/b/uploads/{digest}"


def test_an_overlay_file_is_never_the_folder_of_another_overlay():
    """``x.jpg`` and ``x.jpg.png/y.jpg``: the overlay file ``x.jpg.png``, the other's in the folder ``x.jpg.png~``."""
    assert layout.overlay_key("b1", "incoming/b1/x.jpg") == "results/b1/overlays/x.jpg.png"
    assert layout.overlay_key("b1", "incoming/b1/x.jpg.png/y.jpg") == "results/b1/overlays/x.jpg.png~/y.jpg.png"
    assert layout.overlay_keys("b1", "incoming/b1/x.jpg.png/y.jpg") == [
        "results/b1/overlays/x.jpg.png~/y.jpg.png",
        "results/b1/overlays/x.jpg.png/y.jpg.png",  # where it was stored before: still read
    ]
    assert layout.overlay_keys("b1", "incoming/b1/site/y.jpg") == ["results/b1/overlays/site/y.jpg.png"]
    # The former key of a.png~/z.jpg is a.png/z.jpg's key now: never read as a.png~/z.jpg's overlay.
    assert layout.overlay_keys("b1", "incoming/b1/a.png~/z.jpg") == ["results/b1/overlays/a.png~~/z.jpg.png"]


def upload_key_of(size: int, tail: str = "photo.jpg", batch_id: str = "b1") -> str:
    """An upload key of ``size`` UTF-8 bytes: folders of 200 bytes, then ``tail``."""
    prefix = f"incoming/{batch_id}/"
    body = size - len(prefix) - len(tail)
    folders = []
    while body > 0:
        take = min(200, body - 1) if body > 201 else body - 1
        folders.append("d" * take)
        body -= take + 1
    key = prefix + "/".join(folders) + "/" + tail
    assert len(key.encode()) == size
    return key


def test_a_key_near_the_limit_gets_an_overlay_key_named_by_its_digest_and_only_then():
    """The overlay adds 12 bytes: a 1,012-byte key keeps the plain key, a 1,013-byte one (1,025 bytes) takes
    ``overlays/long-keys.png/<sha256 of its key>.png``; two keys differing only at the end get two overlays."""
    fitting = upload_key_of(1012)
    assert layout.overlay_key("b1", fitting) == f"results/b1/overlays/{fitting.removeprefix('incoming/b1/')}.png"
    assert len(layout.overlay_key("b1", fitting)) == layout.MAX_KEY_BYTES
    first, second = upload_key_of(1013, "photo-1.jpg"), upload_key_of(1013, "photo-2.jpg")
    digest = hashlib.sha256(first.removeprefix("incoming/b1/").encode()).hexdigest()
    assert layout.overlay_key("b1", first) == f"results/b1/overlays/long-keys.png/{digest}.png"
    assert layout.overlay_key("b1", second) != layout.overlay_key("b1", first)
    assert layout.overlay_keys("b1", first) == [layout.overlay_key("b1", first)]
    assert layout.overlay_source(layout.overlay_key("b1", first)) is None  # names no upload: the rows tell whose
    assert layout.long_key_overlay_batch(layout.overlay_key("b1", first)) == "b1"
    assert layout.long_key_overlays("b1", [fitting, first, second]) == {
        layout.overlay_key("b1", first): first,
        layout.overlay_key("b1", second): second,
    }


def test_no_upload_reaches_the_overlay_or_copy_of_a_long_key():
    """An upload in a folder named ``long-keys.png`` has its overlay in ``long-keys.png~``, and its overlay stored
    before folders were escaped is not read if it is named like a digest; every upload's copy is under ``uploads/``."""
    long_key = upload_key_of(1020)
    hashed = layout.overlay_key("b1", long_key)
    digest = hashed.rsplit("/", 1)[1].removesuffix(".png")
    lookalike = f"incoming/b1/long-keys.png/{digest}"
    assert layout.overlay_keys("b1", lookalike) == [f"results/b1/overlays/long-keys.png~/{digest}.png"]
    assert layout.overlay_keys("b1", "incoming/b1/long-keys.png/x.jpg") == [
        "results/b1/overlays/long-keys.png~/x.jpg.png",
        "results/b1/overlays/long-keys.png/x.jpg.png",
    ]  # an ordinary name's former overlay key is still read
    for other in ("results/b1/overlays/long-keys.png/x.jpg.png", f"results/b1/overlays/a/long-keys.png/{digest}.png"):
        assert layout.long_key_overlay_batch(other) is None
    assert layout.quarantine_copy_key("b1", f"long-keys/{digest}.jpg").startswith("quarantine/b1/uploads/")


def test_a_key_near_the_limit_gets_a_quarantine_copy_key_named_by_its_digest_and_only_then():
    """The copy adds 10 bytes: a 1,014-byte key keeps ``uploads/<key>``, a 1,015-byte one takes
    ``long-keys/<sha256 of its key><extension>``, and with the copy's digest ``<...>.<16 hex><extension>``."""
    fitting = upload_key_of(1014).removeprefix("incoming/b1/")
    assert layout.quarantine_copy_key("b1", fitting) == f"quarantine/b1/uploads/{fitting}"
    first, second = (upload_key_of(1015, tail).removeprefix("incoming/b1/") for tail in ("cut-1.JPG", "cut-2.JPG"))
    digest, content = hashlib.sha256(first.encode()).hexdigest(), "ab" * 32
    assert layout.quarantine_copy_key("b1", first) == f"quarantine/b1/long-keys/{digest}.JPG"
    assert layout.quarantine_copy_key("b1", first, content) == f"quarantine/b1/long-keys/{digest}.{content[:16]}.JPG"
    assert layout.quarantine_copy_key("b1", second) != layout.quarantine_copy_key("b1", first)
    no_extension = upload_key_of(1020, "cut").removeprefix("incoming/b1/")
    odd_extension = upload_key_of(1020, "cut." + "x" * 40).removeprefix("incoming/b1/")
    assert layout.quarantine_copy_key("b1", no_extension).endswith(hashlib.sha256(no_extension.encode()).hexdigest())
    assert layout.quarantine_copy_key("b1", odd_extension).endswith("." + "x" * 15)


@pytest.mark.parametrize("name", ["long-keys", "LONG-KEYS"])
def test_an_upload_named_like_the_folder_of_long_keys_overlays_has_its_overlay_in_it(name):
    """The overlay of ``long-keys`` was the file ``overlays/long-keys.png``, where a local store keeps the folder of
    the digest-named overlays: it takes a digest name too, and its overlay stored before is still read."""
    long_key = upload_key_of(1020)
    key = layout.overlay_key("b1", f"incoming/b1/{name}")
    digest = hashlib.sha256(name.encode()).hexdigest()
    assert key == f"results/b1/overlays/long-keys.png/{digest}.png"
    folder = layout.overlay_key("b1", long_key).rpartition("/")[0]
    assert key.casefold() != folder.casefold() and key.startswith(f"{folder}/")
    assert layout.long_key_overlays("b1", [f"incoming/b1/{name}", long_key])[key] == f"incoming/b1/{name}"
    assert layout.overlay_keys("b1", f"incoming/b1/{name}") == [key, f"results/b1/overlays/{name}.png"]
    assert layout.overlay_key("b1", "incoming/b1/site/long-keys") == "results/b1/overlays/site/long-keys.png"
