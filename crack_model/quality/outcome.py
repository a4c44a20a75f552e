"""What validation decided about a batch: the three outcomes and ``ValidationOutcome``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from crack_model.core.clock import utc_now
from crack_model.core.documents import FORMAT_VERSION
from crack_model.core.object_keys import shown_key
from crack_model.quality import drift

PASSED = "passed"
PASSED_WITH_QUARANTINE = "passed_with_quarantine"
FAILED = "failed"
OUTCOME_OFFENDERS = 100  # offending objects listed per expectation in outcome.json, which stays small


@dataclass
class ValidationOutcome:
    """What validation decided about a batch, and where its files are."""

    batch_id: str
    suite: str
    outcome: str
    reasons: list[str]
    quarantined: list[dict[str, Any]]
    counts: dict[str, int]
    checks: list[dict[str, Any]]
    drift: dict[str, Any] | None
    thresholds: dict[str, Any]
    source: str = ""
    holdout_checked: bool = False
    files: dict[str, str] = field(default_factory=dict)
    validated_at: str = field(default_factory=utc_now)
    # GX Data Docs of this run: {"index": store key of index.html or None, "pages", "error"} (see data_docs).
    data_docs: dict[str, Any] = field(default_factory=dict)
    # The training suite: files inside class folders that are not part of the pool (hidden, not named as
    # images); the incoming suite: uploads gone when read (``missing`` when scored). Key -> why. Not checked,
    # not trained or scored on, and named here rather than lost in silence.
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when the batch may be scored (possibly without its quarantined objects)."""
        return self.outcome != FAILED

    @property
    def quarantined_keys(self) -> set[str]:
        return {item["key"] for item in self.quarantined}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; each check lists at most ``OUTCOME_OFFENDERS`` offenders (result.json has them all)."""
        data = {"format_version": FORMAT_VERSION, **dataclasses.asdict(self), "passed": self.passed}
        for check in data["checks"]:
            check["offenders_total"] = len(check["offenders"])
            check["offenders"] = check["offenders"][:OUTCOME_OFFENDERS]
        return data

    def summary(self) -> str:
        """A few lines for the CLI and task logs."""
        counts = self.counts
        lines = [
            f"batch {self.batch_id}: {self.outcome} ({self.suite} suite; {counts.get('objects', 0)} objects, "
            f"{counts.get('quarantined', 0)} quarantined, {counts.get('failed_expectations', 0)} of "
            f"{counts.get('evaluated_expectations', 0)} expectations failed)"
        ]
        # Reasons quote uploads' names as the store gave them (a link's "<key> is a symbolic link"): escaped like
        # the keys, or a name holding a line break or an escape sequence forges lines in the terminal and task log.
        lines += [f"  reason: {shown_key(reason)}" for reason in self.reasons]
        lines += [
            f"  quarantined {shown_key(item['key'])}: {shown_key('; '.join(item['reasons']))}"
            for item in self.quarantined[:20]
        ]
        if len(self.quarantined) > 20:
            lines.append(f"  ... and {len(self.quarantined) - 20} more quarantined (see quarantine.json)")
        lines += [f"  left out {shown_key(key)}: {shown_key(why)}" for key, why in sorted(self.left_out.items())[:20]]
        if len(self.left_out) > 20:
            lines.append(f"  ... and {len(self.left_out) - 20} more left out (see outcome.json)")
        if self.drift is not None:
            lines.append(f"  {drift.describe(self.drift)}")
        lines += [f"  {name}: {uri}" for name, uri in self.files.items()]
        return "\n".join(lines)
