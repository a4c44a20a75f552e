"""Uploads whose keys are near S3's 1,024-byte limit: the overlay (12 bytes longer) and the quarantine copy (10 bytes
longer) of each take a name from the digest of its key, and every reader finds them there."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from crack_model.cli.main import main
from crack_model.core import layout
from crack_model.core.documents import QuarantineManifest
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.batch_page import batch_page
from crack_model.pipelines.ops_files import viewable
from crack_model.pipelines.overlays import draw_overlays, overlay_for_key
from crack_model.quality import batch_validation
from crack_model.quality.batch_validation import validate_batch
from crack_model.serving.batch import score_shard
from crack_model.serving.batch_results import finalize_batch
from crack_model.serving.scorer import load_scorer
from tests.unit.core.test_layout import upload_key_of

# Two keys of 1,020 bytes that differ only in their last bytes, past any cut a shorter name would make.
LONG = [upload_key_of(1020, "photo-1.jpg"), upload_key_of(1020, "photo-2.jpg")]
SHORT = "incoming/b1/short.jpg"


@pytest.fixture()
def scored(tmp_path, trained_model, synth_data):
    """A batch scored the nightly way (no overlays drawn), every image labeled crack, two under long keys."""
    store = LocalStore(tmp_path)
    photos = sorted((synth_data / "Positive").glob("*.jpg"))
    for key, path in zip([SHORT, *LONG], photos, strict=False):
        store.write(key, path.read_bytes())
    scorer = load_scorer(str(trained_model.output_dir))
    scorer.card.photo_threshold = None  # the patch rule for every image: the threshold alone decides
    scorer.card.threshold = 0.0  # every image a crack
    score_shard(str(tmp_path), "b1", scorer)
    return store, scorer


def overlays_listed(store: LocalStore) -> set[str]:
    return {info.key for info in store.list("results/b1/overlays/")}


def test_the_overlays_command_draws_the_overlays_of_long_keys_and_exits_0_every_time(scored, capsys):
    """`crack-model overlays` failed the two long keys ("invalid object key ... 1032 UTF-8 bytes") and exited 1 on
    every run; now each has its own overlay under its digest, and a second run finds them all there."""
    store, _ = scored
    batch = f"{store.root}/incoming/b1"

    assert main(["overlays", "--batch", batch]) == 0
    assert "3 overlays drawn, 0 already there" in capsys.readouterr().out
    assert main(["overlays", "--batch", batch]) == 0
    assert "0 overlays drawn, 3 already there" in capsys.readouterr().out

    hashed = [layout.overlay_key("b1", key) for key in LONG]
    assert hashed[0] != hashed[1] and all(key.startswith("results/b1/overlays/long-keys.png/") for key in hashed)
    assert overlays_listed(store) == {*hashed, "results/b1/overlays/short.jpg.png"}  # the ordinary key as before
    assert all(Image.open(io.BytesIO(store.read(key))).format == "PNG" for key in hashed)
    assert store.read(hashed[0]) != store.read(hashed[1])


def test_the_ops_view_links_serves_and_draws_the_overlay_of_a_long_key(scored):
    """The batch page links each crack to its digest-named overlay; the view draws it on request from the batch's
    rows, keeps it, and answers nothing for a digest-named key of no upload."""
    store, _ = scored
    links = {crack["key"]: crack["overlay"] for crack in batch_page(store, "b1")["cracks"]}
    assert links[LONG[0]] == layout.overlay_key("b1", LONG[0]) and viewable(links[LONG[0]]) == ("image/png", True)

    png = overlay_for_key(store.uri, links[LONG[0]])

    assert png is not None and png.startswith(b"\x89PNG") and store.read(links[LONG[0]]) == png
    assert overlay_for_key(store, links[LONG[1]]) not in (None, png)
    stranger = layout.overlay_key("b1", upload_key_of(1020, "never-uploaded.jpg"))
    assert overlay_for_key(store, stranger) is None
    assert overlay_for_key(store, stranger.replace("/b1/", "/b2/")) is None  # a batch never scored


def test_the_overlay_of_a_long_key_held_back_later_is_dropped_at_the_merge(scored):
    """A held-back upload's crack picture must not stay beside its quarantined row, nor one of an upload with no row;
    the other long key's overlay stays until the batch is scored again."""
    store, scorer = scored
    draw_overlays(store, "b1")
    gone = layout.overlay_key("b1", upload_key_of(1020, "gone.jpg"))
    store.write(gone, b"png")
    held_back = [{"key": LONG[0], "reasons": ["decodes: not an image"]}]
    manifest = QuarantineManifest("b1", "passed_with_quarantine", "2026-12-08T02:00:00Z", held_back)
    manifest.write(store, layout.quarantine_key("b1", layout.QUARANTINE_MANIFEST))

    finalize_batch(store, "b1", scorer.version, 1)

    assert overlays_listed(store) == {layout.overlay_key("b1", key) for key in (SHORT, LONG[1])}
    score_shard(str(store.root), "b1", scorer, force=True)  # scored again: the old model's pictures go
    assert overlays_listed(store) == set()


