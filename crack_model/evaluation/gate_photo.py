"""The gate report's photo-level section: the candidate (and the champion) on mosaics of holdout patches.

The holdout's patches are assembled into full-size photos (mosaics.py, ``GATE_MOSAICS``) and
scored as the models will serve them: the candidate with the fastest runtime the gate approved,
the champion with the runtime it serves with, each labeling photos by its own card's photo
rule (a champion trained before the rule labels by its highest tile). The section says whether
each model meets issue 11's bar, and a candidate that misses it gets a note. The policy's
``photo_floors`` gate on the candidate's figures (``photo_floor:<metric>``): they are set well
below the bar, to stop a rule that cannot find crack photos (training with split seed 26 once
chose a photo threshold above anything int8 scores: 0 of 40 crack photos found), not to judge
noise of 40 photos. A candidate whose card has no photo rule (trained before it) gets no section
(its photos would be labeled exactly as before) and its photo floors are skipped, as they are
when the holdout cannot fill a mosaic; a check that could not run (a patch that cannot be read or
scored) fails them, so an unmeasured rule is never promoted.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.evaluation.gate_checks import Check
from crack_model.evaluation.holdout import Holdout
from crack_model.evaluation.mosaics import MosaicConfig, TooFewPatchesError
from crack_model.evaluation.photo_check import MARKED_SHARE, mosaic_check
from crack_model.evaluation.policy import GatePolicy
from crack_model.serving.scorer import load_scorer

log = module_logger(__name__)

GATE_MOSAICS = MosaicConfig(seed=2)


def photo_level_section(
    registry_uri: str,
    name: str,
    candidate: str,
    champion: str | None,
    holdout: Holdout,
    approved: list[str],
    config: MosaicConfig = GATE_MOSAICS,
    *,
    photos: Collection[str] = (),
) -> dict[str, Any] | None:
    """Figures of the candidate and the champion on the same holdout mosaics; None without a photo rule.

    ``photos``: holdout keys of full-size photos (more than one tile), left out of the mosaics: shrunk
    into a cell, a photo's crack would vanish. The holdout metrics label them by the photo rule.
    """
    candidate_scorer = load_scorer(f"models:/{name}/{candidate}", runtime=approved[0] if approved else "keras",
                                   registry=registry_uri)  # fmt: skip
    if candidate_scorer.card.photo_threshold is None and candidate_scorer.card.photo_min_tiles <= 1:
        return None
    crack_class = candidate_scorer.card.crack_class
    patches = [(key, image) for key, image in zip(holdout.keys, holdout.images, strict=True) if key not in photos]
    clean = [key for key, image in patches if image.label != crack_class]
    cracks = [key for key, image in patches if image.label == crack_class]
    section: dict[str, Any] = {"mosaics": asdict(config), "holdout": holdout.uri, "photos_left_out": len(photos),
                               "marked": f"a crack patch is in marked tiles when tiles at or above the tile "
                                         f"threshold cover at least {MARKED_SHARE:.0%} of it"}  # fmt: skip
    try:
        section["candidate"] = mosaic_check(candidate_scorer, clean, cracks, holdout.read, config)
    except TooFewPatchesError as error:  # a holdout too small for mosaics: say so, the gate still decides
        log.warning("no photo-level figures for %s %s: %s", name, candidate, error)
        section["skipped"] = str(error)
        return section
    except CrackModelError as error:  # a patch that cannot be read or scored: the photo floors fail on it
        log.warning("the photo-level check of %s %s could not run: %s", name, candidate, error)
        section["failed"] = str(error)
        return section
    del candidate_scorer
    if champion is not None:
        try:
            champion_scorer = load_scorer(f"models:/{name}/{champion}", registry=registry_uri)
            section["champion"] = mosaic_check(champion_scorer, clean, cracks, holdout.read, config)
        except CrackModelError as error:  # the champion's figures are for comparison only
            log.warning("no photo-level figures for the champion %s %s: %s", name, champion, error)
            section["champion_failed"] = str(error)
    return section


def photo_level_note(section: dict[str, Any] | None) -> str | None:
    """A note for the report when the candidate misses the photo-level bar."""
    figures = (section or {}).get("candidate")
    if not figures or figures["meets_bar"]:
        return None
    return (
        f"photo level (mosaics of holdout patches): {figures['false_alarms']} of {figures['clean_mosaics']} clean "
        f"photos labeled crack, {figures['found']} of {figures['crack_mosaics']} crack photos found, "
        f"{figures['crack_patches_in_marked_tiles']} of {figures['crack_patches']} crack patches in marked tiles: "
        "below the bar (at most 1 false alarm in 40, every crack photo found, 90 % of crack patches marked)"
    )


def photo_figures_for_floors(figures: dict[str, Any]) -> dict[str, float | None]:
    """The policy's photo metrics from one model's mosaic figures (None when there were no such photos)."""
    crack, clean = figures["crack_mosaics"], figures["clean_mosaics"]
    return {
        "photo_crack_recall": figures["found"] / crack if crack else None,
        "photo_specificity": (clean - figures["false_alarms"]) / clean if clean else None,
    }


def photo_floor_checks(section: dict[str, Any] | None, policy: GatePolicy) -> list[Check]:
    """``photo_floor:<metric>`` on the candidate's mosaic figures; skipped, with why, when there are none."""
    figures = (section or {}).get("candidate")
    if section is not None and section.get("failed"):
        why = f"the photo-level check could not run: {section['failed']}"
        return [
            Check(f"photo_floor:{metric}", "fail", why, None, floor) for metric, floor in policy.photo_floors.items()
        ]
    if figures is None:
        why = (
            "the candidate's card has no photo rule: photos are labeled by the highest tile, as before"
            if section is None
            else f"no holdout mosaics: {section.get('skipped')}"
        )
        return [
            Check(f"photo_floor:{metric}", "skipped", why, None, floor) for metric, floor in policy.photo_floors.items()
        ]
    values = photo_figures_for_floors(figures)
    counts = {
        "photo_crack_recall": f"{figures['found']} of {figures['crack_mosaics']} crack photos found",
        "photo_specificity": f"{figures['clean_mosaics'] - figures['false_alarms']} of {figures['clean_mosaics']} "
        "clean photos labeled clean",
    }
    checks = []
    for metric, floor in policy.photo_floors.items():
        value, name = values[metric], f"photo_floor:{metric}"
        if value is None:
            checks.append(Check(name, "skipped", f"{metric} undefined: no such photos", None, floor))
            continue
        relation, status = (">=", "pass") if value >= floor else ("<", "fail")
        message = (
            f"{metric} {value:.4f} {relation} floor {floor} ({counts[metric]}, {figures['runtime']}, holdout mosaics)"
        )
        checks.append(Check(name, status, message, value, floor))
    return checks
