"""Which part of the holdout each overall floor reads: all of it, or all but the candidate's new surfaces."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from crack_model.data.manifest import slices_sharing_images, training_slices
from crack_model.evaluation.holdout import Evaluation, Holdout
from crack_model.evaluation.intervals import Outcomes, point_figures
from crack_model.evaluation.policy import GatePolicy


def trained_surfaces(
    champion_rows: Sequence[Mapping[str, str]] | None, candidate_rows: Sequence[Mapping[str, str]] | None
) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """The slices the champion and the candidate learnt from (their data manifests; None: unknown).

    A candidate slice holding an image the champion's manifest lists counts as the champion's too, whatever
    the champion's folder was called: a surface renamed or moved between the trainings is not new.
    """
    champion, candidate = training_slices(champion_rows), training_slices(candidate_rows)
    if champion is not None and champion_rows and candidate_rows:
        champion |= slices_sharing_images(candidate_rows, champion_rows)
    return champion, candidate


def new_surfaces(
    champion_slices: Mapping[str, Mapping[str, Any]],
    policy: GatePolicy,
    champion_trained_on: Collection[str] | None,
    candidate_trained_on: Collection[str] | None,
) -> tuple[dict[str, list[str]], list[str]]:
    """Per overall floor, the new surfaces: gated slices the candidate brings, below that floor for the champion.

    The overall floors were set for the surfaces the served model handles. A holdout that mixes in a new
    surface makes the overall figure depend on that surface's share of the holdout: a candidate better
    than the champion on every slice could fail it, and the worse model would keep serving the new site.
    So on a new surface a candidate must reach its slice floors and not regress against the champion,
    and the overall floor is measured on the other slices (``floor_outcomes``). A slice counts only for
    a metric that its slice floor and slice no-regression both gate (else nothing would hold the
    candidate there), and only while the rest of the holdout has ``min_slice_images`` images with a
    crack among them (else the floor reads the whole holdout, as with no champion).

    A new surface is one the candidate trained on and the champion did not (the slices of their data
    manifests). A slice the champion trained on is never new, however it scores there: a champion
    slipping on a surface it learnt must not lower the next candidate's bar on it. Nor is one the
    candidate did not train on either: it brings nothing there (and the holdout's slice may be misnamed).
    With either model's training slices unknown (registered without slices in its manifest), no slice is new.

    Returns:
        the new surfaces per floor, and notes on slices below a floor that are not new, and why.
    """
    images = sum(report["images"] for report in champion_slices.values())
    cracks = sum(report["cracks"] for report in champion_slices.values())
    below: dict[str, list[str]] = {}
    not_new: dict[tuple[str, str], list[str]] = {}
    for metric, floor in policy.floors.items():
        names = []
        for name, report in sorted(champion_slices.items()):
            if not (
                report["images"] >= policy.min_slice_images
                and metric in policy.floors_for_slice(name)
                and metric in policy.slice_max_drop
                and report["metrics"].get(metric) is not None
                and report["metrics"][metric] < floor
            ):
                continue
            reason = _not_new_because(name, champion_trained_on, candidate_trained_on)
            if reason:
                not_new.setdefault((name, reason), []).append(metric)
            else:
                names.append(name)
        kept_images = images - sum(champion_slices[name]["images"] for name in names)
        kept_cracks = cracks - sum(champion_slices[name]["cracks"] for name in names)
        if names and kept_images >= policy.min_slice_images and kept_cracks > 0:
            below[metric] = names
    notes = [
        f"the champion is below the overall {' and '.join(metrics)} floor on slice {name}, but {reason}"
        for (name, reason), metrics in sorted(not_new.items())
    ]
    return below, notes


def _not_new_because(
    name: str, champion_trained_on: Collection[str] | None, candidate_trained_on: Collection[str] | None
) -> str | None:
    """Why a slice the champion is below a floor on is not a new surface; None if it is one."""
    if champion_trained_on is None or candidate_trained_on is None:
        return (
            "the training slices of the champion or the candidate are unknown (a data manifest without a slice "
            "column), so no slice counts as a new surface and the overall floors read the whole holdout"
        )
    if name in champion_trained_on:
        return "it trained there, so the overall floor reads that slice too"
    if name not in candidate_trained_on:
        return (
            "the candidate did not train there either, so the overall floor reads that slice too (if the "
            "candidate should have, check that the holdout's slice folders are named as the labeled pool's)"
        )
    return None


def floor_outcomes(evaluation: Evaluation, holdout: Holdout, left_out: Sequence[str] = ()) -> Outcomes:
    """The outcomes an overall floor reads: the holdout without the ``left_out`` slices (``new_surfaces``)."""
    return evaluation.outcomes.subset(~np.isin(np.array(holdout.slices), list(left_out)))


def scoped_floor_values(
    evaluation: Evaluation, holdout: Holdout, new: Mapping[str, Sequence[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The metrics the overall floors read, each without its new surfaces, and what each left out."""
    values, scopes = dict(evaluation.metrics), {}
    for metric, left_out in new.items():
        values[metric] = point_figures(floor_outcomes(evaluation, holdout, left_out))[metric]
        scopes[metric] = f" (without slice {', '.join(left_out)}: new to the champion, which is below this floor there)"
    return values, scopes
