"""The gate's checks: policy floors (overall and per slice), no regression against the champion, runtime agreement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.evaluation.gate_scope import floor_outcomes, scoped_floor_values
from crack_model.evaluation.holdout import Evaluation, Holdout
from crack_model.evaluation.intervals import (
    BOOTSTRAP_METRICS,
    exact_intervals,
    intervals,
    paired_difference_intervals,
    point_figures,
    within_noise,
)
from crack_model.evaluation.policy import ALL_SLICES, GatePolicy

log = module_logger(__name__)

PROMOTE = "promote"
REJECT = "reject"
REFERENCE_RUNTIME = "keras"
HOLDOUT_PREFIX = "holdout"
REPORTED_METRICS = (*BOOTSTRAP_METRICS, "roc_auc", "pr_auc")


@dataclass(frozen=True)
class Check:
    """One named test of the policy; ``status`` is pass, fail or skipped (with the reason)."""

    name: str
    status: str
    message: str
    value: float | None = None
    limit: float | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "value": self.value,
            "limit": self.limit,
        }


def floor_checks(
    values: Mapping[str, Any], floors: Mapping[str, float], prefix: str, scopes: Mapping[str, str] | None = None
) -> list[Check]:
    """``<prefix>:<metric>`` passes when the metric reaches its floor; an undefined metric fails.

    ``scopes`` says, per metric, which part of the holdout the value was measured on when it is not all of it.
    """
    checks = []
    for metric, floor in floors.items():
        value = values.get(metric)
        name = f"{prefix}:{metric}"
        scope = (scopes or {}).get(metric, "")
        if value is None:
            checks.append(Check(name, "fail", f"{metric} is undefined on this holdout{scope} (floor {floor})",
                                None, floor))  # fmt: skip
        elif value >= floor:
            checks.append(Check(name, "pass", f"{metric} {value:.4f} >= floor {floor}{scope}", value, floor))
        else:
            checks.append(Check(name, "fail", f"{metric} {value:.4f} < floor {floor}{scope}", value, floor))
    return checks


def slice_floor_checks(slices: Mapping[str, Mapping[str, Any]], policy: GatePolicy, prefix: str) -> list[Check]:
    """Per-slice floors; slices below ``min_slice_images`` and undefined metrics are skipped, with why."""
    checks = []
    for slice_name, report in slices.items():
        floors = policy.floors_for_slice(slice_name)
        for metric, floor in floors.items():
            name = f"{prefix}:{slice_name}:{metric}"
            value = report["metrics"].get(metric)
            if report["images"] < policy.min_slice_images:
                message = f"{report['images']} images < min_slice_images {policy.min_slice_images}: not gated"
                checks.append(Check(name, "skipped", message, value, floor))
            elif value is None:
                checks.append(Check(name, "skipped", f"{metric} undefined on slice {slice_name}", None, floor))
            elif value >= floor:
                checks.append(Check(name, "pass", f"slice {slice_name}: {metric} {value:.4f} >= {floor}", value, floor))
            else:
                checks.append(Check(name, "fail", f"slice {slice_name}: {metric} {value:.4f} < {floor}", value, floor))
    return checks


def refuse_other_classes(candidate: Mapping[str, Any], champion: Mapping[str, Any]) -> None:
    """Before any scoring: a champion with other class names (or another crack class) cannot be graded on the
    holdout's class folders, which are the candidate's, nor compared with the candidate."""
    ours, theirs = candidate["card"], champion["card"]
    if (sorted(ours["class_names"]), ours.get("crack_class")) != (
        sorted(theirs["class_names"]),
        theirs.get("crack_class"),
    ):
        raise CrackModelError(
            f"candidate {candidate['version']} has classes {ours['class_names']} (crack: {ours.get('crack_class')}), "
            f"champion {champion['version']} {theirs['class_names']} (crack: {theirs.get('crack_class')}): the gate "
            "compares models with the same classes; promote the first of the new classes by hand (registry promote "
            "--force), after checking it on its holdout"
        )


def unknown_slice_checks(slices: Mapping[str, Any], policy: GatePolicy) -> list[Check]:
    """``slice_floor:<name>`` fails for a slice the policy names and the holdout lacks: a misspelled name (site_b for
    site-b) would otherwise gate nothing, in silence."""
    missing = sorted(set(policy.slice_floors) - set(slices) - {ALL_SLICES})
    have = ", ".join(sorted(slices)) or "none"
    return [Check(f"slice_floor:{name}", "fail", f"the policy sets floors for slice {name!r}, which the holdout does "
                  f"not have (its slices: {have}): correct the name, or add that slice's images", None, None)
            for name in missing]  # fmt: skip


def regression_checks(candidate: Mapping[str, Any], champion: Mapping[str, Any], policy: GatePolicy) -> list[Check]:
    """``no_regression:<metric>``: the candidate may trail the champion by at most the policy's drop."""
    checks = []
    for metric, max_drop in policy.max_drop.items():
        new, old = candidate.get(metric), champion.get(metric)
        name = f"no_regression:{metric}"
        if new is None or old is None:
            checks.append(Check(name, "fail", f"{metric} undefined (candidate {new}, champion {old})", None, max_drop))
            continue
        difference = new - old
        message = f"{metric} {new:.4f} vs champion {old:.4f} (difference {difference:+.4f}, allowed drop {max_drop})"
        # A tiny tolerance: equal metrics must not fail on floating-point noise.
        checks.append(Check(name, "pass" if difference >= -max_drop - 1e-12 else "fail", message, difference, max_drop))
    return checks


