"""The photo-level check and the choice of the photo rule, on synthetic tile scores and a hand-set model."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from crack_model.core.model_card import ModelCard
from crack_model.core.tiling import TileConfig, grid_shape, tile_boxes
from crack_model.evaluation.mosaics import MosaicConfig, MosaicPlan, plan_mosaics
from crack_model.evaluation.photo_calibration import (
    CRACK_LIKE_SHARE,
    MAX_THRESHOLD_FOUND,
    MIN_TAIL_TILES,
    PhotoSize,
    calibrated_tiles,
    choose_confirmation,
    choose_photo_rule,
    crack_level,
    crack_like_clean,
    crack_like_photos,
    is_left_out,
    tail_record,
    tail_scale,
)
from crack_model.evaluation.photo_check import (
    ScoredMosaic,
    ScoredPhoto,
    marked_share,
    meets_bar,
    mosaic_check,
    photo_figures,
    threshold_rose,
    under_highest_tile,
)
from crack_model.serving.photo_decision import PhotoRule, overlap, photo_is_crack

CELL = 227
# 8 x 10 cells of 227 px: the 2270x1816 photos of issue 11, 11 x 14 tiles.
BOXES = tile_boxes(10 * CELL, 8 * CELL, TileConfig())
ROWS, COLUMNS = grid_shape(BOXES)


def mosaic(name: str, hot: dict[int, float], crack_cells: tuple[tuple[int, int], ...] = ()) -> ScoredMosaic:
    """A scored 8 x 10 mosaic: tile ``index`` scores ``hot[index]``, every other tile 0.02."""
    plan = MosaicPlan(name, 8, 10, tuple(f"{name}/{cell}" for cell in range(80)), crack_cells)
    probabilities = [hot.get(index, 0.02) for index in range(len(BOXES))]
    return ScoredMosaic(plan, list(BOXES), probabilities)


def tile(row: int, column: int) -> int:
    return row * COLUMNS + column


def seams(*highest: float) -> list[ScoredMosaic]:
    """Clean mosaics whose one seam tile scores ``highest``."""
    return [mosaic(f"clean-{n}", {tile(3, 4): value}) for n, value in enumerate(highest)]


def cracks(*highest: float) -> list[ScoredMosaic]:
    """Crack mosaics, each with a crack in cell (2, 3) lighting a 2 x 2 group of tiles, the highest ``highest``."""
    made = []
    for n, value in enumerate(highest):
        hot = {tile(2, 3): value, tile(2, 4): 0.9, tile(3, 3): 0.8, tile(3, 4): 0.7}
        made.append(mosaic(f"crack-{n}", hot, ((2, 3),)))
    return made


def test_the_photo_threshold_separates_clean_from_crack_maxima():
    """Seams up to 0.75 and cracks from 0.97: a photo threshold between them, every crack found, no false alarm."""
    scored = seams(0.55, 0.62, 0.75, 0.3) + cracks(0.97, 0.99, 1.0)
    choice = choose_photo_rule(scored, tile_threshold=0.5)
    assert 0.75 < choice.photo_threshold <= 0.97 and choice.min_tiles == 1
    card = ModelCard(version="v", threshold=0.5, photo_threshold=choice.photo_threshold)
    figures = photo_figures(scored, card)
    assert (figures["false_alarms"], figures["found"], figures["crack_mosaics"]) == (0, 3, 3)
    assert figures["max_rule"] == {"false_alarms": 3, "found": 3}  # before: every seam above 0.5 was a crack
    assert choice.record["chosen"] == {"photo_threshold": choice.photo_threshold, "min_tiles": 1}


def test_agreement_of_touching_tiles_wins_when_a_seam_scores_like_a_crack():
    """A seam tile at 0.99 alone cannot be told apart by the maximum; asking for 2 touching tiles can."""
    scored = seams(0.99, 0.6) + cracks(0.97, 0.98)
    choice = choose_photo_rule(scored, tile_threshold=0.5)
    assert choice.min_tiles == 2
    rule = PhotoRule(0.5, choice.photo_threshold, choice.min_tiles)
    assert [photo_is_crack(m.probabilities, m.boxes, rule) for m in scored] == [False, False, True, True]
    one_tile = next(option for option in choice.record["options"] if option["min_tiles"] == 1)
    assert one_tile["missed_crack_mosaics"] == 2  # above the 0.99 seam, the maximum alone finds no crack


def test_a_model_without_seam_alarms_keeps_the_patch_threshold():
    """No clean tile reaches the tile threshold: the photo rule is the patch rule."""
    choice = choose_photo_rule(seams(0.2, 0.4) + cracks(0.95), tile_threshold=0.5)
    assert (choice.photo_threshold, choice.min_tiles) == (0.5, 1)


def test_false_alarms_are_bounded_before_cracks_are_found():
    """A clean mosaic that scores like a crack keeps the threshold above it, though a weaker crack is then missed."""
    crack_like = mosaic("clean-crack-like", {tile(5, 5): 0.96, tile(5, 6): 0.9, tile(6, 5): 0.8})
    scored = [crack_like, *seams(0.7), *cracks(0.93, 0.99)]
    choice = choose_photo_rule(scored, tile_threshold=0.5)
    assert 0.96 < choice.photo_threshold < 0.99 and choice.min_tiles == 1
    card = ModelCard(version="v", threshold=0.5, photo_threshold=choice.photo_threshold)
    figures = photo_figures(scored, card)
    assert (figures["false_alarms"], figures["found"]) == (0, 1)
    assert figures["max_rule"] == {"false_alarms": 2, "found": 2}


def test_a_model_that_cannot_tell_photos_apart_keeps_the_patch_rule():
    """When no crack mosaic scores above every clean one, a photo threshold would find no crack: none is set."""
    crack_like = mosaic("clean-crack-like", {tile(5, 5): 0.99, tile(5, 6): 0.95, tile(6, 5): 0.9, tile(6, 6): 0.9})
    choice = choose_photo_rule([crack_like, *cracks(0.9, 0.95)], tile_threshold=0.5)
    assert (choice.photo_threshold, choice.min_tiles) == (0.5, 1)


def test_choosing_needs_both_kinds_of_mosaics():
    """Without clean (or crack) mosaics there is nothing to separate."""
    with pytest.raises(ValueError, match="needs clean and crack photos"):
        choose_photo_rule(cracks(0.9), tile_threshold=0.5)


def labeled_photo(key: str, width: int, height: int, hot: dict[int, float], crack: bool) -> ScoredPhoto:
    """A scored labeled photo of ``width`` x ``height`` px: tile ``index`` scores ``hot[index]``, others 0.02."""
    boxes = tile_boxes(width, height, TileConfig())
    return ScoredPhoto(key, crack, list(boxes), [hot.get(index, 0.02) for index in range(len(boxes))])


@pytest.mark.parametrize("cap", [None, 0.95, 0.8])
@pytest.mark.parametrize("tiles", [154, 300, 616, 2000])
def test_a_photo_counts_at_the_calibrated_size_exactly_as_the_risen_threshold_judges_it(tiles, cap):
    """Lowered to the calibrated size, a photo's highest tile crosses a calibrated threshold exactly when it
    crosses the threshold the serving rule asks of a photo of its tile count, the rise's cap included."""
    size = PhotoSize(calibrated_tiles=154, tail_scale=0.6, max_threshold=cap)
    for photo_threshold in (0.55, 0.7, 0.9):
        rule = PhotoRule(0.5, photo_threshold, calibrated_tiles=154, tail_scale=0.6, max_threshold=cap)
        for highest in np.linspace(0.5, 0.9999, 400):
            below, above = size.at_calibrated_size(highest, tiles), rule.needed_for(tiles)
            if abs(highest - above) > 1e-9:  # on the line itself rounding decides
                assert (below >= photo_threshold) == (highest >= above)
    assert PhotoSize(154, 0.6).at_calibrated_size(0.8, 100) == 0.8  # smaller photos: the threshold never falls
    assert PhotoSize(None, 0.6).at_calibrated_size(0.8, 600) == PhotoSize(154, 0.0).at_calibrated_size(0.8, 600) == 0.8


