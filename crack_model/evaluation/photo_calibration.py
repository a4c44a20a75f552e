"""Choose the photo rule (serving/photo_decision.py) on scored mosaics of validation patches, and on the
validation split's own labeled photos when it has some.

For each number of touching crack tiles asked for (``min_tiles`` 1 to ``MAX_MIN_TILES``), a
mosaic's *photo score* is its highest tile when it has a group that large at or above the tile
threshold, else nothing (no threshold makes it a crack).

The false alarms are bounded first: the photo threshold lies above the photo score of every clean
validation mosaic (``highest_clean``; from every runtime scored), so none of them is labeled crack.
Calibration scores three times as many clean mosaics as the check's 40 for this (training's
default): a new clean photo then scores above all of them with a chance of about 1 in 121,
well under the bar's 1 in 40. The crack mosaics scoring below ``highest_clean`` are missed:
no threshold finds them without labeling that clean mosaic a crack. The ``min_tiles`` that misses
the fewest wins (ties: the smaller, which asks least of a crack). The threshold is then placed
halfway (``GAP_SHARE``) between ``highest_clean`` and the lowest crack mosaic above it, never
below the tile threshold: with no clean mosaic at the tile threshold the photo rule is the patch rule.
So it is when no crack mosaic scores above every clean one (a model that cannot tell them apart):
a rule that finds no crack would be worse than none.

How the threshold rises for photos of more tiles than the mosaics (``tail_scale``): a photo is a
false alarm when its highest clean tile crosses the threshold, so with n tiles the chance grows
about n-fold. Above the top ``TAIL_SHARE`` of the clean mosaics' tiles, their log-odds fall off
about exponentially (fitted scale 0.5-0.9 on the METU test mosaics, whatever the share or the photo
size); for an exponential tail, keeping n times the tiles at one photo's chance means a threshold
higher by scale x ln(n) in log-odds. The scale is the tail's mean excess over its lowest value
(the exponential's maximum-likelihood fit), per runtime, and the largest of the runtimes is kept.
The rise stops at what ``MAX_THRESHOLD_FOUND`` of the crack mosaics' highest tiles reach in every runtime.

A site's labeled photos (``ScoredPhoto``) count beside the mosaics: a clean one bounds the threshold,
a crack one is to be found. Their sizes differ from the mosaics', so each counts as the rule will
judge it: a photo of more tiles than the mosaics' by its highest tile lowered as much as the
threshold rises for it, up to the rise's cap (``PhotoSize``). With no mosaics (a pool of photos
only) the threshold is chosen for the median photo's tile count. A clean photo lit like most
crack photos is left out (``crack_like_photos``): one such photo, mislabeled or a crack to this
model, would otherwise raise the threshold above every crack and switch the rule off.

Clean patches that score like cracks are left out of the clean mosaics (``crack_like_clean``). A
clean patch the model labels crack wherever it is put (the median, over the clean mosaics it is in,
of the highest tile over its cell reaches the tile threshold) is mislabeled or, to this model, a
crack. It recurs in about half of the clean mosaics, and a threshold above it misses crack photos:
on the METU sample, with the split of seed 26 the wire of ``Negative/15518.jpg`` fell into
validation and the rule chose 0.9967, above anything int8 can score (0.996): no crack photo was
found. With seed 28 the mislabeled ``Negative/10685.jpg`` (it shows a crack) did the same through
"3 touching tiles": 25 of 40 crack test photos found. Their medians were 0.92 and 0.95; the next
clean patches' (int8) 0.19 and 0.02. Such a patch is a patch-level error, in the patch metrics and their
list of misclassified images; the calibration record names it.

The confirmation (serving/photo_confirmation.py) is chosen after the rule (``choose_confirmation``):
a photo the rule calls crack must also have a top tile whose mean over its flips reaches the tile
threshold, lowered to the lowest such mean of a validation crack photo the rule finds, so the
confirmation loses none of them. It never rises above the tile threshold: the rule labels no
validation clean photo a crack, so validation cannot show how high it could go without losing
cracks, and the tile threshold is what a crack tile is. On the test mosaics of two METU splits it
removed 4 of 14 and 23 of 33 false alarms and no crack photo (README "Full-size photos").

Why not find every validation crack first: on the METU sample one validation crack patch
(a clear crack, 15623_1.jpg) scores only 0.61 in its best tile when the tile grid cuts it, while
seams between clean patches reach 0.77 (int8) to 0.88 (fp32); finding it would leave 11 to 20 of
40 clean photos labeled crack, the very problem of issue 11.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crack_model.evaluation.photo_check import Scored, ScoredMosaic, ScoredPhoto
from crack_model.serving.photo_decision import PhotoRule, has_group, lit_by_rule, log_odds, overlap

MAX_MIN_TILES = 3
GAP_SHARE = 0.5
TAIL_SHARE = 0.005  # the top half percent of clean tiles: ~90 of the 18,480 in 120 mosaics of 154 tiles
MIN_TAIL_TILES = 20  # fewer say nothing about a tail
TAIL_FLOOR = math.log((1 / 256) / (1 - 1 / 256))  # log-odds of int8's smallest step above 0
MAX_THRESHOLD_FOUND = 0.9  # a photo threshold risen for a big photo still finds 90 % of the validation crack photos
CRACK_LIKE_SHARE = 0.5  # a clean labeled photo above half the crack photos is left out of the choice
MAX_LEFT_OUT_SHARE = 0.05  # more clean patches than this scoring like cracks is a model, not labeling errors


@dataclass(frozen=True)
class _Option:
    """One ``min_tiles``: the lowest threshold that labels no clean mosaic, and the crack mosaics it misses."""

    min_tiles: int
    highest_clean: float | None  # the highest clean photo score; None: no clean mosaic has such a group
    missed_crack_mosaics: int  # crack mosaics and photos at or below highest_clean, or without a min_tiles group
    lowest_crack_found: float | None  # the lowest crack photo score above highest_clean


@dataclass(frozen=True)
class PhotoSize:
    """How the threshold rises with a photo's tile count (the card's ``photo_tiles`` and ``photo_tail_scale``)."""

    calibrated_tiles: int | None = None
    tail_scale: float = 0.0
    max_threshold: float | None = None  # the card's photo_max_threshold: the rise stops there

    def at_calibrated_size(self, highest: float, tiles: int) -> float:
        """A photo's highest tile as it compares with the threshold of a photo of ``calibrated_tiles`` tiles.

        The threshold for n > calibrated_tiles tiles is the calibrated one raised by tail_scale x
        ln(n / calibrated_tiles) in log-odds (photo_decision.py), so a bigger photo's highest tile,
        lowered by as much, crosses the calibrated threshold exactly when it crosses its own. The
        rise stops at ``max_threshold``: a highest tile at or above it needs only the calibrated
        threshold, so it counts as it is.
        """
        if self.calibrated_tiles is None or self.tail_scale <= 0 or tiles <= self.calibrated_tiles:
            return highest
        if self.max_threshold is not None and highest >= self.max_threshold:
            return highest
        lowered = log_odds(highest) - self.tail_scale * math.log(tiles / self.calibrated_tiles)
        return 1.0 / (1.0 + math.exp(-lowered))


def photo_scores(scored: Sequence[Scored], tile_threshold: float, min_tiles: int,
                 size: PhotoSize | None = None) -> list[float | None]:  # fmt: skip
    """Per photo: its highest tile (at the calibrated size) if it has ``min_tiles`` touching tiles at or above
    the tile threshold, else None."""
    size = size or PhotoSize()
    return [
        size.at_calibrated_size(max(photo.probabilities), len(photo.probabilities))
        if has_group(photo.probabilities, photo.boxes, tile_threshold, min_tiles)
        else None
        for photo in scored
    ]


def _option(clean: Sequence[Scored], cracked: Sequence[Scored], tile_threshold: float, min_tiles: int,
            size: PhotoSize) -> _Option:  # fmt: skip
    highest_clean = max((s for s in photo_scores(clean, tile_threshold, min_tiles, size) if s is not None),
                        default=None)  # fmt: skip
    crack_scores = photo_scores(cracked, tile_threshold, min_tiles, size)

    def found(score: float | None) -> bool:
        if score is None:
            return False
        if highest_clean is None or highest_clean < tile_threshold:  # the patch rule labels no clean mosaic
            return score >= tile_threshold
        return score > highest_clean

    return _Option(
        min_tiles=min_tiles,
        highest_clean=highest_clean,
        missed_crack_mosaics=sum(not found(score) for score in crack_scores),
        lowest_crack_found=min((score for score in crack_scores if found(score) and score is not None), default=None),
    )


@dataclass(frozen=True)
class PhotoRuleChoice:
    """The chosen rule and what it was chosen from."""

    photo_threshold: float
    min_tiles: int
    record: dict[str, Any]


def choose_photo_rule(
    scored: Sequence[Scored], tile_threshold: float, size: PhotoSize | None = None
) -> PhotoRuleChoice:
    """The photo rule that labels no clean photo a crack and misses the fewest crack photos (module docstring).

    ``scored``: mosaics and labeled photos; a photo of more tiles than ``size.calibrated_tiles``
    counts at the calibrated size, as the rule will judge it.

    Raises:
        ValueError: no clean or no crack photos to choose from.
    """
    clean = [photo for photo in scored if not photo.has_cracks]
    cracked = [photo for photo in scored if photo.has_cracks]
    if not clean or not cracked:
        msg = f"choosing a photo rule needs clean and crack photos, got {len(clean)} and {len(cracked)}"
        raise ValueError(msg)
    size = size or PhotoSize()
    options = [_option(clean, cracked, tile_threshold, n, size) for n in range(1, MAX_MIN_TILES + 1)]
    best = min(options, key=lambda option: (option.missed_crack_mosaics, option.min_tiles))
    highest, lowest = best.highest_clean, best.lowest_crack_found
    if highest is None or highest < tile_threshold:
        threshold = tile_threshold
    elif lowest is None:  # a threshold above every clean mosaic finds no crack: worse than no photo rule
        threshold, best = tile_threshold, options[0]
    else:
        threshold = highest + GAP_SHARE * (lowest - highest)
    record = {  # distinct mosaics and photos: each runtime scores the same ones
        "clean_mosaics": len({scored_name(photo) for photo in clean if isinstance(photo, ScoredMosaic)}),
        "crack_mosaics": len({scored_name(photo) for photo in cracked if isinstance(photo, ScoredMosaic)}),
        "clean_photos": len({scored_name(photo) for photo in clean if isinstance(photo, ScoredPhoto)}),
        "crack_photos": len({scored_name(photo) for photo in cracked if isinstance(photo, ScoredPhoto)}),
        "tile_threshold": tile_threshold,
        "gap_share": GAP_SHARE,
        "options": [asdict(option) for option in options],
        "chosen": {"photo_threshold": threshold, "min_tiles": best.min_tiles},
    }
    return PhotoRuleChoice(float(threshold), best.min_tiles, record)


def reached_by(share: float, ascending: Sequence[float]) -> float:
    """The highest value that at least ``share`` of the (sorted, non-empty) scores reach."""
    reaching = math.ceil(round(share * len(ascending), 9))
    return ascending[max(0, len(ascending) - reaching)]


def tail_scale(clean_tile_probabilities: Sequence[float]) -> float | None:
    """The exponential scale of the top ``TAIL_SHARE`` of clean tiles' log-odds; None when it cannot be fitted.

    The mean excess of the top k log-odds over the next one: the maximum-likelihood fit of an
    exponential tail (module docstring). k is at least ``MIN_TAIL_TILES`` (more than 0.5 % of a
    small validation split's tiles). None with no more than k tiles, or when the (k+1)-th is below
    ``TAIL_FLOOR``: int8 scores every tile under 1/512 as 0, so a tail reaching down there would
    fit the rounding (a simulated scale of 0.7 fitted 10.4 in int8).
    """
    tail = max(MIN_TAIL_TILES, math.ceil(TAIL_SHARE * len(clean_tile_probabilities)))
    if len(clean_tile_probabilities) <= tail:
        return None
    highest = sorted((log_odds(p) for p in clean_tile_probabilities), reverse=True)
    if highest[tail] < TAIL_FLOOR:  # the tail reaches scores int8 rounds to 0: its shape is the rounding's
        return None
    return max(0.0, sum(highest[:tail]) / tail - highest[tail])


def calibrated_tiles(scored: Sequence[Scored]) -> int | None:
    """The tile count the photo threshold is chosen for: the mosaics' (all alike), else the median photo's."""
    mosaics = [len(photo.probabilities) for photo in scored if isinstance(photo, ScoredMosaic)]
    counts = mosaics or sorted(len(photo.probabilities) for photo in scored)
    return max(mosaics) if mosaics else (counts[(len(counts) - 1) // 2] if counts else None)


def tail_record(scored_by_runtime: Mapping[str, Sequence[Scored]]) -> dict[str, Any]:
    """The card's ``photo_tiles``, ``photo_tail_scale`` and ``photo_max_threshold``, with each runtime's fit.

    ``photo_tail_scale`` is the largest runtime's (the threshold then rises fast enough for each);
    all three are None when no runtime had enough clean tiles (the threshold stays the same for
    every photo size). ``photo_max_threshold``: the highest tile that 90 % of the crack photos reach
    in every runtime (the lowest of the runtimes' values). Clean mosaics and clean labeled photos
    alike show the tail.
    """
    scales = {
        runtime: tail_scale([p for mosaic in mosaics if not mosaic.has_cracks for p in mosaic.probabilities])
        for runtime, mosaics in scored_by_runtime.items()
    }
    fitted = [scale for scale in scales.values() if scale is not None]
    tiles = calibrated_tiles(next(iter(scored_by_runtime.values()), []))
    level = crack_level(scored_by_runtime, MAX_THRESHOLD_FOUND)
    cap = level if fitted else None
    return {
        "photo_tiles": tiles if fitted else None,
        "photo_tail_scale": max(fitted) if fitted else None,
        "photo_max_threshold": cap,
        "per_runtime": scales,
        "tail_share": TAIL_SHARE,
    }


def crack_level(scored_by_runtime: Mapping[str, Sequence[Scored]], share: float) -> float | None:
    """The highest tile that ``share`` of the crack photos reach in every runtime; None without any.

    Per runtime, what that share of its crack photos reach (int8 tops out at 0.996, fp32 does not): the lowest holds.
    """
    runs = scored_by_runtime.values()
    crack_highest = [sorted(max(photo.probabilities) for photo in scored if photo.has_cracks) for scored in runs]
    reached = [reached_by(share, highest) for highest in crack_highest if highest]
    return min(reached) if reached else None


def crack_like_photos(scored_by_runtime: Mapping[str, Sequence[Scored]], tile_threshold: float) -> dict[str, Any]:
    """The clean labeled photos to leave out of the choice: ``{"photos": {key: highest tile}, "note"}``.

    A clean photo that, in some runtime, lights ``MAX_MIN_TILES`` touching tiles at the tile
    threshold and whose highest tile is above what half the crack photos and mosaics reach
    (``CRACK_LIKE_SHARE``) looks like a crack to every option of the rule: keeping it clean would
    miss half of them, and one such photo above every crack would switch the photo rule off for
    all. It is mislabeled or, to this model, a crack; like ``crack_like_clean``'s patches it is
    left out, named, and still counted in the figures of the photos the rule was chosen on. More than
    ``MAX_LEFT_OUT_SHARE`` of the clean photos (and more than one) is a model that does not tell
    the classes apart, and a choice needs a clean photo or mosaic to stay above: then none is left
    out. Highest tiles compare as they are, whatever the photo's size: the level half the cracks
    reach is at or above the rise's cap (which 90 % reach), and at or above the cap a big photo
    counts as it is (``PhotoSize``), so a photo above the level is judged raw by the rule too.
    """
    level = crack_level(scored_by_runtime, CRACK_LIKE_SHARE)
    clean_photos: set[str] = set()
    crack_like: dict[str, float] = {}
    for scored in scored_by_runtime.values():
        for photo in scored:
            if isinstance(photo, ScoredPhoto) and not photo.has_cracks:
                clean_photos.add(photo.key)
                top = max(photo.probabilities)
                lit = has_group(photo.probabilities, photo.boxes, tile_threshold, MAX_MIN_TILES)
                if level is not None and lit and top > level:
                    crack_like[photo.key] = max(crack_like.get(photo.key, 0.0), top)
    crack_like = dict(sorted(crack_like.items()))
    kept_clean = any(not photo.has_cracks and not is_left_out(photo, crack_like)
                     for scored in scored_by_runtime.values() for photo in scored)  # fmt: skip
    if crack_like and not kept_clean:
        note = "every clean photo scores like the crack photos: none is left out, a rule needs one to stay above"
        return {"photos": {}, "note": note}
    if len(crack_like) > max(1, int(MAX_LEFT_OUT_SHARE * len(clean_photos))):
        note = (f"{len(crack_like)} of {len(clean_photos)} clean labeled photos score like crack photos: "
                "the model does not tell them apart, so none is left out")  # fmt: skip
        return {"photos": {}, "note": note}
    return {"photos": crack_like, "note": None}


def is_left_out(photo: Scored, left_out: Mapping[str, float]) -> bool:
    """Whether ``photo`` is a labeled photo ``crack_like_photos`` left out (a mosaic never is, whatever its name)."""
    return isinstance(photo, ScoredPhoto) and photo.key in left_out


def scored_name(photo: Scored) -> str:
    """A mosaic's plan name or a labeled photo's key: the same in every runtime's scores."""
    return photo.plan.name if isinstance(photo, ScoredMosaic) else photo.key


def crack_like_clean(scored: Sequence[ScoredMosaic], tile_threshold: float, cell_size: int) -> dict[str, Any]:
    """The clean patches to leave out of the clean mosaics: ``{"patches": {key: median score}, "note"}``.

    A patch's score in one clean mosaic is the highest tile over its cell; a patch is crack-like
    when its median over the clean mosaics it is in (every runtime's) reaches the tile threshold:
    the model labels it crack wherever it is put, whatever its neighbours (seams come and go with
    them). Labeling errors are a few patches: when more than ``MAX_LEFT_OUT_SHARE`` of the clean
    patches (and more than one) are crack-like, the model does not tell the classes apart, none is
    left out and ``note`` says so.
    """
    placements: dict[str, list[float]] = {}
    for mosaic in scored:
        if mosaic.has_cracks:
            continue
        for cell, key in enumerate(mosaic.plan.keys):
            box = mosaic.plan.cell_box(cell // mosaic.plan.columns, cell % mosaic.plan.columns, cell_size)
            over = [p for tile, p in zip(mosaic.boxes, mosaic.probabilities, strict=True) if overlap(tile, box)]
            placements.setdefault(key, []).append(max(over, default=0.0))
    medians = {key: float(np.median(scores)) for key, scores in placements.items()}
    crack_like = {key: score for key, score in sorted(medians.items()) if score >= tile_threshold}
    if len(crack_like) > max(1, int(MAX_LEFT_OUT_SHARE * len(medians))):
        note = (f"{len(crack_like)} of {len(medians)} clean patches score like cracks wherever they are put: "
                "the model does not tell them apart, so none is left out")  # fmt: skip
        return {"patches": {}, "note": note}
    return {"patches": crack_like, "note": None}


def choose_confirmation(scored: Sequence[Scored], rule: PhotoRule) -> tuple[float | None, dict[str, Any]]:
    """The card's ``photo_confirm_threshold`` for ``rule`` (module docstring), and how it was chosen.

    ``scored``: the validation mosaics and photos of every calibrated runtime, scored with their
    confirmation. None when the rule finds no crack photo of several tiles: nothing to keep it from losing.
    """

    def lit(photo: Scored) -> bool:
        return len(photo.probabilities) > 1 and lit_by_rule(photo.probabilities, photo.boxes, rule)

    found = [photo.confirmation for photo in scored if photo.has_cracks and lit(photo)]
    confirmations = [value for value in found if value is not None]
    if not confirmations:
        return None, {"skipped": "the photo rule finds no validation crack photo of several tiles to confirm"}
    lowest = min(confirmations)
    threshold = min(rule.tile_threshold, lowest)
    clean = [photo.confirmation for photo in scored if not photo.has_cracks and lit(photo)]
    record = {
        "statistic": "a top tile's mean crack probability over the tile and its 3 flips, the highest of its top 3",
        "crack_photos_found": len(found),  # per runtime scored: a mosaic counts once for each
        "lowest_crack_confirmation": lowest,
        "threshold": threshold,
        "clean_photos_lit": len(clean),
        "clean_photos_unconfirmed": sum(value is not None and value < threshold for value in clean),
    }
    return threshold, record