def slice_regression_checks(
    candidate_slices: Mapping[str, Mapping[str, Any]],
    champion_slices: Mapping[str, Mapping[str, Any]],
    policy: GatePolicy,
) -> list[Check]:
    """``slice_no_regression:<slice>:<metric>``: on each slice, at most the policy's drop below the champion.

    Slices below ``min_slice_images`` are skipped (with why): a few images cannot tell two models
    apart. A slice the champion was not measured on has nothing to regress from.
    """
    checks = []
    for slice_name, report in candidate_slices.items():
        previous = champion_slices.get(slice_name)
        for metric, max_drop in policy.slice_max_drop.items():
            name = f"slice_no_regression:{slice_name}:{metric}"
            new = report["metrics"].get(metric)
            old = None if previous is None else previous["metrics"].get(metric)
            if report["images"] < policy.min_slice_images:
                message = f"{report['images']} images < min_slice_images {policy.min_slice_images}: not gated"
                checks.append(Check(name, "skipped", message, None, max_drop))
            elif new is None or old is None:
                checks.append(Check(name, "skipped", f"{metric} undefined (candidate {new}, champion {old})", None,
                                    max_drop))  # fmt: skip
            else:
                difference = new - old
                message = (
                    f"slice {slice_name}: {metric} {new:.4f} vs champion {old:.4f} "
                    f"(difference {difference:+.4f}, allowed drop {max_drop})"
                )
                status = "pass" if difference >= -max_drop - 1e-12 else "fail"
                checks.append(Check(name, status, message, difference, max_drop))
    return checks


def slice_reports(evaluation: Evaluation, holdout: Holdout, policy: GatePolicy) -> dict[str, dict[str, Any]]:
    names = np.array(holdout.slices)
    reports = {}
    for slice_name in sorted(set(holdout.slices)):
        mask = names == slice_name
        outcomes = evaluation.outcomes.subset(mask)
        reports[slice_name] = {
            "images": int(mask.sum()),
            "cracks": int(outcomes.is_crack.sum()),
            "metrics": point_figures(outcomes),
            "intervals": intervals(
                outcomes, resamples=policy.bootstrap_resamples, confidence=policy.confidence, seed=policy.seed
            ),
        }
    return reports


def model_section(evaluation: Evaluation, policy: GatePolicy) -> dict[str, Any]:
    metrics = {
        key: evaluation.metrics.get(key)
        for key in (*REPORTED_METRICS, "threshold", "images", "cracks", "missed_cracks", "false_alarms")
    }
    return {
        "version": evaluation.version,
        "runtime": evaluation.runtime,
        "metrics": metrics,
        "intervals": intervals(
            evaluation.outcomes, resamples=policy.bootstrap_resamples, confidence=policy.confidence, seed=policy.seed
        ),
        "exact_intervals": exact_intervals(evaluation.outcomes, confidence=policy.confidence),
        "confusion_matrix": evaluation.metrics["confusion_matrix"],
    }


def comparison_section(candidate: Evaluation, champion: Evaluation, policy: GatePolicy) -> dict[str, Any]:
    differences = paired_difference_intervals(
        candidate.outcomes,
        champion.outcomes,
        resamples=policy.bootstrap_resamples,
        confidence=policy.confidence,
        seed=policy.seed,
    )
    comparison = {}
    for metric in REPORTED_METRICS:
        new, old = candidate.metrics.get(metric), champion.metrics.get(metric)
        interval = differences.get(metric)
        comparison[metric] = {
            "candidate": new,
            "champion": old,
            "difference": None if new is None or old is None else round(new - old, 6),
            "interval": interval,
            "within_noise": within_noise(interval),
            "max_drop": policy.max_drop.get(metric),
        }
    return comparison


def overall_floor_checks(
    candidate: Evaluation, holdout: Holdout, policy: GatePolicy, new: Mapping[str, Sequence[str]]
) -> tuple[list[Check], list[str]]:
    """``floor:<metric>`` checks, each read without its ``new`` surfaces, and notes on what they leave unshown."""
    checks, notes = [], []
    if not policy.floors:
        message = "the policy sets no floors: the gate refuses to pass a model without absolute floors"
        checks.append(Check("policy:floors", "fail", message))
    checks += holdout_size_checks(holdout, policy)
    values, scopes = scoped_floor_values(candidate, holdout, new)
    checks += floor_checks(values, policy.floors, "floor", scopes)
    for metric, left_out in new.items():
        notes.append(
            f"{metric}: the candidate trained on slice {', '.join(left_out)} and the champion did not and is below "
            f"the floor {policy.floors[metric]} there, a surface it does not serve yet; there the candidate is held to "
            "the slice floors and to no regression, and the overall floor is measured on the other slices"
        )
    for metric, floor in policy.floors.items():
        outcomes = floor_outcomes(candidate, holdout, new.get(metric, ()))
        value, interval = values.get(metric), exact_intervals(outcomes, confidence=policy.confidence).get(metric)
        if value is not None and interval and value >= floor > interval[0]:
            notes.append(
                f"{metric} {value:.4f} passes its floor {floor} on this holdout{scopes.get(metric, '')}, but that "
                f"is too few images to show it with {policy.confidence:.0%} confidence (exact interval from "
                f"{interval[0]:.4f}): add holdout images"
            )
    return checks, notes