def test_the_rule_is_chosen_on_labeled_photos_beside_mosaics_at_their_own_size():
    """A big clean site photo scoring above every clean mosaic sets the threshold, as much as its size allows:
    the rule then labels no calibration photo a crack, and the crack photos are found."""
    site_clean = labeled_photo("site/clean.jpg", 4000, 3000, {10: 0.9}, crack=False)  # 432 tiles
    site_crack = labeled_photo("site/crack.jpg", 4000, 3000, {40: 0.99, 41: 0.95, 58: 0.9}, crack=True)
    scored = [*seams(0.55, 0.62), *cracks(0.97, 0.99), site_clean, site_crack]
    size = PhotoSize(calibrated_tiles(scored), 0.5)
    assert size.calibrated_tiles == 154  # the mosaics' count, photos of any size beside them
    choice = choose_photo_rule(scored, tile_threshold=0.5, size=size)
    lowered = size.at_calibrated_size(0.9, 432)  # the clean photo's highest tile, at 154 tiles
    assert 0.62 < lowered < 0.9 and choice.photo_threshold == pytest.approx(lowered + 0.5 * (0.97 - lowered))
    rule = PhotoRule(0.5, choice.photo_threshold, choice.min_tiles, calibrated_tiles=154, tail_scale=0.5)
    assert [photo_is_crack(p.probabilities, p.boxes, rule) for p in scored] == [False] * 2 + [True] * 2 + [False, True]
    assert {key: choice.record[key] for key in ("clean_mosaics", "crack_mosaics", "clean_photos", "crack_photos")} == {
        "clean_mosaics": 2, "crack_mosaics": 2, "clean_photos": 1, "crack_photos": 1}  # fmt: skip
    blind = choose_photo_rule(scored, tile_threshold=0.5)  # counted at its raw size the photo asks more
    assert blind.photo_threshold == pytest.approx(0.9 + 0.5 * (0.97 - 0.9))


