"""Labeled photos train as the tiles scoring cuts them into; a crack photo as its highest tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crack_model.core.imaging import decode_to_array
from crack_model.core.model_card import ModelCard
from crack_model.core.storage import read_uri
from crack_model.core.tiling import TileConfig, tile_count
from crack_model.data.labeled import LabeledImage, fingerprint
from crack_model.serving.inference import fetch_object, prepare
from crack_model.training.photo_tiles import CHOSEN_TILES, SAMPLED_TILES, PhotoTiles, is_photo, spread

SIZE = 64  # the model's input size in these tests
TILES = TileConfig()


def photo(path: Path, label: str, size: tuple[int, int], line_at: tuple[int, int] | None = None) -> LabeledImage:
    """A grey gradient photo (every tile differs), with a dark line drawn around ``line_at`` if given."""
    width, height = size
    ramp = np.add.outer(np.arange(height) * 60 // height, np.arange(width) * 100 // width) + 80
    image = Image.fromarray(np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=2))
    if line_at is not None:
        x, y = line_at
        ImageDraw.Draw(image).line((x - 60, y - 40, x + 60, y + 40), fill=(10, 10, 10), width=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    found = fingerprint(LabeledImage(str(path), label, slice="site-c"))
    assert isinstance(found, LabeledImage)
    return found


def darkness(tiles: np.ndarray) -> np.ndarray:
    """A stand-in model: the darker a tile's darkest pixels, the likelier a crack."""
    crack = 1 - tiles.reshape(len(tiles), -1).min(axis=1) / 255.0
    return np.stack([1 - crack, crack], axis=1)


def test_fingerprint_reads_the_size_as_displayed_and_only_images_scoring_tiles_are_photos(tmp_path):
    big = photo(tmp_path / "big.png", "Negative", (1200, 800))
    assert (big.width, big.height) == (1200, 800) and is_photo(big, TILES)
    for size in ((227, 227), (227, 170), (280, 280)):  # one tile: a patch, trained whole as before
        assert not is_photo(photo(tmp_path / f"{size}.png", "Negative", size), TILES)
    assert not is_photo(LabeledImage("unread.png", "Negative"), TILES)  # size not read: as before


def rotated_jpeg(path: Path, size: tuple[int, int]) -> None:
    """A JPEG stored sideways with EXIF orientation 6 (displayed turned a quarter)."""
    width, height = size
    ramp = np.add.outer(np.arange(width) * 90 // width, np.arange(height) * 120 // height) + 60
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=2)).save(path, exif=exif, quality=90)


@pytest.mark.parametrize(
    ("name", "size", "tiles"),
    [
        ("wall.png", (1000, 700), TILES),
        ("turned.jpg", (700, 1000), TILES),  # EXIF-rotated: tiled as displayed
        ("shrunk.png", (1600, 1200), TileConfig(max_tiles=20)),  # over the tile budget: shrunk first
        ("strip.png", (3000, 120), TileConfig(max_tiles=8)),  # a thin strip: shrunk and padded to a tile
        ("grey.png", (900, 600), TILES),  # not RGB
    ],
)
def test_tiles_are_the_pixels_scoring_sees(tmp_path, name, size, tiles):
    """Each training tile decodes to exactly the tile the serving core cuts at that place."""
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True)
    if name == "turned.jpg":
        rotated_jpeg(path, size)
        image = fingerprint(LabeledImage(str(path), "Negative"))
        assert isinstance(image, LabeledImage) and (image.width, image.height) == size  # stored 1000x700
    else:
        image = photo(path, "Negative", size)
        if name == "grey.png":
            Image.open(path).convert("L").save(path)
            image = fingerprint(LabeledImage(str(path), "Negative", slice="site-c"))
            assert isinstance(image, LabeledImage)
    sampled = PhotoTiles(tmp_path / "tiles", tiles, SIZE, "Positive").sampled(image)
    served = prepare(fetch_object(image.uri, read_uri, SIZE, tiles, max_pixels=10**8), SIZE, tiles, 10**8)
    assert served.score.status == "ok" and served.tiles is not None
    at = spread(served.score.tile_count, SAMPLED_TILES)
    assert len(sampled) == len(at) > 1
    for tile, index in zip(sampled, at, strict=True):
        assert np.array_equal(decode_to_array(read_uri(tile.uri), SIZE), np.asarray(served.tiles[index])), index


def test_a_large_photo_samples_tiles_spread_over_it(tmp_path):
    image = photo(tmp_path / "in" / "large.png", "Negative", (2270, 1816))  # 154 tiles
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive").sampled(image)
    assert len(tiles) == SAMPLED_TILES and len({tile.sha256 for tile in tiles}) == SAMPLED_TILES
    assert spread(154, 16)[0] == 0 and spread(154, 16)[-1] == 153 and spread(5, 16) == [0, 1, 2, 3, 4]