def holdout_size_checks(holdout: Holdout, policy: GatePolicy) -> list[Check]:
    """``holdout_size:<class>``: a class with fewer images than ``min_holdout_images`` cannot show any floor."""
    if policy.min_holdout_images <= 1:
        return []
    needed = policy.min_holdout_images
    checks = []
    for name, count in sorted(Counter(image.label for image in holdout.images).items()):
        message = f"{count} holdout images of class {name}"
        if count < needed:
            message += f", fewer than the {needed} the policy asks for: no floor shows on so few; add {name} images"
        checks.append(Check(f"holdout_size:{name}", "pass" if count >= needed else "fail", message, count, needed))
    return checks


def judge_runtime(
    evaluation: Evaluation,
    reference: Evaluation,
    holdout: Holdout,
    policy: GatePolicy,
    new: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Floors (overall, less ``new`` surfaces, and per slice) and agreement with Keras: approved if all pass."""
    agreement = float(np.mean(evaluation.outcomes.says_crack == reference.outcomes.says_crack))
    largest_gap = float(np.max(np.abs(evaluation.crack_probability - reference.crack_probability)))
    values, scopes = scoped_floor_values(evaluation, holdout, new or {})
    checks = floor_checks(values, policy.floors, f"runtime:{evaluation.runtime}:floor", scopes)
    checks += slice_floor_checks(
        slice_reports(evaluation, holdout, policy), policy, f"runtime:{evaluation.runtime}:slice_floor"
    )
    limit = policy.min_runtime_agreement
    relation = ">=" if agreement >= limit else "<"
    checks.append(
        Check(
            f"runtime:{evaluation.runtime}:agreement",
            "pass" if agreement >= limit else "fail",
            f"labels agree with {REFERENCE_RUNTIME} on {agreement:.4f} of the holdout {relation} {limit}",
            agreement,
            limit,
        )
    )
    if not policy.floors:
        checks.append(Check(f"runtime:{evaluation.runtime}:policy", "fail", "the policy sets no floors"))
    return {
        "runtime": evaluation.runtime,
        "approved": not any(check.failed for check in checks),
        "label_agreement": round(agreement, 6),
        "max_probability_difference": round(largest_gap, 6),
        "metrics": {key: evaluation.metrics.get(key) for key in REPORTED_METRICS},
        "checks": [check.as_dict() for check in checks],
        "failed_checks": [check.name for check in checks if check.failed],
    }


def unloadable_runtime(runtime: str, error: str) -> dict[str, Any]:
    """The runtime section of an export that could not score the holdout: not approved, and why."""
    name = f"runtime:{runtime}:load"
    return {
        "runtime": runtime,
        "approved": False,
        "label_agreement": None,
        "max_probability_difference": None,
        "metrics": {},
        "checks": [Check(name, "fail", error).as_dict()],
        "failed_checks": [name],
    }


def misclassified_section(holdout: Holdout, candidate: Evaluation, champion: Evaluation | None) -> list[dict[str, Any]]:
    """The holdout images the candidate labels wrongly: new errors (the champion was right) first, then the surest.

    Which images a candidate gets wrong says more than how many: a mislabeled holdout image, a
    stain the new site's photos taught it to call a crack, a crack the champion found.
    """
    rows = []
    for index in np.flatnonzero(~candidate.outcomes.correct):
        row: dict[str, Any] = {
            "key": holdout.keys[index],
            "slice": holdout.slices[index],
            "label": holdout.images[index].label,
            "candidate_crack_probability": round(float(candidate.crack_probability[index]), 4),
        }
        if champion is not None:
            row["champion_crack_probability"] = round(float(champion.crack_probability[index]), 4)
            row["new"] = bool(champion.outcomes.correct[index])
        rows.append(row)
    return sorted(rows, key=lambda row: (not row.get("new", False),
                                         -abs(row["candidate_crack_probability"] - candidate.threshold)))  # fmt: skip


def add_checks(body: dict[str, Any], checks: Sequence[Check]) -> None:
    """Add checks made after ``decide`` (they need the runtimes it approved) to its verdict."""
    body["checks"] += [check.as_dict() for check in checks]
    failed = [check for check in checks if check.failed]
    body["failed_checks"] += [check.name for check in failed]
    body["reasons"] += [check.message for check in failed]
    if body["failed_checks"]:
        body["decision"] = REJECT