def test_photos_alone_are_calibrated_at_the_median_photos_tile_count():
    """A pool of photos only: the threshold holds up to the median photo's tile count and rises beyond it."""
    photos = [labeled_photo(f"p{n}.jpg", width, 908, {}, crack=n % 2 == 1)
              for n, width in enumerate((1135, 2270, 3405, 4540))]  # fmt: skip
    assert calibrated_tiles(photos) == len(tile_boxes(2270, 908, TileConfig()))  # the lower of the two middle ones
    assert calibrated_tiles([]) is None


def test_a_clean_photo_scoring_like_the_cracks_is_left_out_of_the_choice():
    """One clean photo above every crack would switch the rule off: it is named and left out, and the rule
    is chosen on the rest. Many such photos are a model that cannot tell them apart: none is left out."""
    lit = {10: 0.999, 11: 0.9, 24: 0.9, 25: 0.9}  # a 2 x 2 group of tiles (14 columns), as a crack lights
    odd = labeled_photo("site/odd.jpg", 2270, 1816, lit, crack=False)
    plain = [labeled_photo(f"site/plain-{n}.jpg", 2270, 1816, {10: 0.6}, crack=False) for n in range(3)]
    crack_photo = labeled_photo("site/crack.jpg", 2270, 1816, {40: 0.99, 41: 0.95}, crack=True)
    scored = [*seams(0.55, 0.62), *cracks(0.97, 0.99), odd, *plain, crack_photo]
    kept = choose_photo_rule(scored, 0.5)  # no crack scores above it: the photo rule is off
    assert (kept.photo_threshold, kept.min_tiles) == (0.5, 1)
    left_out = crack_like_photos({"litert-int8": scored}, 0.5)
    assert left_out == {"photos": {"site/odd.jpg": 0.999}, "note": None}
    alone = labeled_photo("site/alone.jpg", 2270, 1816, {10: 0.999}, crack=False)  # one tile: 2 touching tiles do
    assert crack_like_photos({"litert-int8": [*scored[:-5], alone, crack_photo]}, 0.5)["photos"] == {}
    rest = [photo for photo in scored if photo is not odd]
    assert choose_photo_rule(rest, 0.5).photo_threshold == pytest.approx(0.62 + 0.5 * (0.97 - 0.62))
    fp32 = [*scored[:-5], labeled_photo("site/odd.jpg", 2270, 1816, {10: 0.5}, crack=False), *scored[-4:]]
    assert crack_like_photos({"litert-int8": fp32, "litert-fp32": scored}, 0.5)["photos"] == {"site/odd.jpg": 0.999}
    many = [labeled_photo(f"site/odd-{n}.jpg", 2270, 1816, lit, crack=False) for n in range(2)]
    none = crack_like_photos({"litert-int8": [*scored[:-5], *many, crack_photo]}, 0.5)
    assert none["photos"] == {} and "2 of 2 clean labeled photos" in none["note"]
    last = crack_like_photos({"litert-int8": [odd, crack_photo, *cracks(0.97)]}, 0.5)  # nothing else to stay above
    assert last["photos"] == {} and "none is left out" in last["note"]


