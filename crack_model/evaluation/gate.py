"""The promotion gate: may a registered candidate replace the champion?

The candidate and the current champion are loaded with ``load_scorer`` and scored on the
same holdout by the scoring core that serves them, with the metric code of
``assess.evaluate_scorer`` (see holdout.py): the candidate with Keras, the champion with the
runtime it serves with. The candidate must reach the policy's absolute
floors (overall and per slice) and must not fall below the champion by more than the policy
allows; with no champion, only the floors apply. An overall floor is measured without the new
surfaces (``gate_scope.new_surfaces``): slices the candidate trained on and the champion did not (by
their data manifests), on which the champion is below that floor. There the slice floors and no
regression apply, so a holdout's mix of surfaces does not decide. Each exported runtime (LiteRT
fp32, int8) is approved only if it reaches the same floors and gives the Keras label on at least
``min_runtime_agreement`` of the holdout. Every metric gets a bootstrap interval, and the
candidate-minus-champion difference a paired bootstrap interval, flagged "within noise" when
it includes 0. A holdout that shares an image with the candidate's training data is refused (holdout_checks.py).
The report also gives photo-level figures on mosaics of holdout patches (gate_photo.py), scored
with the runtime the candidate will serve; the policy's ``photo_floors`` gate on them.

The report (JSON and HTML) is stored with the candidate version, write-once; with
``promote=True`` a passing candidate becomes champion by compare-and-swap against the
champion it was compared with, so a champion that moved meanwhile is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crack_model import __version__
from crack_model.core.clock import utc_now
from crack_model.core.documents import FORMAT_VERSION, check_format_version
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import RUNTIME_FILES, RUNTIME_PREFERENCE
from crack_model.evaluation.gate_checks import (
    HOLDOUT_PREFIX,
    PROMOTE,
    REFERENCE_RUNTIME,
    REJECT,
    Check,
    add_checks,
    comparison_section,
    judge_runtime,
    misclassified_section,
    model_section,
    overall_floor_checks,
    refuse_other_classes,
    regression_checks,
    slice_floor_checks,
    slice_regression_checks,
    slice_reports,
    unknown_slice_checks,
    unloadable_runtime,
)
from crack_model.evaluation.gate_photo import photo_floor_checks, photo_level_note, photo_level_section
from crack_model.evaluation.gate_report import render_gate_html
from crack_model.evaluation.gate_scope import new_surfaces, trained_surfaces
from crack_model.evaluation.holdout import Evaluation, Holdout, evaluate_on_holdout
from crack_model.evaluation.holdout_checks import holdout_for_gate
from crack_model.evaluation.policy import GatePolicy, load_policy
from crack_model.registry.audit_log import CHAMPION
from crack_model.registry.naming import GATE_HTML, GATE_REPORT, GateReportExistsError, default_actor
from crack_model.registry.versions import Registry
from crack_model.serving.scorer import load_scorer

log = module_logger(__name__)


def decide(
    policy: GatePolicy,
    holdout: Holdout,
    candidate: Evaluation,
    champion: Evaluation | None,
    runtime_evaluations: Sequence[Evaluation],
    runtime_errors: Mapping[str, str] | None = None,
    champion_trained_on: Collection[str] | None = None,
    candidate_trained_on: Collection[str] | None = None,
) -> dict[str, Any]:
    """The gate's verdict and everything behind it, as a JSON-ready report body.

    ``*_trained_on`` are the slices of each model's training data (None: unknown); a new surface is one
    the candidate trained on and the champion did not (``gate_scope.new_surfaces``).
    """
    slices = slice_reports(candidate, holdout, policy)
    champion_slices = slice_reports(champion, holdout, policy) if champion is not None else {}
    new, surface_notes = new_surfaces(champion_slices, policy, champion_trained_on, candidate_trained_on)
    checks, notes = overall_floor_checks(candidate, holdout, policy, new)
    notes += surface_notes
    checks += slice_floor_checks(slices, policy, "slice_floor") + unknown_slice_checks(slices, policy)
    comparison = None
    if champion is None:
        notes.append("no champion: only the absolute floors apply (no regression check, no paired comparison)")
    else:
        checks += regression_checks(candidate.metrics, champion.metrics, policy)
        checks += slice_regression_checks(slices, champion_slices, policy)
        comparison = comparison_section(candidate, champion, policy)
        noisy = [metric for metric, row in comparison.items() if row["within_noise"]]
        if noisy:
            notes.append(f"candidate and champion differ within bootstrap noise on: {', '.join(noisy)}")

    runtimes = [judge_runtime(candidate, candidate, holdout, policy, new)]
    runtimes += [judge_runtime(evaluation, candidate, holdout, policy, new) for evaluation in runtime_evaluations]
    runtimes += [unloadable_runtime(broken, error) for broken, error in (runtime_errors or {}).items()]
    by_name = {runtime["runtime"]: runtime for runtime in runtimes}
    approved = [name for name in RUNTIME_PREFERENCE if by_name.get(name, {}).get("approved")]
    if not approved:
        checks.append(Check("runtimes:approved", "fail", "no runtime passed its checks"))
    for runtime in runtimes:
        if not runtime["approved"] and runtime["runtime"] != REFERENCE_RUNTIME:
            notes.append(f"runtime {runtime['runtime']} not approved: {', '.join(runtime['failed_checks'])}")

    failed = [check for check in checks if check.failed]
    return {
        "decision": REJECT if failed else PROMOTE,
        "failed_checks": [check.name for check in failed],
        "reasons": [check.message for check in failed],
        "checks": [check.as_dict() for check in checks],
        "notes": notes,
        "candidate": model_section(candidate, policy),
        "champion": model_section(champion, policy) if champion is not None else None,
        "comparison": comparison,
        "slices": slices,
        "new_surfaces": new,
        "training_slices": {
            "champion": sorted(champion_trained_on) if champion_trained_on is not None else None,
            "candidate": sorted(candidate_trained_on) if candidate_trained_on is not None else None,
        },
        "misclassified": misclassified_section(holdout, candidate, champion),
        "runtimes": runtimes,
        "approved_runtimes": approved,
    }


@dataclass
class GateReport:
    """The gate's decision on one candidate; ``document`` is the stored JSON report."""

    name: str
    candidate_version: str
    champion_version: str | None
    decision: str
    failed_checks: list[str]
    reasons: list[str]
    approved_runtimes: list[str]
    notes: list[str]
    document: dict[str, Any] = field(repr=False)
    report_url: str | None = None
    html_url: str | None = None
    promoted: bool = False
    promotion_error: str | None = None
    reused: bool = False  # the stored report of an earlier run (e.g. a retried task), not a new evaluation

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> GateReport:
        check_format_version(document, "gate report")
        return cls(
            name=document["name"],
            candidate_version=document["candidate_version"],
            champion_version=document["champion_version"],
            decision=document["decision"],
            failed_checks=list(document["failed_checks"]),
            reasons=list(document["reasons"]),
            approved_runtimes=list(document["approved_runtimes"]),
            notes=list(document["notes"]),
            document=dict(document),
        )

    @property
    def passed(self) -> bool:
        return self.decision == PROMOTE

    def summary(self) -> dict[str, Any]:
        """A small JSON-ready dict (for XCom, notifications, logs)."""
        return {
            "name": self.name,
            "candidate_version": self.candidate_version,
            "champion_version": self.champion_version,
            "decision": self.decision,
            "failed_checks": self.failed_checks,
            "approved_runtimes": self.approved_runtimes,
            "report_url": self.report_url,
            "html_url": self.html_url,
            "promoted": self.promoted,
            "promotion_error": self.promotion_error,
            "reused": self.reused,
        }


