"""Training's photo-level step: choose the photo rule on validation mosaics (and the validation split's own
labeled photos), measure it on test mosaics.

Runs after the runtimes are exported. The rule must hold in every runtime that may serve: the
validation mosaics are scored with each runtime the card approves (``calibration_runtimes``), and
the rule is chosen on all of their scores together (the highest clean photo and the lowest crack
photo over the runtimes; on the METU mosaics Keras scored seams up to 0.85 where int8 gave 0.75,
single tiles up to 0.66 apart). Test mosaics, built with another seed from patches the rule never
saw, 40 clean and 40 with cracks as the bar asks, are scored with the runtime that will serve (the
fastest approved one, as ``load_scorer`` picks it); ``python -m bench.mosaics`` measures the
others. The figures go to ``metrics.json`` (``photo_level``), the rule to the card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import RUNTIME_FILES, RUNTIME_PREFERENCE, ModelCard
from crack_model.data.labeled import LabeledImage, Split, labeled_fetch
from crack_model.evaluation.mosaics import MosaicConfig, MosaicPlan, Read, TooFewPatchesError, plan_mosaics
from crack_model.evaluation.photo_calibration import (
    PhotoSize,
    choose_confirmation,
    choose_photo_rule,
    crack_like_clean,
    crack_like_photos,
    is_left_out,
    tail_record,
)
from crack_model.evaluation.photo_check import (
    CHECK_MOSAICS,
    Scored,
    ScoredMosaic,
    mosaic_check,
    photo_counts,
    photo_figures,
    score_mosaics,
    score_photos,
)
from crack_model.serving.photo_decision import PhotoRule
from crack_model.serving.scorer import load_scorer

log = module_logger(__name__)

# Three times the check's 40 clean photos: the threshold is bounded by the highest of them (photo_calibration.py).
DEFAULT_MOSAICS = MosaicConfig(clean=120, with_cracks=40)


def _patches(images: list[LabeledImage], crack_class: str) -> tuple[list[str], list[str]]:
    clean = [image.uri for image in images if image.label != crack_class]
    return clean, [image.uri for image in images if image.label == crack_class]


def _no_rule(reason: str) -> dict[str, Any]:
    """No rule: why, for the log and the ``photo_level`` section."""
    log.warning("no photo rule: %s", reason)
    return {"skipped": f"validation split: {reason}; photos are labeled by their highest tile"}


def _score(model_dir: Path, runtimes: list[str], plans: list[MosaicPlan], read: Read) -> dict[str, list[ScoredMosaic]]:
    scored = {}
    for runtime in runtimes:  # one runtime loaded at a time
        log.info("scoring %d validation mosaics with %s for the photo rule", len(plans), runtime)
        scored[runtime] = score_mosaics(load_scorer(model_dir, runtime), plans, read)
    return scored


def _score_photos(model_dir: Path, runtimes: list[str], photos: dict[str, bool], read: Read) -> dict[str, list[Scored]]:
    scored: dict[str, list[Scored]] = {}
    for runtime in runtimes:
        log.info("scoring %d labeled validation photos with %s for the photo rule", len(photos), runtime)
        scored[runtime] = list(score_photos(load_scorer(model_dir, runtime), photos, read))
    return scored


def _size(tail: dict[str, Any]) -> PhotoSize:
    return PhotoSize(tail["photo_tiles"], tail["photo_tail_scale"] or 0.0, tail["photo_max_threshold"])


def _crack_like_photos(scored: dict[str, list[Scored]], tile_threshold: float) -> dict[str, Any]:
    left_out = crack_like_photos(scored, tile_threshold)
    if left_out["note"]:
        log.info("photo rule: %s", left_out["note"])
    for key, highest in left_out["photos"].items():
        log.warning("clean validation photo %s is lit like most crack photos (highest tile %.4f; "
                    "mislabeled?): left out of the photo rule's choice, still counted in "
                    "validation_photos", key, highest)  # fmt: skip
    return left_out


def calibration_runtimes(model_dir: Path, card: ModelCard) -> list[str]:
    """The approved runtimes whose files are there, fastest first; LiteRT fp32 stands in for Keras.

    fp32 is the same float network: its tile scores on the METU validation mosaics were within
    1e-5 of Keras's, at ~2x the speed. int8 is not: up to 0.66 apart on single tiles.
    """
    approved = [name for name in RUNTIME_PREFERENCE if name in card.approved_runtimes]
    present = [name for name in approved if (model_dir / RUNTIME_FILES[name]).is_file()] or ["keras"]
    return [name for name in present if not (name == "keras" and "litert-fp32" in present)]


def _calibration_mosaics(
    model_dir: Path,
    runtimes: list[str],
    card: ModelCard,
    clean: list[str],
    cracks: list[str],
    config: MosaicConfig,
    read: Read,
) -> tuple[list[MosaicPlan], dict[str, list[ScoredMosaic]], dict[str, Any]]:
    """The validation mosaics scored with each runtime, planned again without any crack-like clean patch.

    Raises:
        TooFewPatchesError: too few patches for mosaics.
        CrackModelError: a mosaic could not be scored.
    """
    plans = plan_mosaics(clean, cracks, config)
    scored = _score(model_dir, runtimes, plans, read)
    left_out = crack_like_clean([m for mosaics in scored.values() for m in mosaics], card.threshold, card.tile_size)
    if left_out["note"]:
        log.info("photo rule: %s", left_out["note"])
    if left_out["patches"]:
        for key, median in left_out["patches"].items():
            log.warning("clean validation patch %s is labeled crack wherever it is put (median tile %.4f; "
                        "mislabeled?): left out of the photo rule's clean mosaics", key, median)  # fmt: skip
        plans = plan_mosaics([key for key in clean if key not in left_out["patches"]], cracks, config)
        scored = _score(model_dir, runtimes, plans, read)
    return plans, scored, left_out


def fit_photo_rule(
    model_dir: Path,
    split: Split,
    config: MosaicConfig | None = DEFAULT_MOSAICS,
    *,
    labeled_photos: Sequence[LabeledImage] = (),
) -> dict[str, Any]:
    """Choose the photo rule of the model in ``model_dir`` and save it in its card; the ``photo_level`` section.

    ``split`` holds patches, which mosaics are built from; ``labeled_photos`` are the validation
    split's own full-size photos, which the rule is chosen on beside the mosaics (alone, for a pool
    of photos only): a site that labels its photos gets a rule that has seen them. With ``config``
    None, or neither mosaics nor photos of both classes, the card keeps no photo rule (photos are
    labeled by their highest tile, as before) and the section says why.
    """
    if config is None:
        return {"skipped": "photo-level calibration turned off: photos are labeled by their highest tile"}
    card = ModelCard.load(model_dir)
    runtimes = calibration_runtimes(model_dir, card)
    clean, cracks = _patches(split.validation, card.crack_class)
    photos = {image.uri: image.label == card.crack_class for image in labeled_photos}
    both_classes = len(set(photos.values())) == 2  # a rule needs a clean photo to stay above and a crack to find
    read = labeled_fetch([*split.validation, *split.test, *labeled_photos])  # the photos as fingerprinted, or an error
    try:
        plans, mosaics, left_out = _calibration_mosaics(model_dir, runtimes, card, clean, cracks, config, read)
    except TooFewPatchesError as error:
        if not both_classes:  # the photos could have made up for the patches, had they held both classes
            held = f", and its {len(photos)} labeled photos are all {labeled_photos[0].label}" if photos else ""
            return _no_rule(f"{error}{held}")
        log.info("photo rule from the %d labeled validation photos alone: no mosaics (%s)", len(photos), error)
        plans, mosaics, left_out = [], {runtime: [] for runtime in runtimes}, {"patches": {}, "note": None}
    scored_photos = _score_photos(model_dir, runtimes, photos, read) if photos else {}
    everything = {runtime: [*mosaics[runtime], *scored_photos.get(runtime, [])] for runtime in runtimes}
    photos_left_out = _crack_like_photos(everything, card.threshold) if scored_photos else {"photos": {}, "note": None}
    scored = {runtime: [p for p in scores if not is_left_out(p, photos_left_out["photos"])]
              for runtime, scores in everything.items()}  # fmt: skip
    tail = tail_record(scored)
    choice = choose_photo_rule([photo for scores in scored.values() for photo in scores], card.threshold, _size(tail))
    chosen = replace(card, photo_threshold=choice.photo_threshold, photo_min_tiles=choice.min_tiles,
                     photo_tiles=tail["photo_tiles"], photo_tail_scale=tail["photo_tail_scale"],
                     photo_max_threshold=tail["photo_max_threshold"])  # fmt: skip
    everything_scored = [photo for scores in scored.values() for photo in scores]
    confirm_threshold, confirmation = choose_confirmation(everything_scored, PhotoRule.of(chosen))
    chosen.photo_confirm_threshold = confirm_threshold
    grid = [plans[0].rows, plans[0].columns] if plans else None  # smaller than asked for on a small split
    mosaic_record = {**asdict(config), "grid": grid} if plans else None
    chosen.photo_calibration = {"split": "validation", "runtimes": runtimes, "mosaics": mosaic_record,
                                "labeled_photos": len(photos), **choice.record, "tail": tail,
                                "confirmation": confirmation,
                                "crack_like_clean": left_out, "crack_like_photos": photos_left_out}  # fmt: skip
    test = _test_check(model_dir, runtimes[0], chosen, split.test, config, read) if split.test else None
    chosen.save(model_dir)
    log.info("photo rule: %s (tile threshold %.4f)", PhotoRule.of(chosen).describe(), card.threshold)
    rule = {"photo_threshold": chosen.photo_threshold, "photo_min_tiles": chosen.photo_min_tiles,
            "photo_tiles": chosen.photo_tiles, "photo_tail_scale": chosen.photo_tail_scale,
            "photo_max_threshold": chosen.photo_max_threshold,
            "photo_confirm_threshold": chosen.photo_confirm_threshold, "tile_threshold": card.threshold}  # fmt: skip
    section: dict[str, Any] = {"rule": rule, "crack_like_clean": left_out, "crack_like_photos": photos_left_out}
    if plans:
        section["validation"] = {runtime: photo_figures(scores, chosen) for runtime, scores in mosaics.items()}
    if scored_photos:  # what the rule says of the photos it was chosen on, per runtime
        photo_rule = PhotoRule.of(chosen)
        section["validation_photos"] = {
            runtime: {"clean_photos": sum(not p.has_cracks for p in scores),
                      "crack_photos": sum(p.has_cracks for p in scores), **photo_counts(scores, photo_rule)}
            for runtime, scores in scored_photos.items()
        }  # fmt: skip
        for runtime, counts in section["validation_photos"].items():
            if counts["false_alarms"]:  # the photos it could not keep clean, crack-like ones included
                log.warning("photo rule: %d of the %d clean labeled validation photos are labeled crack with %s",
                            counts["false_alarms"], counts["clean_photos"], runtime)  # fmt: skip
    if test is not None:
        section["test"] = {runtimes[0]: test}
    return section


def _test_check(model_dir: Path, runtime: str, chosen: ModelCard, test: list[LabeledImage],
                config: MosaicConfig, read: Read) -> dict[str, Any]:  # fmt: skip
    """The check on the test split's mosaics with the chosen rule, before the card is saved.

    Too few test patches skip the check (named); a patch that cannot be scored fails the step, as in
    validation, and then the card is left as it was.
    """
    test_config = replace(config, clean=CHECK_MOSAICS.clean, with_cracks=CHECK_MOSAICS.with_cracks,
                          seed=config.seed + 1)  # fmt: skip
    scorer = replace(load_scorer(model_dir, runtime), card=chosen)
    try:
        return mosaic_check(scorer, *_patches(test, chosen.crack_class), read, test_config)
    except TooFewPatchesError as error:
        return {"skipped": f"test split: {error}"}