def test_a_big_clean_photo_above_half_the_cracks_counts_as_it_is_at_any_size():
    """Left out by its raw highest tile, as the rule judges it: above half the cracks (0.98) is above the
    rise's cap, which 90 % of them reach, and at or above the cap a 432-tile photo needs no more than a
    photo of the mosaics' 154 tiles. Below the cap the same photo would count lower."""
    boxes = tile_boxes(4000, 3000, TileConfig())
    columns = grid_shape(boxes)[1]
    big = labeled_photo("site/big.jpg", 4000, 3000, {10: 0.985, 11: 0.9, 10 + columns: 0.9, 11 + columns: 0.9},
                        crack=False)  # fmt: skip
    scored = [*seams(0.55, 0.62), *cracks(0.97, 0.98, 0.99), big]
    cap = tail_record({"litert-int8": scored})["photo_max_threshold"]
    size = PhotoSize(calibrated_tiles=154, tail_scale=0.9, max_threshold=cap)
    assert cap is not None and cap <= 0.98
    assert crack_like_photos({"litert-int8": scored}, 0.5) == {"photos": {"site/big.jpg": 0.985}, "note": None}
    assert size.at_calibrated_size(0.985, len(boxes)) == 0.985
    assert size.at_calibrated_size(cap - 0.01, len(boxes)) < cap - 0.01