def run_gate(
    registry: str | Registry,
    name: str,
    candidate_version: str,
    holdout: str | None = None,
    policy: GatePolicy | str | None = None,
    *,
    promote: bool = False,
    actor: str | None = None,
    run_id: str | None = None,
    on_decision: Callable[[GateReport], None] | None = None,
) -> GateReport:
    """Gate a registered candidate against the champion on a holdout; store the report; maybe promote.

    Gate reports are write-once. If the candidate already has one made against the current
    champion, with the same policy and the same holdout listing (a retried task), that report
    is returned (``reused``) and, with ``promote``, the promotion is completed; if any of those
    changed, GateReportExistsError says so. A page or runtime list that a crash kept from being
    written next to a stored report is written from it first.

    The holdout must not share an image (same bytes, or same location) with the candidate's
    training data (its ``data_manifest.csv``): the gate refuses such a holdout before it scores or
    reuses anything.

    Args:
        registry: the registry store URI (``s3://bucket`` or a folder) or an open Registry.
        holdout: a folder or store prefix with ``<class>/[<slice>/]<image>``; default ``<registry>/holdout``.
        policy: a GatePolicy, a policy JSON path, or None for the packaged policy.
        promote: move the champion to the candidate when the decision is promote (compare-and-swap
            against the champion evaluated here).
        on_decision: called with the report once it is stored (and the promotion attempted).

    Raises:
        GateReportExistsError: the candidate was gated before against another champion, policy or holdout.
        CrackModelError: the holdout holds some of the candidate's training images (or is unusable).
        PromotionConflictError: the champion moved during the gate (after the report is stored).
    """
    opened = registry if isinstance(registry, Registry) else Registry(registry)
    policy = policy if isinstance(policy, GatePolicy) else load_policy(policy)
    actor = actor or default_actor()
    version_document = opened.read_version(name, candidate_version)
    opened.restore_gate_files(name, candidate_version, render_gate_html)  # an earlier run died after the JSON
    class_names = version_document["card"]["class_names"]
    # Before a stored report is reused too: a report made on training images must not promote.
    candidate_manifest = opened.data_manifest(name, candidate_version)
    champion_version = opened.aliases(name).get(CHAMPION)
    champion_manifest = (opened.data_manifest(name, champion_version)
                         if champion_version not in (None, candidate_version) else None)  # fmt: skip
    holdout_set, unchecked = holdout_for_gate(holdout or opened.store.url(HOLDOUT_PREFIX), class_names,
                                              candidate_manifest, f"{name} version {candidate_version}",
                                              champion_manifest, f"the champion ({champion_version})")  # fmt: skip
    existing = opened.gate_report(name, candidate_version)
    if existing is not None:
        report = _stored_report(opened, existing, champion_version, policy, holdout_set)
    elif champion_version == candidate_version:
        raise CrackModelError(f"{name} version {candidate_version} is already the champion: nothing to gate")
    else:
        notes = [note for note in (unchecked, *holdout_set.notes()) if note]
        report = _evaluate(opened, name, version_document, holdout_set, champion_version, policy, actor, run_id, notes,
                           candidate_manifest)  # fmt: skip
    report.html_url = opened.version_url(name, candidate_version, GATE_HTML)
    report.report_url = opened.version_url(name, candidate_version, GATE_REPORT)
    failed = f" ({', '.join(report.failed_checks)})" if report.failed_checks else ""
    log.info("gate for %s %s: %s%s", name, candidate_version, report.decision, failed)

    try:
        if promote and report.passed:
            reason = f"passed gate policy {policy.policy_version} against champion {report.champion_version}"
            opened.promote(
                name,
                candidate_version,
                CHAMPION,
                expected_current=report.champion_version,
                actor=actor,
                reason=reason,
                run_id=run_id,
                unless_dethroned=report.reused,  # an earlier run's report: not for a version since rolled back
            )
            report.promoted = True
    except CrackModelError as error:
        report.promotion_error = str(error)
        raise
    finally:
        if on_decision is not None:
            try:
                on_decision(report)
            except Exception:  # a failed notification must not undo or hide the decision
                log.exception("the gate's on_decision hook failed for %s %s", name, candidate_version)
    return report


