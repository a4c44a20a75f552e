"""The gate report's photo-level section: the candidate (and the champion) on mosaics of holdout patches.

The holdout's patches are assembled into full-size photos (mosaics.py, ``GATE_MOSAICS``) and
scored as the models will serve them: the candidate with the fastest runtime the gate approved,
the champion with the runtime it serves with, each labeling photos by its own card's photo
rule (a champion trained before the rule labels by its highest tile). Reported, not gating:
the section says whether each model meets issue 11's bar, and a candidate that misses it gets
a note. A candidate whose card has no photo rule (trained before it) gets no section: its
photos would be labeled exactly as before.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.evaluation.holdout import Holdout
from crack_model.evaluation.mosaics import MosaicConfig
from crack_model.evaluation.photo_check import MARKED_SHARE, mosaic_check
from crack_model.serving.scorer import load_scorer

log = logging.getLogger(__name__)

GATE_MOSAICS = MosaicConfig(seed=2)


def photo_level_section(
    registry_uri: str,
    name: str,
    candidate: str,
    champion: str | None,
    holdout: Holdout,
    approved: list[str],
    config: MosaicConfig = GATE_MOSAICS,
) -> dict[str, Any] | None:
    """Figures of the candidate and the champion on the same holdout mosaics; None without a photo rule."""
    candidate_scorer = load_scorer(f"models:/{name}/{candidate}", runtime=approved[0] if approved else "keras",
                                   registry=registry_uri)  # fmt: skip
    if candidate_scorer.card.photo_threshold is None and candidate_scorer.card.photo_min_tiles <= 1:
        return None
    crack_class = candidate_scorer.card.crack_class
    clean = [key for key, image in zip(holdout.keys, holdout.images, strict=True) if image.label != crack_class]
    cracks = [key for key, image in zip(holdout.keys, holdout.images, strict=True) if image.label == crack_class]
    section: dict[str, Any] = {"mosaics": asdict(config), "holdout": holdout.uri,
                               "marked": f"a crack patch is in marked tiles when tiles at or above the tile "
                                         f"threshold cover at least {MARKED_SHARE:.0%} of it"}  # fmt: skip
    try:
        section["candidate"] = mosaic_check(candidate_scorer, clean, cracks, holdout.store.read, config)
        del candidate_scorer
        if champion is not None:
            champion_scorer = load_scorer(f"models:/{name}/{champion}", registry=registry_uri)
            section["champion"] = mosaic_check(champion_scorer, clean, cracks, holdout.store.read, config)
    except CrackModelError as error:  # a holdout too small for mosaics: say so, the gate still decides
        log.warning("no photo-level figures for %s %s: %s", name, candidate, error)
        section["skipped"] = str(error)
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