def test_the_crack_like_level_is_never_below_the_rises_cap():
    """Why a crack-like photo is judged by its raw highest tile: in every runtime, with crack photos of
    any number and score, what half of them reach is at or above what 90 % reach, and so is the lowest."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        runs = {runtime: cracks(*rng.uniform(0.3, 1.0, size=rng.integers(1, 9)))
                for runtime in ("litert-int8", "litert-fp32")}  # fmt: skip
        cap, level = crack_level(runs, MAX_THRESHOLD_FOUND), crack_level(runs, CRACK_LIKE_SHARE)
        assert cap is not None and level is not None and cap <= level


def test_a_mosaic_named_like_a_left_out_photo_stays_in():
    """Leaving a photo out goes by its key among labeled photos: a mosaic of the same name is not touched."""
    odd = labeled_photo("clean-0", 2270, 1816, {}, crack=False)
    assert is_left_out(odd, {"clean-0": 0.99}) and not is_left_out(seams(0.5)[0], {"clean-0": 0.99})


def clean_tiles(rng: np.random.Generator, count: int, scale: float) -> np.ndarray:
    """Clean tile probabilities whose log-odds have an exponential upper tail of ``scale`` above -4."""
    return 1 / (1 + np.exp(-(-4 + rng.exponential(scale, size=count))))


def test_the_tail_scale_is_the_exponential_fit_of_the_clean_tiles_tail():
    """On tiles whose log-odds tail is exponential, the fit finds its scale; too few tiles give no fit."""
    rng = np.random.default_rng(5)
    for scale in (0.4, 0.8, 1.5):
        fitted = tail_scale(list(clean_tiles(rng, 20_000, scale)))
        assert fitted == pytest.approx(scale, rel=0.2)
    assert tail_scale([0.9] * MIN_TAIL_TILES) is None
    assert tail_scale([0.6] * (MIN_TAIL_TILES + 5)) == pytest.approx(0.0, abs=1e-12)  # no spread, no rise


def test_a_threshold_risen_with_the_tail_keeps_big_photos_as_safe_as_calibrated_ones():
    """Calibrated above 120 clean photos of 154 tiles, the fixed threshold lets 4x bigger photos cross it ~4x as
    often; risen by the fitted tail, about as often as a 154-tile photo."""
    rng = np.random.default_rng(11)
    calibration = clean_tiles(rng, 120 * 154, 0.7).reshape(120, 154)
    threshold = float(calibration.max())
    rule = PhotoRule(0.01, threshold, calibrated_tiles=154, tail_scale=tail_scale(list(calibration.ravel())) or 0.0)
    big = clean_tiles(rng, 3000 * 616, 0.7).reshape(3000, 616).max(axis=1)
    small = clean_tiles(rng, 3000 * 154, 0.7).reshape(3000, 154).max(axis=1)
    fixed_rate, risen_rate = float((big >= threshold).mean()), float((big >= rule.needed_for(616)).mean())
    calibrated_rate = float((small >= threshold).mean())
    assert rule.needed_for(154) == threshold and rule.needed_for(616) > threshold
    assert fixed_rate > 2.5 * calibrated_rate  # what issue 11 saw: more tiles, more false alarms
    assert risen_rate < 1.6 * calibrated_rate


def test_the_tail_record_keeps_the_fastest_rising_runtime_and_ignores_crack_mosaics():
    """photo_tiles is the mosaics' tile count; the scale is the largest runtime's, fitted on clean mosaics only."""
    rng = np.random.default_rng(2)

    def clean_set(scale: float) -> list[ScoredMosaic]:
        return [mosaic(f"clean-{n}", dict(enumerate(clean_tiles(rng, len(BOXES), scale)))) for n in range(40)]

    steep, wide = clean_set(0.3), clean_set(1.2)
    record = tail_record({"litert-int8": steep + cracks(0.99, 0.98), "litert-fp32": wide})
    assert record["photo_tiles"] == len(BOXES) == 154
    assert record["photo_max_threshold"] == 0.98  # what 90 % of the crack mosaics' highest tiles (0.98, 0.99) reach
    assert record["per_runtime"]["litert-int8"] == pytest.approx(0.3, rel=0.35)
    assert record["photo_tail_scale"] == record["per_runtime"]["litert-fp32"] == pytest.approx(1.2, rel=0.35)
    nothing = tail_record({"keras": cracks(0.99)})  # no clean tiles: no fit, the threshold never rises
    assert (nothing["photo_tiles"], nothing["photo_tail_scale"], nothing["photo_max_threshold"]) == (None, None, None)


def placed(plan: MosaicPlan, hot: dict[str, float]) -> ScoredMosaic:
    """A clean mosaic scored as if every tile over patch ``key`` scored ``hot[key]`` (the highest wins), others 0.02."""
    cells = {cell: hot[key] for cell, key in enumerate(plan.keys) if key in hot}
    probabilities = [
        max((p for cell, p in cells.items() if overlap(box, plan.cell_box(cell // 10, cell % 10, CELL))), default=0.02)
        for box in BOXES
    ]
    return ScoredMosaic(plan, list(BOXES), probabilities)


def test_a_clean_patch_labeled_crack_wherever_it_is_put_is_named():
    """The mislabeled patch lights its tiles in every mosaic it is in; the tiles it lights also cover its
    neighbours, which change from mosaic to mosaic, and so does a seam: only the patch is crack-like."""
    pool = [f"clean-{n:03d}" for n in range(99)] + ["mislabeled"]
    plans = plan_mosaics(pool, [], MosaicConfig(clean=30, with_cracks=0, seed=4))
    scored = [placed(plan, {"mislabeled": 0.97, plan.keys[n % 80]: 0.9}) for n, plan in enumerate(plans)]
    scored.append(mosaic("crack-0", {tile(2, 3): 0.99}, ((2, 3),)))  # crack mosaics are not looked at
    chosen = crack_like_clean(scored, tile_threshold=0.5, cell_size=CELL)
    assert chosen == {"patches": {"mislabeled": pytest.approx(0.97)}, "note": None}


def test_a_model_that_labels_many_clean_patches_crack_leaves_none_out():
    """Labeling errors are a few patches; a tenth of the clean ones is a model that cannot tell the classes apart."""
    plan = MosaicPlan("clean-0", 8, 10, tuple(f"clean-{n:03d}" for n in range(80)), ())
    scored = [placed(plan, {f"clean-{n:03d}": 0.8 for n in range(8)})]
    chosen = crack_like_clean(scored, tile_threshold=0.5, cell_size=CELL)
    assert chosen["patches"] == {} and "8 of 80 clean patches score like cracks" in (chosen["note"] or "")


def test_marked_share_is_the_part_of_the_patch_under_marked_tiles():
    """Half a patch under a marked tile is 0.5; unmarked tiles count for nothing."""
    patch = (0, 0, 100, 100)
    assert marked_share(patch, [(50, 0, 150, 100)], [0.9], 0.5) == pytest.approx(0.5)
    assert marked_share(patch, [(50, 0, 150, 100), (0, 0, 100, 50)], [0.9, 0.9], 0.5) == pytest.approx(0.75)
    assert marked_share(patch, [(0, 0, 100, 100)], [0.4], 0.5) == 0.0


def test_figures_count_crack_patches_in_marked_tiles_and_the_bar():
    """A crack patch whose tiles are cold counts as not marked, and the bar follows the counts."""
    cold = mosaic("crack-cold", {tile(6, 6): 0.99}, ((0, 0),))  # found (a hot tile elsewhere), patch not marked
    scored = seams(0.3) + cracks(0.99) + [cold]
    figures = photo_figures(scored, ModelCard(version="v", threshold=0.5, photo_threshold=0.8))
    assert figures["crack_patches"] == 2 and figures["crack_patches_in_marked_tiles"] == 1
    assert figures["grid"] == [8, 10] and figures["tiles_per_mosaic"] == len(BOXES) == 154
    assert not figures["meets_bar"]  # 1 of 2 patches marked is below 90 %
    bar = {"clean_mosaics": 40, "false_alarms": 1, "crack_mosaics": 40, "found": 40, "crack_patches": 80,
           "crack_patches_in_marked_tiles": 72}  # fmt: skip
    assert meets_bar(bar)
    assert not meets_bar({**bar, "false_alarms": 2}) and not meets_bar({**bar, "found": 39})
    assert not meets_bar({**bar, "crack_patches_in_marked_tiles": 71})


def test_the_figures_name_the_patches_under_false_alarms_and_in_missed_crack_mosaics():
    """A patch under two false alarms' highest tiles is named first; a missed crack mosaic names its crack patch."""

    def clean_with_hot_patch(name: str, hot: dict[int, float]) -> ScoredMosaic:
        made = mosaic(name, hot)
        return replace(made, plan=replace(made.plan, keys=("hot-patch", *made.plan.keys[1:])))

    scored = [
        clean_with_hot_patch("a", {tile(0, 0): 0.9}),  # the corner tile covers cell 0 alone
        clean_with_hot_patch("b", {tile(0, 1): 0.95}),  # the next straddles cells 0 and 1
        clean_with_hot_patch("c", {tile(0, 0): 0.3}),  # below the rule: no false alarm, not counted
        *cracks(0.99),
        mosaic("crack-missed", {}, ((4, 4),)),
    ]
    figures = photo_figures(scored, ModelCard(version="v", threshold=0.5, photo_threshold=0.8))
    assert (figures["false_alarms"], figures["found"]) == (2, 1)
    assert figures["false_alarm_patches"] == {"hot-patch": 2, "b/1": 1}
    assert list(figures["false_alarm_patches"]) == ["hot-patch", "b/1"]  # most false alarms first
    assert figures["missed_crack_patches"] == ["crack-missed/44"]
    assert under_highest_tile(scored[1], CELL) == ["hot-patch", "b/1"]