def test_a_crack_photo_trains_as_the_tiles_the_model_scores_highest(tmp_path):
    cracked = photo(tmp_path / "in" / "cracked.png", "Positive", (1200, 800), line_at=(900, 600))
    clean = photo(tmp_path / "in" / "clean.png", "Negative", (1200, 800))
    patch = photo(tmp_path / "in" / "patch.png", "Positive", (227, 227))
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive")
    assert tiles.crack_photos([cracked, clean, patch]) == [cracked]
    before = tiles.examples([cracked])
    assert len(before) == SAMPLED_TILES  # before choosing: sampled, labeled crack
    assert tiles.examples([cracked, clean], unchosen_cracks=False) == tiles.examples([clean])  # not for early stopping

    tiles.choose([cracked], darkness, crack_index=1, threshold=0.5)
    chosen = tiles.examples([cracked])
    assert 1 <= len(chosen) <= CHOSEN_TILES
    for tile in chosen:  # every chosen tile shows the line: its darkest pixel is the line's
        assert decode_to_array(read_uri(tile.uri), SIZE).min() < 40 and tile.label == "Positive"
    assert tiles.examples([patch, clean])[0] == patch  # a patch is itself
    assert all(tile.label == "Negative" for tile in tiles.examples([clean])[1:])
    record = tiles.record([cracked, clean, patch])
    assert record == {"photos": 2, "crack_photos": 1, "tiles_used": len(chosen) + SAMPLED_TILES,
                      "crack_tiles_chosen": len(chosen)}  # fmt: skip


def test_a_crack_photo_keeps_its_highest_tile_even_when_none_reaches_the_threshold(tmp_path):
    faint = photo(tmp_path / "in" / "faint.png", "Positive", (1200, 800), line_at=(900, 600))
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive")
    tiles.choose([faint], darkness, crack_index=1, threshold=0.999)
    (kept,) = tiles.examples([faint])
    assert decode_to_array(read_uri(kept.uri), SIZE).min() < 40  # the line's tile, not any tile


def test_a_clean_photo_adds_its_tiles_most_like_a_crack_to_its_spread_sample(tmp_path):
    """After the first fit a clean photo trains as its spread tiles and its hardest ones (a dark joint here)."""
    joint = photo(tmp_path / "in" / "joint.png", "Negative", (2270, 1816), line_at=(1000, 900))
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive")
    spread_tiles = tiles.examples([joint])
    assert len(spread_tiles) == SAMPLED_TILES
    tiles.choose([joint], darkness, crack_index=1, threshold=0.5)
    after = tiles.examples([joint])
    assert after[:SAMPLED_TILES] == spread_tiles and SAMPLED_TILES < len(after) <= SAMPLED_TILES + CHOSEN_TILES
    assert all(tile.label == "Negative" for tile in after)
    assert decode_to_array(read_uri(after[SAMPLED_TILES].uri), SIZE).min() < 40  # the hardest shows the joint


def test_a_photo_is_scored_by_its_highest_tile(tmp_path):
    cracked = photo(tmp_path / "in" / "cracked.png", "Positive", (1200, 800), line_at=(300, 200))
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive")
    highest = tiles.highest_tile(cracked, darkness, crack_index=1)
    assert highest[1] == pytest.approx(1 - 10 / 255, abs=0.05)  # the line's tile, not the mean of the tiles
    assert highest[0] == pytest.approx(1 - highest[1])  # that tile's own row, not each column's highest


def test_the_record_says_what_the_photo_rule_makes_of_the_scored_photos(tmp_path):
    """metrics.json's labeled_photos: the card's rule applied to each scored photo's tiles."""
    from crack_model.serving.photo_decision import PhotoRule

    cracked = photo(tmp_path / "in" / "cracked.png", "Positive", (1200, 800), line_at=(300, 200))
    grazed = photo(tmp_path / "in" / "grazed.png", "Negative", (1200, 800), line_at=(900, 600))
    plain = photo(tmp_path / "in" / "plain.png", "Negative", (1200, 800))
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive")
    assert "photo_rule" not in tiles.record([cracked, grazed, plain], PhotoRule(0.9))  # none scored yet
    for image in (cracked, grazed, plain):
        tiles.highest_tile(image, darkness, crack_index=1)
    lenient = tiles.record([cracked, grazed, plain], PhotoRule(0.9))["photo_rule"]  # the gradient alone: 0.69
    assert lenient == {"runtime": "keras", "crack_photos": 1, "found": 1, "clean_photos": 2, "false_alarms": 1}
    strict = tiles.record([cracked, grazed, plain], PhotoRule(0.9, photo_threshold=0.999))["photo_rule"]
    assert (strict["found"], strict["false_alarms"]) == (0, 0)


