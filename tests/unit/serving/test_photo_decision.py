"""The photo rule: a photo's label from its tile scores, from the model card, for every runtime."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from crack_model.core.model_card import ModelCard
from crack_model.core.tiling import TileConfig, grid_shape, tile_boxes
from crack_model.serving.inference import ImageScore, _finish
from crack_model.serving.photo_decision import (
    PhotoRule,
    confirmation_needed,
    decision_note,
    largest_group,
    lit_by_rule,
    photo_is_crack,
)
from crack_model.serving.waiting_image import WaitingImage

# A 2270x1816 photo: 11 rows x 14 columns of tiles, the mosaics of issue 11.
BOXES = tile_boxes(2270, 1816, TileConfig())
ROWS, COLUMNS = grid_shape(BOXES)


def scores(hot: dict[tuple[int, int], float], background: float = 0.05) -> list[float]:
    """Tile probabilities: ``background`` everywhere, ``hot[(row, column)]`` where given."""
    probabilities = [background] * len(BOXES)
    for (row, column), probability in hot.items():
        probabilities[row * COLUMNS + column] = probability
    return probabilities


def test_the_grid_is_the_issue_photo():
    """The fixture photo is cut as the issue says (154 tiles)."""
    assert (ROWS, COLUMNS) == (11, 14) and len(BOXES) == 154


def test_a_single_hot_seam_tile_is_no_crack_but_an_agreeing_cluster_is():
    """With photo_min_tiles 2, one tile above the threshold is not enough; three touching tiles are."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.5, min_tiles=2)
    seam = scores({(4, 6): 0.75})
    cluster = scores({(4, 6): 0.97, (4, 7): 0.93, (5, 6): 0.6})
    apart = scores({(1, 1): 0.9, (8, 11): 0.9})  # two hot tiles that do not touch: two seams, not a crack
    assert largest_group(seam, BOXES, 0.5) == 1 and not photo_is_crack(seam, BOXES, rule)
    assert largest_group(cluster, BOXES, 0.5) == 3 and photo_is_crack(cluster, BOXES, rule)
    assert largest_group(apart, BOXES, 0.5) == 1 and not photo_is_crack(apart, BOXES, rule)
    diagonal = scores({(2, 2): 0.9, (3, 3): 0.9})  # overlapping corners count as touching
    assert largest_group(diagonal, BOXES, 0.5) == 2


def test_the_photo_threshold_applies_to_the_highest_tile():
    """A seam's 0.75 is below a photo threshold of 0.9, a crack's 0.97 is not; the patch threshold stays 0.5."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.9)
    assert not photo_is_crack(scores({(4, 6): 0.75}), BOXES, rule)
    assert photo_is_crack(scores({(4, 6): 0.97}), BOXES, rule)
    assert rule.highest_needed == 0.9 and "0.9000" in rule.describe()


def test_a_one_tile_image_keeps_the_patch_rule():
    """A patch (one tile) is a crack at the tile threshold whatever the photo rule asks of photos."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.95, min_tiles=3)
    assert photo_is_crack([0.6], [(0, 0, 227, 227)], rule)
    assert not photo_is_crack([0.4], [(0, 0, 227, 227)], rule)


@pytest.mark.parametrize("min_tiles", [2, 3])
def test_a_photo_of_too_few_tiles_for_the_touching_rule_is_judged_by_its_highest_tile(min_tiles):
    """A card asking for 3 touching tiles missed 200 of 200 two-tile crack photos (both tiles at 0.996): they cannot
    show 3, and the rule was chosen on mosaics of 6 tiles or more. The highest tile and the confirmation decide."""
    from crack_model.serving.photo_decision import GROUPED_FROM_TILES

    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.74, min_tiles=min_tiles)
    two = [(0, 0, 227, 227), (73, 0, 300, 227)]
    assert photo_is_crack([0.996, 0.996], two, rule) and photo_is_crack([0.996, 0.016], two, rule)
    assert not photo_is_crack([0.6, 0.3], two, rule)  # the photo threshold still holds
    assert "touching" not in rule.describe(2) and "touching" in rule.describe(GROUPED_FROM_TILES)
    row = [(index * 100, 0, index * 100 + 227, 227) for index in range(GROUPED_FROM_TILES)]
    lone = [0.99 if index == 0 else 0.1 for index in range(GROUPED_FROM_TILES)]
    assert not photo_is_crack(lone, row, rule)  # from that many tiles on, a lone hot tile is a seam