def test_figures_apply_the_risen_threshold_and_show_what_it_changed():
    """A card calibrated on 42-tile photos asks more of these 154-tile ones: the seam at 0.8 no longer counts,
    and the figures say what the threshold would have done not risen."""
    card = ModelCard(version="v", threshold=0.5, photo_threshold=0.7, photo_tiles=42, photo_tail_scale=1.0)
    needed = 1 / (1 + math.exp(-(math.log(0.7 / 0.3) + math.log(154 / 42))))
    figures = photo_figures(seams(0.8, 0.3) + cracks(0.97), card)
    assert (figures["false_alarms"], figures["found"]) == (0, 1)
    assert figures["without_rise"] == {"false_alarms": 1, "found": 1}
    assert figures["rule"]["for_these_photos"] == f"highest tile >= {needed:.4f}" and needed > 0.8
    assert figures["rule"]["calibrated_tiles"] == 42 and "up to 42 tiles" in figures["rule"]["describe"]
    flat = photo_figures(seams(0.8), ModelCard(version="v", photo_threshold=0.7))
    assert threshold_rose(figures) and not threshold_rose(flat)
    assert not threshold_rose({key: value for key, value in figures.items() if key != "without_rise"})  # old figures


def test_int8_rounding_is_not_fitted_as_a_tail():
    """int8 scores every tile under 1/512 as 0: a tail reaching down there has no fit; one above it does."""
    rng = np.random.default_rng(8)

    def int8(log_odds: np.ndarray) -> list[float]:
        return list(np.round(256 / (1 + np.exp(-log_odds))) / 256)

    confident = int8(-10 + rng.exponential(0.7, size=120 * 154))  # the top 0.5 % near -6.3: all round to 0
    assert float(np.mean(np.array(confident) == 0)) > 0.995 and tail_scale(confident) is None
    assert tail_scale(int8(-2 + rng.exponential(0.7, size=120 * 154))) == pytest.approx(0.7, rel=0.3)