def test_training_on_a_pool_with_photos_fits_twice_and_counts_each_photo_once(tmp_path):
    """Photos in ``labeled/<class>/<slice>/`` train as tiles; split.csv and the metrics count photos."""
    import csv

    from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
    from crack_model.data.synth import generate_dataset, synth_image
    from crack_model.training.train import train

    data = tmp_path / "pool"
    generate_dataset(data, 20, size=64, seed=3)
    rng = np.random.default_rng(0)
    for label in ("Negative", "Positive"):
        for index in range(4):
            canvas = Image.new("RGB", (681, 454))
            for cell in range(6):  # a 2 x 3 photo, one crack patch in a crack photo
                crack = label == "Positive" and cell == index
                canvas.paste(synth_image(rng, 227, crack=crack), ((cell % 3) * 227, (cell // 3) * 227))
            (data / label / "site-c").mkdir(exist_ok=True)
            canvas.save(data / label / "site-c" / f"photo-{index}.png")
    configs = DataConfig(image_size=64, batch_size=16), ModelConfig(weights="none", alpha=0.35)
    run = train(
        data,
        tmp_path / "model",
        *configs,
        TrainConfig(epochs=2, early_stopping_patience=5),
        verbose=0,
        export_runtimes=False,
    )  # the exports are no part of what photos train as

    with open(run.output_dir / "split.csv") as handle:
        rows = list(csv.DictReader(handle))
    photos = [row for row in rows if "/site-c/" in row["uri"]]
    assert len(rows) == 48 and len(photos) == 8  # the photos themselves, no tile
    in_train = [row for row in photos if row["split"] == "train"]
    record = run.metrics["labeled_photos"]["train"]
    cracks = sum(row["label"] == "Positive" for row in in_train)
    assert record["photos"] == len(in_train) and record["crack_photos"] == cracks >= 1
    assert cracks <= record["crack_tiles_chosen"] <= CHOSEN_TILES * cracks
    per_clean_photo = min(SAMPLED_TILES, tile_count(681, 454, TILES))  # all 12 of its tiles, the hardest among them
    assert record["tiles_used"] == per_clean_photo * (len(in_train) - cracks) + record["crack_tiles_chosen"]
    validation = run.metrics["labeled_photos"]["validation"]  # chosen too: early stopping sees the same kind
    assert validation["crack_photos"] >= 1 and validation["crack_tiles_chosen"] >= validation["crack_photos"]
    test = run.metrics["labeled_photos"]["test"]
    assert (
        test["tiles_used"] == 0 and test["photo_rule"]["crack_photos"] + test["photo_rule"]["clean_photos"] == 2
    )  # scored by their highest tile, never trained on
    assert len(run.history["loss"]) == 2 and run.metrics["labeled_photos"]["first_fit_epochs"] == 2  # then chosen
    assert run.metrics["test"]["images"] == sum(row["split"] == "test" for row in rows)
    in_validation = sorted(row["label"] for row in photos if row["split"] == "validation")
    assert in_validation == ["Negative", "Positive"]  # split seed 42 puts one of each there
    calibration = run.card.photo_calibration or {}  # the photo rule is chosen on them beside the mosaics
    assert calibration["labeled_photos"] == 2 and calibration["clean_photos"] == calibration["crack_photos"] >= 1
    assert set(run.metrics["photo_level"]["validation_photos"]) == set(calibration["runtimes"])

    from bench.photo_rule_refit import refit  # chosen again from split.csv alone: the same photos, the same rule

    refit(run.output_dir, tmp_path / "refit", with_photos=True)
    again = ModelCard.load(tmp_path / "refit")
    assert (again.photo_calibration or {})["labeled_photos"] == 2
    assert (again.photo_threshold, again.photo_min_tiles) == (run.card.photo_threshold, run.card.photo_min_tiles)


def test_the_record_applies_the_rules_confirmation_to_the_flips_of_the_highest_tiles(tmp_path):
    """A rule asking for a confirmation gets it from the photo's highest tiles and their flips (the stand-in
    model reads a line the same whichever way up, so a photo's confirmation is its line's tile score, 0.93)."""
    from crack_model.serving.photo_decision import PhotoRule

    cracked = photo(tmp_path / "in" / "cracked.png", "Positive", (1200, 800), line_at=(300, 200))
    plain = photo(tmp_path / "in" / "plain.png", "Negative", (1200, 800))
    tiles = PhotoTiles(tmp_path / "tiles", TILES, SIZE, "Positive")
    shown: list[int] = []

    def counting(pixels: np.ndarray) -> np.ndarray:
        shown.append(len(pixels))
        return darkness(pixels)

    for image in (cracked, plain):
        tiles.highest_tile(image, counting, crack_index=1)
    assert shown.count(3 * 3) == 2  # each photo's 3 highest tiles, 3 flips each, once the tiles are scored
    confirmed = tiles.record([cracked, plain], PhotoRule(0.9, confirm_threshold=0.93))["photo_rule"]
    assert (confirmed["found"], confirmed["false_alarms"]) == (1, 0)
    unconfirmed = tiles.record([cracked, plain], PhotoRule(0.9, confirm_threshold=0.94))["photo_rule"]
    assert unconfirmed["found"] == 0
