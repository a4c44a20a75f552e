"""Overlays on demand: drawn from the tile scores a night kept, stored once, listed on the batch page."""

from __future__ import annotations

import csv
import io
import re
import shutil
import unicodedata

import numpy as np
import pytest
from PIL import Image

from crack_model.cli.main import main
from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.layout import Shard
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.batch_page import batch_page
from crack_model.pipelines.overlays import draw_overlays, overlay_for_key, overlay_png
from crack_model.serving.batch import score_shard
from crack_model.serving.batch_results import finalize_batch
from crack_model.serving.scorer import load_scorer
from tests import imagefiles
from tests.unit.pipelines.ops_store import SCORED


def photo(seed: int, size: tuple[int, int] = (600, 450)) -> bytes:
    from crack_model.data.synth import draw_crack, synth_image

    rng = np.random.default_rng(seed)
    return imagefiles.encode(draw_crack(synth_image(rng, size[0]).resize(size), rng), "JPEG", quality=90)


@pytest.fixture(scope="module")
def scored_once(tmp_path_factory, trained_model, synth_data):
    """A batch scored the nightly way (no overlays), some of its images labeled crack, some not."""
    root = tmp_path_factory.mktemp("scored")
    store = LocalStore(root)
    for path in (
        sorted((synth_data / "Positive").glob("*.jpg"))[:3] + sorted((synth_data / "Negative").glob("*.jpg"))[:3]
    ):
        store.write(f"incoming/b1/site a/{path.parent.name}-{path.name}", path.read_bytes())  # one tile each
    store.write("incoming/b1/site a/large photo.jpg", photo(0))
    store.write("incoming/b1/broken.jpg", imagefiles.truncated_jpeg())
    scorer = load_scorer(str(trained_model.output_dir))
    scorer.card.photo_threshold = None  # the patch rule for every image: the threshold alone decides
    # Two shards (a lookup must find the right one): every image of the first is a crack, none of the second.
    for index, threshold in ((0, 0.0), (1, 1.01)):
        scorer.card.threshold = threshold
        score_shard(str(root), "b1", scorer, Shard(index, 2), finalize=index == 1)
    assert list(store.list("results/b1/overlays/")) == []
    return root, scorer


@pytest.fixture()
def scored(scored_once, tmp_path):
    """A copy of the scored batch that a test may change."""
    root, scorer = scored_once
    shutil.copytree(root, tmp_path / "store")
    return LocalStore(tmp_path / "store"), scorer


def crack_rows(store):
    rows = csv.DictReader(io.StringIO(store.read("results/b1/predictions.csv").decode()))
    return [row for row in rows if row["label"] == "Positive"]


def test_an_overlay_is_drawn_from_the_tile_scores_and_kept(scored):
    """The first request draws the PNG at the overlay key; the second reads it (even once the upload is gone)."""
    store, _ = scored
    row = crack_rows(store)[0]
    key = layout.overlay_key("b1", row["key"])
    assert not store.exists(key)
    png = overlay_png(store, "b1", row["key"])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (int(row["width"]), int(row["height"]))
    assert store.read(key) == png
    upload = store.read(row["key"])
    store.delete(row["key"])
    assert overlay_png(store.uri, "b1", row["key"]) == png  # from the stored PNG: the upload is not read
    with pytest.raises(CrackModelError, match="cannot be read"):
        overlay_png(store, "b1", row["key"], refresh=True)
    store.write(row["key"], upload)


def test_an_upload_replaced_after_scoring_gets_no_overlay(scored, loaded_keys):
    """Tile boxes drawn on other bytes would mark another photo: a replaced upload is refused, and one replaced by a
    file over the upload limit is refused unread; lines kept before the hash still draw."""
    from crack_model.core.uploads import MAX_UPLOAD_BYTES

    store, _ = scored
    first, second = (row["key"] for row in crack_rows(store)[:2])
    store.write(first, photo(7))
    with pytest.raises(CrackModelError, match="changed after it was scored; run the batch again"):
        overlay_png(store, "b1", first)
    assert not store.exists(layout.overlay_key("b1", first))
    assert draw_overlays(store, "b1").failed == 1

    with (store.root / second).open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    loaded_keys.clear()  # the photo it replaced was read to draw its overlay
    with pytest.raises(CrackModelError, match=f"too large: {MAX_UPLOAD_BYTES + 1:,} bytes"):
        overlay_png(store, "b1", second, refresh=True)
    assert second not in loaded_keys

    for info in store.list("results/b1/"):  # tile scores as written before they kept the scored bytes' hash
        if info.key.endswith(layout.TILE_SCORES_SUFFIX):
            store.write(info.key, re.sub(rb'"sha256":"[0-9a-f]{64}",', b"", store.read(info.key)))
    assert overlay_png(store, "b1", first).startswith(b"\x89PNG")  # drawn on what is there: no hash to check