def test_the_rise_stops_where_every_runtime_still_finds_most_cracks():
    """photo_max_threshold is the lowest of the runtimes' 90 % values: int8's 0.98 here, not fp32's 0.9999."""
    rng = np.random.default_rng(9)
    clean = [mosaic(f"clean-{n}", dict(enumerate(clean_tiles(rng, len(BOXES), 0.5)))) for n in range(40)]
    record = tail_record({"litert-int8": clean + cracks(0.99, 0.98), "litert-fp32": clean + cracks(0.9999, 0.9999)})
    assert record["photo_max_threshold"] == 0.98


def test_the_check_scores_mosaics_through_the_serving_path(tmp_path, synth_patches, detector_64):
    """Mosaics of held-out synthetic patches scored by a dark-line detector: cracks found and marked."""
    from crack_model.serving.scorer import load_scorer

    clean, crack_keys = synth_patches
    config = MosaicConfig(rows=3, columns=4, clean=6, with_cracks=6, seed=4)
    figures_by_runtime = {}
    for runtime in ("keras", "litert-int8"):
        scorer = load_scorer(detector_64, runtime)
        figures_by_runtime[runtime] = mosaic_check(scorer, clean, crack_keys, _read, config)
    for figures in figures_by_runtime.values():
        assert (figures["clean_mosaics"], figures["crack_mosaics"]) == (6, 6)
        assert figures["found"] == 6 and figures["crack_patches"] >= 6
        assert figures["crack_patches_in_marked_tiles"] >= 0.9 * figures["crack_patches"]
        assert figures["grid"] == [3, 4] and figures["tiles_per_mosaic"] > 1
    assert figures_by_runtime["litert-int8"]["runtime"] == "litert-int8"


def _read(path: str) -> bytes:
    from pathlib import Path

    return Path(path).read_bytes()


@pytest.fixture(scope="module")
def synth_patches(tmp_path_factory) -> tuple[list[str], list[str]]:
    """Synthetic 64 px patches (clean concrete texture and dark-line cracks) as file paths."""
    from crack_model.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("patches")
    generate_dataset(root, 20, size=64, seed=11)
    return sorted(str(p) for p in (root / "Negative").glob("*.jpg")), sorted(
        str(p) for p in (root / "Positive").glob("*.jpg")
    )