def test_an_old_card_labels_photos_as_before():
    """A model.json written before the photo rule loads without it and labels by highest tile >= threshold."""
    old = {"version": "v-old", "threshold": 0.42, "tile_size": 227, "approved_runtimes": ["keras"]}
    card = ModelCard.from_dict(old)
    assert (card.photo_threshold, card.photo_min_tiles, card.photo_calibration) == (None, 1, None)
    rule = PhotoRule.of(card)
    rng = np.random.default_rng(3)
    for _ in range(200):
        probabilities = list(rng.beta(0.3, 2.0, size=len(BOXES)))
        assert photo_is_crack(probabilities, BOXES, rule) == (max(probabilities) >= 0.42)


def test_the_card_keeps_the_rule(tmp_path):
    """model.json stores the photo rule and its calibration record, and loads them back."""
    card = ModelCard(version="v1", threshold=0.5, photo_threshold=0.91, photo_min_tiles=2,
                     photo_calibration={"clean_mosaics": 40})  # fmt: skip
    card.save(tmp_path)
    stored = json.loads((tmp_path / "model.json").read_text())
    assert stored["photo_threshold"] == 0.91 and stored["photo_min_tiles"] == 2
    loaded = ModelCard.load(tmp_path)
    assert PhotoRule.of(loaded) == PhotoRule(0.5, 0.91, 2) and loaded.photo_calibration == {"clean_mosaics": 40}


def test_a_photo_never_needs_less_than_a_patch():
    """A threshold raised above the photo threshold (say to silence a model) applies to photos too."""
    silenced = PhotoRule(tile_threshold=1.01, photo_threshold=0.9)
    assert silenced.highest_needed == 1.01 and not photo_is_crack(scores({(4, 6): 1.0}), BOXES, silenced)


def test_the_photo_threshold_rises_for_photos_of_more_tiles_than_calibrated():
    """Up to the calibration mosaics' 154 tiles the card's threshold holds; a 12 MP photo needs more, by the tail."""
    phone = tile_boxes(4000, 3000, TileConfig())
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.8, calibrated_tiles=154, tail_scale=1.0)
    assert rule.needed_for(1) == rule.needed_for(154) == rule.highest_needed == 0.8
    expected = 1 / (1 + math.exp(-(math.log(0.8 / 0.2) + math.log(len(phone) / 154))))
    assert len(phone) > 400 and rule.needed_for(len(phone)) == pytest.approx(expected) and expected > 0.9
    at_085 = [0.05] * len(phone)
    at_085[40] = 0.85
    assert photo_is_crack(scores({(4, 6): 0.85}), BOXES, rule)  # a 154-tile photo: 0.85 is enough
    assert not photo_is_crack(at_085, phone, rule)  # a 12 MP photo: not
    note = decision_note(at_085, rule, is_crack=False)
    assert f"over {len(phone)} tiles (highest tile >= {expected:.4f})" in note
    assert "up to 154 tiles; +1.00 log-odds" in rule.describe()
    flat = PhotoRule(tile_threshold=0.5, photo_threshold=0.8)  # a card from before the rise: any size alike
    assert flat.needed_for(len(phone)) == 0.8 and photo_is_crack(at_085, phone, flat)


def test_the_rise_stops_at_the_cards_maximum_and_never_goes_below_the_photo_threshold():
    """However many tiles, the threshold stays at or under photo_max_threshold (an int8 model tops out at 0.996)."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.8, calibrated_tiles=154, tail_scale=1.0, max_threshold=0.95)
    assert rule.needed_for(154 * 1000) == 0.95 and rule.needed_for(200) < 0.95
    assert "at most 0.9500" in rule.describe()
    below = PhotoRule(tile_threshold=0.5, photo_threshold=0.8, calibrated_tiles=154, tail_scale=1.0, max_threshold=0.6)
    assert below.needed_for(154 * 1000) == 0.8  # a maximum under the photo threshold does not lower it


def test_a_crack_photo_whose_threshold_stopped_at_the_cap_says_so():
    """Past the cap a photo's chance of a false alarm grows with its tiles (2 of 5 clean 50 MP photos at a budget
    of 2048 with the demo model, 0 of 5 at 512): a crack label there says so, for whoever checks the overlay."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.8, calibrated_tiles=24, tail_scale=1.0, max_threshold=0.95)
    assert not rule.capped_for(24) and not rule.capped_for(60) and rule.capped_for(1728)
    big = [0.05] * 1728
    big[100] = 0.97
    note = decision_note(big, rule, is_crack=True)
    assert "threshold at the cap, 0.9500" in note and "1728 tiles" in note and "24 tiles" in note
    assert decision_note([0.05] * 59 + [0.97], rule, is_crack=True) == ""  # risen, not capped: nothing to say
    assert decision_note(big, PhotoRule(0.5, 0.8, calibrated_tiles=24, tail_scale=1.0), is_crack=True) == ""