def _stored_report(
    registry: Registry,
    existing: Mapping[str, Any],
    champion_version: str | None,
    policy: GatePolicy,
    holdout: Holdout,
) -> GateReport:
    """The earlier report of this candidate, if it still answers today's question."""
    changed = []
    candidate = existing["candidate_version"]
    if champion_version not in (existing.get("champion_version"), candidate):
        changed.append(
            f"the champion is {champion_version} now, the report compared against {existing['champion_version']}"
        )
    if existing.get("policy", {}).get("digest") != policy.digest:
        changed.append(f"the policy differs (report: {existing.get('policy', {}).get('policy_version')})")
    if existing.get("holdout", {}).get("listing_digest") != holdout.digest:
        changed.append("the holdout differs")
    if changed:
        url = registry.version_url(existing["name"], candidate, GATE_HTML)
        msg = (
            f"{existing['name']} version {candidate} was gated before ({url}) and {'; '.join(changed)}; "
            "gate reports are write-once: register a new version to gate it again"
        )
        raise GateReportExistsError(msg)
    log.info("%s %s was gated before with the same champion, policy and holdout: reusing that report",
             existing["name"], candidate)  # fmt: skip
    report = GateReport.from_document(existing)
    report.reused = True
    return report


def _evaluate(
    opened: Registry,
    name: str,
    version_document: Mapping[str, Any],
    holdout_set: Holdout,
    champion_version: str | None,
    policy: GatePolicy,
    actor: str,
    run_id: str | None,
    notes: Sequence[str] = (),
    candidate_manifest: Sequence[Mapping[str, str]] | None = None,
) -> GateReport:
    """Score the candidate (every runtime) and the champion, decide, and store the report (with ``notes`` added)."""
    started = utc_now()
    if champion_version is not None:
        refuse_other_classes(version_document, opened.read_version(name, champion_version))
    candidate_version = version_document["version"]
    candidate_uri = f"models:/{name}/{candidate_version}"
    reference_scorer = load_scorer(candidate_uri, runtime=REFERENCE_RUNTIME, registry=opened.uri)
    log.info("gating %s %s on %d holdout images (%s)", name, candidate_version, len(holdout_set.images),
             holdout_set.uri)  # fmt: skip
    candidate = evaluate_on_holdout(reference_scorer, holdout_set)
    del reference_scorer  # free the Keras model before loading the next runtime

    exported = [
        runtime
        for runtime in RUNTIME_PREFERENCE
        if runtime != REFERENCE_RUNTIME and RUNTIME_FILES[runtime] in version_document.get("files", {})
    ]
    runtime_evaluations, runtime_errors = [], {}
    for runtime in exported:
        try:
            scorer = load_scorer(candidate_uri, runtime=runtime, registry=opened.uri)
            runtime_evaluations.append(evaluate_on_holdout(scorer, holdout_set))
        except Exception as error:  # a broken export is a rejected runtime, not a failed gate
            log.warning("runtime %s of %s cannot score: %s", runtime, candidate_version, error)
            runtime_errors[runtime] = f"{runtime} could not score the holdout: {type(error).__name__}: {error}"

    champion, champion_manifest = None, None
    if champion_version is not None:
        try:
            champion_scorer = load_scorer(f"models:/{name}/{champion_version}", registry=opened.uri)
        except CrackModelError as error:  # no candidate can pass until someone acts: say what they can do
            raise CrackModelError(
                f"the champion {name} {champion_version}, which the candidate must be compared with, cannot be "
                f"loaded ({error}): restore its files from a backup, or roll the champion back "
                "(crack_champion_rollback)"
            ) from None
        champion = evaluate_on_holdout(champion_scorer, holdout_set)
        champion_manifest = opened.data_manifest(name, champion_version)
    champion_trained_on, candidate_trained_on = trained_surfaces(champion_manifest, candidate_manifest)

    body = decide(policy, holdout_set, candidate, champion, runtime_evaluations, runtime_errors, champion_trained_on,
                  candidate_trained_on)  # fmt: skip
    body["photo_level"] = photo_level_section(opened.uri, name, candidate_version, champion_version, holdout_set,
                                              body["approved_runtimes"],
                                              photos=candidate.photo_keys(holdout_set))  # fmt: skip
    holdout_set.raise_if_changed()  # also one a runtime's or a mosaic's failure took in: no report on it
    add_checks(body, photo_floor_checks(body["photo_level"], policy))
    photo_note = photo_level_note(body["photo_level"])
    body["notes"] = [*notes, *body["notes"], *([photo_note] if photo_note else [])]
    document = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "candidate_version": candidate_version,
        "champion_version": champion_version,
        **{key: body.pop(key) for key in ("decision", "failed_checks", "reasons", "approved_runtimes", "notes")},
        "registry": opened.uri,
        "holdout": holdout_set.summary(),
        "policy": {**policy.as_dict(), "digest": policy.digest},
        "started_at": started,
        "finished_at": utc_now(),
        "gated_by": actor,
        "run_id": run_id,
        "library_version": __version__,
        **body,
    }

    opened.add_gate_result(
        name,
        candidate_version,
        report=document,
        html=render_gate_html(document),
        approved_runtimes=document["approved_runtimes"],
    )
    return GateReport.from_document(document)