@pytest.fixture(scope="module")
def detector_64(tmp_path_factory):
    """The hand-set dark-line detector, tiling photos into 64 px tiles (the patches' size)."""
    from tests.gate_models import build_detector, variant

    source = build_detector(tmp_path_factory.mktemp("detector") / "model", "det-64")
    return variant(source, tmp_path_factory.mktemp("detector-64") / "model", "det-64", tile_size=64)


def confirmed(scored: list[ScoredMosaic], *confirmations: float | None) -> list[ScoredMosaic]:
    return [replace(one, confirmation=value) for one, value in zip(scored, confirmations, strict=True)]


def test_the_confirmation_keeps_every_validation_crack_the_rule_finds_and_never_rises_above_the_tile_threshold():
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=0.8)
    weak = mosaic("crack-weak", {tile(2, 3): 0.6}, ((2, 3),))  # missed by the rule (below 0.8): it cannot count
    scored = confirmed([*cracks(0.99, 0.97), weak], 0.9, 0.42, 0.1) + confirmed(seams(0.7, 0.3), 0.2, None)
    threshold, record = choose_confirmation(scored, rule)
    assert threshold == 0.42  # the weakest crack found; the one at 0.6 is missed by the rule anyway
    assert record["crack_photos_found"] == 2 and record["lowest_crack_confirmation"] == 0.42
    assert (record["clean_photos_lit"], record["clean_photos_unconfirmed"]) == (0, 0)
    strong, _ = choose_confirmation(confirmed(cracks(0.99), 0.95), rule)
    assert strong == 0.5  # validation shows nothing above the tile threshold: a crack tile is what it is
    none, skipped = choose_confirmation(confirmed([weak], 0.9), rule)
    assert none is None and "finds no validation crack photo" in skipped["skipped"]


def test_figures_apply_the_confirmation_and_show_what_it_changed():
    card = ModelCard(version="v", threshold=0.5, photo_threshold=0.7, photo_confirm_threshold=0.45)
    scored = confirmed(seams(0.8, 0.75, 0.3), 0.3, 0.6, None) + confirmed(cracks(0.97), 0.9)
    figures = photo_figures(scored, card)
    assert (figures["false_alarms"], figures["found"]) == (1, 1)
    assert figures["without_confirmation"] == {"false_alarms": 2, "found": 1}
    assert figures["rule"]["confirm_threshold"] == 0.45


def test_calibration_judges_a_small_photo_as_serving_does():
    """Serving asks the touching tiles of photos of 6 tiles or more; calibration asked them of every photo, so a
    clean two-tile photo with one hot tile counted as suppressed, and serving labeled it crack."""
    from crack_model.evaluation.photo_check import ScoredMosaic, ScoredPhoto

    row = [(index * 170, 0, index * 170 + 227, 227) for index in range(6)]

    def mosaic(name: str, probabilities: list[float], crack: bool) -> ScoredMosaic:
        cells = ((0, 0),) if crack else ()
        return ScoredMosaic(MosaicPlan(name, 1, 6, tuple(f"k{n}" for n in range(6)), cells), row, probabilities)

    two = [(0, 0, 227, 227), (73, 0, 300, 227)]
    clean_small = ScoredPhoto("labeled/Negative/site/p.jpg", False, two, [0.97, 0.1])
    scored = [mosaic("clean-1", [0.95, 0.1, 0.1, 0.1, 0.1, 0.1], False),
              mosaic("crack-1", [0.99, 0.99, 0.9, 0.1, 0.1, 0.1], True),
              mosaic("crack-2", [0.93, 0.93, 0.9, 0.1, 0.1, 0.1], True), clean_small]  # fmt: skip
    choice = choose_photo_rule(scored, tile_threshold=0.5)
    rule = PhotoRule(tile_threshold=0.5, photo_threshold=choice.photo_threshold, min_tiles=choice.min_tiles)
    assert choice.photo_threshold > 0.97  # the small clean photo bounds it, as it would light under the rule
    assert not photo_is_crack(clean_small.probabilities, two, rule)