def test_the_rise_starts_from_what_photos_already_need():
    """A tile threshold raised above the photo threshold holds as the floor; a threshold of 1.0 stays 1.0."""
    raised = PhotoRule(tile_threshold=0.9, photo_threshold=0.8, calibrated_tiles=154, tail_scale=1.0)
    assert raised.needed_for(154) == 0.9 and raised.needed_for(419) == pytest.approx(0.9158, abs=1e-4)
    assert PhotoRule(0.5, 1.0, calibrated_tiles=154, tail_scale=0.5).needed_for(155) == 1.0
    flat = PhotoRule(0.5, 0.50152195, calibrated_tiles=154, tail_scale=0.0)
    assert flat.needed_for(155) >= 0.50152195  # not a hair below by rounding through log-odds


def test_scoring_labels_a_phone_photo_by_the_risen_threshold():
    """Through the scoring core: the same 0.85 tile is a crack in a 154-tile photo and not in a 12 MP one."""
    phone = tile_boxes(4000, 3000, TileConfig())
    card = ModelCard(version="v1", threshold=0.5, photo_threshold=0.8, photo_tiles=154, photo_tail_scale=1.0)
    at_085 = [0.05] * len(phone)
    at_085[40] = 0.85
    score = ImageScore(key="phone.jpg", boxes=list(phone), tile_count=len(phone))
    big = _finish(WaitingImage(score, at_085, 0), card)
    assert big.label == "Negative" and f"over {len(phone)} tiles" in big.note
    assert finished(scores({(4, 6): 0.85}), card).label == "Positive"


def test_the_card_keeps_the_rise(tmp_path):
    """model.json stores photo_tiles, photo_tail_scale and photo_max_threshold; a bad scale is refused."""
    ModelCard(version="v1", threshold=0.5, photo_threshold=0.9, photo_tiles=154, photo_tail_scale=0.7,
              photo_max_threshold=0.98).save(tmp_path)  # fmt: skip
    assert PhotoRule.of(ModelCard.load(tmp_path)) == PhotoRule(0.5, 0.9, 1, 154, 0.7, 0.98)
    with pytest.raises(ValueError, match="photo_tail_scale must not be negative"):
        PhotoRule(0.5, 0.9, calibrated_tiles=154, tail_scale=-0.1)


def test_a_card_asking_for_no_tile_is_refused():
    """photo_min_tiles below 1 is a broken card, named as such."""
    with pytest.raises(ValueError, match="photo_min_tiles must be at least 1"):
        PhotoRule(tile_threshold=0.5, min_tiles=0)


def test_scores_and_boxes_must_pair_up():
    """Grouping needs a box per tile."""
    with pytest.raises(ValueError, match="must pair up"):
        largest_group([0.9, 0.9], BOXES[:1], 0.5)
    with pytest.raises(ValueError, match="at least one tile"):
        photo_is_crack([], [], PhotoRule(0.5))


def finished(
    probabilities: list[float], card: ModelCard, note: str = "", confirmation: float | None = None
) -> ImageScore:
    """An image scored by the streaming core, labeled by ``_finish``."""
    score = ImageScore(key="photo.jpg", boxes=list(BOXES[: len(probabilities)]), tile_count=len(probabilities),
                       note=note)  # fmt: skip
    return _finish(WaitingImage(score, probabilities, 0, confirmation=confirmation), card)


def test_finish_labels_photos_by_the_cards_rule_and_says_why():
    """The scoring core labels by the card's photo rule; the row's note explains a tile above the threshold."""
    seam = scores({(4, 6): 0.75})
    ruled = ModelCard(version="v1", threshold=0.5, photo_threshold=0.9)
    old = ModelCard(version="v0", threshold=0.5)
    assert finished(seam, old).label == "Positive"
    score = finished(seam, ruled, note="Downscaled from 9000x7000 to 4000x3111 to stay within 512 tiles")
    assert score.label == "Negative" and score.crack_probability == pytest.approx(0.75)
    assert score.note.startswith("Downscaled") and "no crack by the photo rule over 154 tiles" in score.note
    assert score.tile_probabilities == seam  # the overlay still sees every tile's score
    crack = finished(scores({(4, 6): 0.97}), ruled)
    assert crack.label == "Positive" and crack.note == ""