@pytest.fixture()
def without_data_docs(monkeypatch):
    """Data Docs are not what these tests are about (they take seconds per batch)."""
    monkeypatch.setattr(batch_validation, "write_data_docs", lambda *args, **kwargs: {"index": None})


def test_a_long_key_held_back_gets_its_own_copy_and_the_manifest_and_the_page_name_it(
    tmp_path, metu_sample, without_data_docs
):
    """It was held back with "not copied: invalid object key ... 1030 UTF-8 bytes": now two long keys differing only
    at the end get one copy each, named by their keys' digests; a later run of the same bytes writes none again, and
    one of other bytes goes beside it, under the name with the bytes' digest."""
    store = LocalStore(tmp_path)
    for index, path in enumerate(sorted((metu_sample / "Negative").glob("*.jpg"))[:120:2]):
        store.write(f"incoming/b1/photo-{index:02d}.jpg", path.read_bytes())
    bad = {LONG[0]: b"not a photo 1", LONG[1]: b"not a photo 2", "incoming/b1/cut.jpg": b"not a photo 3"}
    for key, data in bad.items():
        store.write(key, data)

    validate_batch(str(tmp_path), "b1")

    manifest = QuarantineManifest.read(store, layout.quarantine_key("b1", layout.QUARANTINE_MANIFEST))
    copies = {entry.key: entry.quarantine_key for entry in manifest.entries}
    expected = {key: layout.quarantine_copy_key("b1", layout.relative_to_batch(key, "b1")) for key in bad}
    assert copies == expected and copies["incoming/b1/cut.jpg"] == "quarantine/b1/uploads/cut.jpg"
    assert all(copies[key].startswith("quarantine/b1/long-keys/") for key in LONG) and len(set(copies.values())) == 3
    assert all(store.read(copies[key]) == data for key, data in bad.items())
    listed = batch_page(store, "b1")["quarantined"]
    assert {item["key"]: item["copy_key"] for item in listed} == copies

    store.write(LONG[1], b"other bytes, not a photo either")
    validate_batch(str(tmp_path), "b1")

    again = QuarantineManifest.read(store, layout.quarantine_key("b1", layout.QUARANTINE_MANIFEST))
    moved = {entry.key: entry.quarantine_key for entry in again.entries}
    assert moved[LONG[0]] == copies[LONG[0]] and store.read(copies[LONG[1]]) == b"not a photo 2"
    assert moved[LONG[1]].startswith(copies[LONG[1]].removesuffix(".jpg") + ".")
    assert store.read(moved[LONG[1]]) == b"other bytes, not a photo either"


def test_an_upload_named_long_keys_and_a_long_key_both_get_their_overlays_on_a_local_store(
    tmp_path, trained_model, synth_data, capsys
):
    """The overlay of ``long-keys`` was the file ``overlays/long-keys.png``, where the long key's overlay needs a
    folder: one of the two was "cannot create the folder ...: a file is there" and the command exited 1."""
    store = LocalStore(tmp_path)
    keys = ["incoming/b1/long-keys", LONG[0]]
    for key, path in zip(keys, sorted((synth_data / "Positive").glob("*.jpg")), strict=False):
        store.write(key, path.read_bytes())
    scorer = load_scorer(str(trained_model.output_dir))
    scorer.card.photo_threshold, scorer.card.threshold = None, 0.0  # every image a crack
    score_shard(str(tmp_path), "b1", scorer)

    assert main(["overlays", "--batch", f"{tmp_path}/incoming/b1"]) == 0
    assert "2 overlays drawn, 0 already there" in capsys.readouterr().out
    assert overlays_listed(store) == {layout.overlay_key("b1", key) for key in keys}
