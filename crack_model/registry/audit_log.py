"""The audit log of a model's aliases: who moved champion or challenger, when, from where to where, why.

The log lives inside the aliases document it describes (``models/<name>/aliases.json``), so
one conditional write changes both: they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from crack_model.core.documents import FORMAT_VERSION
from crack_model.core.errors import CrackModelError

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIAS_NAMES = (CHAMPION, CHALLENGER)


def validate_alias(alias: str) -> str:
    if alias not in ALIAS_NAMES:
        raise CrackModelError(f"unknown alias {alias!r}: use one of {', '.join(ALIAS_NAMES)}")
    return alias


@dataclass(frozen=True)
class AuditEntry:
    """One change of an alias: who moved it, in which run, when, from where to where, and why."""

    revision: int
    event: str  # "promote" or "rollback"
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    run_id: str | None
    reason: str
    at: str
    gate_decision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["from"] = values.pop("from_version")
        values["to"] = values.pop("to_version")
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AuditEntry:
        return cls(
            revision=int(values["revision"]),
            event=str(values["event"]),
            alias=str(values["alias"]),
            from_version=values.get("from"),
            to_version=str(values["to"]),
            actor=str(values.get("actor", "")),
            run_id=values.get("run_id"),
            reason=str(values.get("reason", "")),
            at=str(values.get("at", "")),
            gate_decision=values.get("gate_decision"),
        )


@dataclass(frozen=True)
class AliasState:
    """The aliases document as read, with the ETag a conditional write must match."""

    name: str
    aliases: dict[str, str | None]
    history: list[AuditEntry]
    revision: int
    etag: str | None

    def get(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def as_document(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "revision": self.revision,
            "aliases": {alias: self.aliases.get(alias) for alias in ALIAS_NAMES},
            "updated_at": self.history[-1].at if self.history else None,
            "history": [entry.as_dict() for entry in self.history],
        }


def check_history(state: AliasState) -> list[str]:
    """Problems that would make the audit log disagree with the aliases (empty when consistent)."""
    problems = []
    current: dict[str, str | None] = {}
    for number, entry in enumerate(state.history, start=1):
        if entry.revision != number:
            problems.append(f"history entry {number} has revision {entry.revision}")
        if entry.from_version != current.get(entry.alias):
            problems.append(
                f"revision {entry.revision} moves {entry.alias} from {entry.from_version}, "
                f"but it pointed at {current.get(entry.alias)}"
            )
        current[entry.alias] = entry.to_version
    if state.revision != len(state.history):
        problems.append(f"revision {state.revision} but {len(state.history)} history entries")
    for alias in ALIAS_NAMES:
        if state.aliases.get(alias) != current.get(alias):
            problems.append(f"{alias} is {state.aliases.get(alias)} but the history ends at {current.get(alias)}")
    return problems


def champion_lineage(history: Sequence[AuditEntry], alias: str = CHAMPION) -> list[str]:
    """The stack of versions that served as ``alias``: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for entry in history:
        if entry.alias != alias:
            continue
        if entry.event == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != entry.to_version:
                stack.append(entry.to_version)
        elif not stack or stack[-1] != entry.to_version:
            stack.append(entry.to_version)
    return stack