def test_the_note_is_empty_when_both_rules_agree():
    """No note when the photo rule and the highest-tile rule give the same label."""
    rule = PhotoRule(0.5, 0.9)
    assert decision_note([0.1, 0.2], rule, is_crack=False) == ""
    assert decision_note([0.1, 0.95], rule, is_crack=True) == ""
    assert "highest tile 0.7000" in decision_note([0.1, 0.7], rule, is_crack=False)


def test_a_photo_the_rule_lights_is_a_crack_only_when_its_top_tiles_are_confirmed():
    """With a confirmation threshold, a lit photo needs its flips' mean too; an unlit one is no crack whatever it is."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.6, confirm_threshold=0.45)
    seam = scores({(4, 6): 0.75})
    assert lit_by_rule(seam, BOXES, rule)
    assert not photo_is_crack(seam, BOXES, rule, confirmation=0.3)
    assert photo_is_crack(seam, BOXES, rule, confirmation=0.45)
    assert not photo_is_crack(scores({(4, 6): 0.55}), BOXES, rule, confirmation=0.9)  # below the photo threshold
    assert photo_is_crack([0.7], BOXES[:1], rule)  # one tile: the patch rule, no confirmation asked
    with pytest.raises(ValueError, match="scored without one: score it with confirmation on"):
        photo_is_crack(seam, BOXES, rule)
    assert photo_is_crack(seam, BOXES, PhotoRule(0.5, 0.6))  # a card without it does not ask
    assert rule.describe().endswith("a top tile's mean over its flips >= 0.4500")


def test_the_card_keeps_the_confirmation_and_the_row_says_when_it_overturned_the_rule(tmp_path):
    card = ModelCard(version="v1", threshold=0.5, photo_threshold=0.6, photo_confirm_threshold=0.45)
    card.save(tmp_path)
    assert PhotoRule.of(ModelCard.load(tmp_path)).confirm_threshold == 0.45
    seam = scores({(4, 6): 0.75})
    unconfirmed = finished(seam, card, confirmation=0.3)
    assert unconfirmed.label == "Negative" and unconfirmed.confirmation == 0.3
    assert "not confirmed when flipped (mean 0.3000 < 0.4500); highest tile 0.7500" in unconfirmed.note
    assert finished(seam, card, confirmation=0.5).label == "Positive"
    below = finished(scores({(4, 6): 0.55}), card, confirmation=0.3)  # the rule itself said no: it says so
    assert below.label == "Negative" and "no crack by the photo rule over 154 tiles" in below.note


def test_a_one_tile_image_needs_the_patch_confirmation_only_in_the_band(tmp_path):
    """From the threshold up to PATCH_CONFIRM_BELOW a patch needs its flips' mean; above, under, or without it, not."""
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.6, confirm_threshold=0.45, patch_confirm_threshold=0.4)
    assert confirmation_needed([0.7], rule) == 0.4
    assert confirmation_needed([0.95], rule) is None  # above the band: taken as it is
    assert confirmation_needed([0.3], rule) is None  # not lit
    assert confirmation_needed(scores({(4, 6): 0.75}), rule) == 0.45  # a photo: the photo confirmation
    assert confirmation_needed([0.7], PhotoRule(0.5, 0.6, confirm_threshold=0.45)) is None  # a card without it
    assert not photo_is_crack([0.7], BOXES[:1], rule, confirmation=0.39)
    assert photo_is_crack([0.7], BOXES[:1], rule, confirmation=0.4)
    assert photo_is_crack([0.95], BOXES[:1], rule)
    with pytest.raises(ValueError, match="scored without one"):
        photo_is_crack([0.7], BOXES[:1], rule)
    card = ModelCard(version="v1", threshold=0.5, patch_confirm_threshold=0.4)
    card.save(tmp_path)
    assert PhotoRule.of(ModelCard.load(tmp_path)).patch_confirm_threshold == 0.4
    unconfirmed = finished([0.7], card, confirmation=0.2)
    assert unconfirmed.label == "Negative"
    assert unconfirmed.note == ("no crack: not confirmed when flipped (mean of the image and its flips 0.2000 < "
                                "0.4000); crack probability 0.7000")  # fmt: skip