def test_the_view_entry_point_answers_overlay_keys_only(scored):
    """overlay_for_key draws for an overlay key, and is None for other keys, unscored uploads and unknown batches."""
    store, _ = scored
    row = crack_rows(store)[0]
    key = layout.overlay_key("b1", row["key"])
    assert layout.overlay_source(key) == ("b1", row["key"])
    png = overlay_for_key(store, key)
    assert png is not None and png.startswith(b"\x89PNG") and store.read(key) == png
    assert overlay_for_key(store, "results/b1/predictions.csv") is None
    assert overlay_for_key(store, "results/b1/overlays/broken.jpg.png") is None  # an error row: no tiles
    assert overlay_for_key(store, "results/b1/overlays/never uploaded.jpg.png") is None
    with pytest.raises(CrackModelError, match=r"cannot be read \(not in the store\)"):  # before any tile score is read
        overlay_png(store, "b1", "incoming/b1/never uploaded.jpg")
    assert overlay_for_key(store, "results/no-such-batch/overlays/a.jpg.png") is None


def test_the_view_serves_an_overlay_it_may_not_store_and_a_404_for_damaged_tile_scores(scored, monkeypatch):
    """A read-only store (the view's credentials): the picture is served all the same, just not kept. Tile scores
    that are not UTF-8 or hold NaN: no overlay (the view's 404), not a server error."""
    store, _ = scored
    first, second = (layout.overlay_key("b1", row["key"]) for row in crack_rows(store)[:2])

    def read_only(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    with monkeypatch.context() as patched:
        patched.setattr(type(store), "write", read_only)
        assert overlay_for_key(store, first).startswith(b"\x89PNG")
        with pytest.raises(PermissionError):  # the overlays command must keep what it draws
            overlay_png(store, "b1", layout.overlay_source(first)[1])
    assert not store.exists(first)

    tile_files = [info.key for info in store.list("results/b1/") if info.key.endswith(layout.TILE_SCORES_SUFFIX)]
    for key in tile_files:
        store.write(key, re.sub(rb'"probabilities":\[[0-9.e-]+', b'"probabilities":[NaN', store.read(key)))
    assert any(b'"probabilities":[NaN' in store.read(key) for key in tile_files)
    assert overlay_for_key(store, second) is None
    for key in tile_files:
        store.write(key, b"\xff\xfe" + store.read(key))
    assert overlay_for_key(store, first) is None


def test_the_batch_page_offers_overlays_that_can_be_drawn(scored):
    """Cracks of a batch with tile scores get their overlay key before any PNG exists; the key serves a PNG."""
    store, _ = scored
    page = batch_page(store, "b1")
    assert page["cracks_total"] == len(crack_rows(store)) >= 1
    keys = [crack["overlay"] for crack in page["cracks"]]
    assert keys == [layout.overlay_key("b1", crack["key"]) for crack in page["cracks"]]
    assert all(overlay_for_key(store, key) for key in keys)


def test_old_batches_keep_their_stored_overlays(store):
    """A batch scored before tile scores (overlay PNGs only) still shows them; a crack without one shows none."""
    page = batch_page(store.uri, SCORED)
    overlay = page["cracks"][0]["overlay"]
    assert overlay == f"results/{SCORED}/overlays/site a/photo-2.jpg.png"
    assert overlay_for_key(store, overlay) == b"png"  # the stored file, as it is
    store.delete(overlay)
    assert batch_page(store.uri, SCORED)["cracks"][0]["overlay"] is None  # nothing to draw it from
    store.write(overlay, b"png")


def test_draw_overlays_draws_every_crack_once(scored):
    """Every crack image gets its overlay, none for the others; a second run keeps them, refresh redraws."""
    store, _ = scored
    cracks = crack_rows(store)
    report = draw_overlays(store, "b1")
    assert (report.drawn, report.kept, report.failed) == (len(cracks), 0, 0) and len(cracks) < 7
    stored = {info.key for info in store.list("results/b1/overlays/")}
    assert stored == {layout.overlay_key("b1", row["key"]) for row in cracks}
    again = draw_overlays(store.uri, "b1")
    assert (again.drawn, again.kept) == (0, len(cracks))
    assert draw_overlays(store, "b1", refresh=True).drawn == len(cracks)


def test_rescoring_drops_the_overlays_of_the_images_scored_again(scored):
    """A forced rescore deletes the stored overlays of its keys: the view must not show the old model's picture."""
    store, scorer = scored
    draw_overlays(store, "b1")
    assert list(store.list("results/b1/overlays/"))
    score_shard(str(store.root), "b1", scorer, Shard(0, 2), force=True)
    assert list(store.list("results/b1/overlays/")) == []


def test_the_overlays_command(scored, capsys):
    """`crack-model overlays --batch <store>/incoming/<batch>` draws them all and says how many."""
    store, _ = scored
    cracks = len(crack_rows(store))
    assert main(["overlays", "--batch", f"{store.root}/incoming/b1"]) == 0
    assert f"{cracks} overlays drawn, 0 already there" in capsys.readouterr().out
    assert len(list(store.list("results/b1/overlays/"))) == cracks
    assert main(["overlays", "--batch", f"{store.root}/incoming/never-scored"]) == 1
    assert "has no summary.json" in capsys.readouterr().err


def test_the_overlays_command_names_the_crack_rows_without_tile_scores(scored, capsys):
    """It said "could not be drawn (see the warnings above)" and printed no warning: now it names them and says
    to score the batch again."""
    store, _ = scored
    for info in list(store.list("results/b1/_parts/")):
        if info.key.endswith(layout.TILE_SCORES_SUFFIX):
            store.delete(info.key)
    first = sorted(row["key"] for row in crack_rows(store))[0]
    assert main(["overlays", "--batch", f"{store.root}/incoming/b1"]) == 1
    said = capsys.readouterr().err
    assert f"crack images have no tile scores to draw from ({first}" in said
    assert f"crack-model score --batch {store.root}/incoming/b1 --model <model> --force" in said
    assert "see the warnings above" not in said


def test_a_decomposed_upload_name_keeps_its_overlay_until_it_is_scored_again(scored, monkeypatch):
    """A macOS (NFD) name's overlay is listed composed (NFC) on a local store: merges keep it, a second run finds
    it, a rescore of the upload drops it."""
    store, scorer = scored
    name = unicodedata.normalize("NFD", "Fissure-été.jpg")
    (store.root / "incoming" / "b1" / name).write_bytes(photo(1))  # as a sync tool puts it, not through the store
    key = f"incoming/b1/{name}"
    shard = next(shard for shard in (Shard(0, 2), Shard(1, 2)) if shard.owns(key))
    monkeypatch.setattr(scorer.card, "threshold", 0.0)  # a crack
    score_shard(str(store.root), "b1", scorer, shard, force=True)
    assert key in {row["key"] for row in crack_rows(store)}
    overlay = unicodedata.normalize("NFC", layout.overlay_key("b1", key))

    draw_overlays(store, "b1")
    finalize_batch(store, "b1", scorer.version, 2)  # a merge again, as a retried night's

    assert overlay in {info.key for info in store.list("results/b1/overlays/")}
    again = draw_overlays(store, "b1")
    assert (again.drawn, again.kept) == (0, len(crack_rows(store)))
    score_shard(str(store.root), "b1", scorer, shard, force=True)
    assert overlay not in {info.key for info in store.list("results/b1/overlays/")}


def test_an_upload_and_a_folder_named_like_its_overlay_both_get_overlays(scored, monkeypatch):
    """``x.jpg`` and ``x.jpg.png/y.jpg`` on a local store: each overlay is stored and counted as there next time."""
    store, scorer = scored
    keys = ["incoming/b1/x.jpg", "incoming/b1/x.jpg.png/y.jpg"]
    for seed, key in enumerate(keys):
        store.write(key, photo(seed + 2))
    monkeypatch.setattr(scorer.card, "threshold", 0.0)  # every image a crack
    for index in (0, 1):
        score_shard(str(store.root), "b1", scorer, Shard(index, 2), force=True)

    report = draw_overlays(store, "b1")

    assert report.failed == 0 and all(store.exists(layout.overlay_key("b1", key)) for key in keys)
    assert draw_overlays(store, "b1").drawn == 0


def test_an_overlay_stored_under_its_former_key_is_still_read(tmp_path):
    """Overlays stored before folders named like overlay files were escaped are served from where they are."""
    store = LocalStore(tmp_path)
    key = "incoming/b1/site.png/a.jpg"
    store.write(layout.legacy_overlay_key("b1", key), b"png")
    assert overlay_png(store, "b1", key) == b"png"


def test_an_overlay_is_drawn_on_the_tiles_of_the_budget_the_batch_was_scored_within(tmp_path, trained_model,
                                                                                    monkeypatch):  # fmt: skip
    """Drawn later (by the view, or a command) from the boxes kept with the tile scores, in the upload's pixels: the
    tiles of the 64-tile budget the photo was scored within, not those 512 would cut today."""
    from crack_model.core.tiling import TileConfig, fit_to_tile_budget, tile_boxes
    from crack_model.pipelines import overlays

    store = LocalStore(tmp_path)
    store.write("incoming/b1/drone.jpg", photo(1, (2400, 1800)))  # 154 tiles at its own scale
    scorer = load_scorer(str(trained_model.output_dir))
    scorer.card.photo_threshold, scorer.card.threshold = None, 0.0  # a crack whatever the model says
    score_shard(str(tmp_path), "b1", scorer, max_tiles=64)
    drawn = {}

    def recording_render(data, boxes, probabilities, threshold):
        drawn["boxes"] = boxes
        return b"png"

    monkeypatch.setattr(overlays, "render_overlay", recording_render)
    assert overlay_png(store, "b1", "incoming/b1/drone.jpg") == b"png"
    row = crack_rows(store)[0]
    assert len(drawn["boxes"]) == int(row["tile_count"]) <= 64 and "within 64 tiles" in row["note"]
    fit = fit_to_tile_budget(2400, 1800, TileConfig(max_tiles=64))
    assert drawn["boxes"] == [fit.to_original(box) for box in tile_boxes(*fit.padded, TileConfig(max_tiles=64))]
    assert len(drawn["boxes"]) < len(tile_boxes(2400, 1800, TileConfig()))
