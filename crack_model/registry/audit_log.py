"""The audit log of a model's aliases: who moved champion or challenger, when, from where to where, why.

Each change is one write-once record, ``models/<name>/audit/<revision:08d>-<event>-<alias>-<id>.json``;
``aliases.json`` holds only the current aliases, the revision and the last change of each alias.
The records of the committed changes form a chain: each names the id of the record of the
revision before it (``previous``), and ``aliases.json`` names the newest. A record off that chain
is an orphan of a change that never committed (see aliases.py for the protocol).
Stores written before the records existed keep their log as a ``history`` list inside
``aliases.json``: it is read as it is, and written out as records (named without an id, as the
old per-event copies were) by the first change.

This module is the pure part: the entry and the aliases document, record names, the chain walk
and the consistency checks. The reads and writes are in aliases.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from crack_model.core.documents import FORMAT_VERSION
from crack_model.core.errors import CrackModelError

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIAS_NAMES = (CHAMPION, CHALLENGER)
AUDIT_FOLDER = "audit"

_RECORD_NAME = re.compile(r"^(\d{8,})-([a-z]+)-([a-z]+)(?:-([0-9a-f]+))?\.json$")


def validate_alias(alias: str) -> str:
    if alias not in ALIAS_NAMES:
        raise CrackModelError(f"unknown alias {alias!r}: use one of {', '.join(ALIAS_NAMES)}")
    return alias


def revision_number(value: object) -> int:
    """A revision as stored: a JSON whole number from 0 (1e999, 2.5 or "3" in a hand-edited file is damage)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"revision {value!r} is not a whole number from 0")
    return value


@dataclass(frozen=True)
class AuditEntry:
    """One change of an alias: who moved it, in which run, when, from where to where, and why.

    ``entry_id`` names the change's record and ``previous_id`` the record of the revision before
    (None for the first change, and for entries written before records had ids).
    """

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
    entry_id: str | None = None
    previous_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["from"] = values.pop("from_version")
        values["to"] = values.pop("to_version")
        values["id"] = values.pop("entry_id")
        values["previous"] = values.pop("previous_id")
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AuditEntry:
        return cls(
            revision=revision_number(values["revision"]),
            event=str(values["event"]),
            alias=str(values["alias"]),
            from_version=values.get("from"),
            to_version=str(values["to"]),
            actor=str(values.get("actor", "")),
            run_id=values.get("run_id"),
            reason=str(values.get("reason", "")),
            at=str(values.get("at", "")),
            gate_decision=values.get("gate_decision"),
            entry_id=values.get("id"),
            previous_id=values.get("previous"),
        )

    @property
    def record_name(self) -> str:
        """The file name of this entry's record under ``audit/`` (sorted by revision)."""
        suffix = f"-{self.entry_id}" if self.entry_id else ""
        return f"{self.revision:08d}-{self.event}-{self.alias}{suffix}.json"


def parse_record_name(name: str) -> tuple[int, str | None] | None:
    """(revision, id or None) of an audit record's file name; None for any other file (e.g. a lock)."""
    match = _RECORD_NAME.match(name)
    return None if match is None else (int(match.group(1)), match.group(4))


@dataclass(frozen=True)
class AliasState:
    """``aliases.json`` as read, with the ETag a conditional write must match.

    ``last`` is each alias's latest change; ``legacy_history`` is the whole log of a store written
    before the audit records existed (empty once the first change has moved it into records).
    """

    name: str
    aliases: dict[str, str | None]
    revision: int
    etag: str | None
    last: dict[str, AuditEntry] = field(default_factory=dict)
    legacy_history: list[AuditEntry] = field(default_factory=list)

    def get(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    @property
    def head(self) -> AuditEntry | None:
        """The entry of the current revision (the newest change), if any."""
        return max(self.last.values(), key=lambda entry: entry.revision, default=None)

    @classmethod
    def from_document(cls, name: str, document: Mapping[str, Any], etag: str | None) -> AliasState:
        if not isinstance(document, Mapping):
            raise TypeError(f"expected a JSON object, found {type(document).__name__}")
        legacy = [AuditEntry.from_dict(entry) for entry in document.get("history") or []]
        last = {alias: AuditEntry.from_dict(entry) for alias, entry in (document.get("last") or {}).items() if entry}
        if legacy and not last:
            last = {entry.alias: entry for entry in legacy}
        stored = document.get("aliases") or {}
        if not isinstance(stored, Mapping):
            raise TypeError(f"aliases is {stored!r}, not an object of alias -> version")
        for alias in ALIAS_NAMES:
            if not isinstance(stored.get(alias), str | None):
                raise TypeError(f"alias {alias} is {stored[alias]!r}, not a version (text) or null")
        return cls(
            name=name,
            aliases={alias: stored.get(alias) for alias in ALIAS_NAMES},
            revision=revision_number(document.get("revision", 0)),
            etag=etag,
            last=last,
            legacy_history=legacy,
        )

    def after(self, entry: AuditEntry) -> AliasState:
        """The state once ``entry`` is committed: the legacy list is gone (its entries are records)."""
        aliases = {**self.aliases, entry.alias: entry.to_version}
        return replace(self, aliases=aliases, revision=entry.revision, last={**self.last, entry.alias: entry},
                       legacy_history=[])  # fmt: skip

    def as_document(self) -> dict[str, Any]:
        """The ``aliases.json`` body: a few hundred bytes however many changes there were."""
        head = self.head
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "revision": self.revision,
            "aliases": {alias: self.aliases.get(alias) for alias in ALIAS_NAMES},
            "updated_at": head.at if head else None,
            "last": {alias: self.last[alias].as_dict() if alias in self.last else None for alias in ALIAS_NAMES},
        }


def check_state(state: AliasState) -> list[str]:
    """Problems inside ``aliases.json`` alone (empty when it agrees with itself)."""
    if state.legacy_history:
        return check_history(state, state.legacy_history)
    problems = []
    for alias in ALIAS_NAMES:
        entry = state.last.get(alias)
        current = state.aliases.get(alias)
        moved_to = entry.to_version if entry else None
        if moved_to != current:
            problems.append(f"{alias} is {current} but its last change moved it to {moved_to}")
    head = state.head
    if (head.revision if head else 0) != state.revision:
        problems.append(f"revision {state.revision} but the newest change is revision {head.revision if head else 0}")
    if head is not None and not head.entry_id:
        problems.append(f"the change of revision {head.revision} names no audit record")
    return problems


def check_history(state: AliasState, history: Sequence[AuditEntry]) -> list[str]:
    """Problems that would make the audit log disagree with the aliases (empty when consistent)."""
    problems = []
    current: dict[str, str | None] = {}
    for number, entry in enumerate(history, start=1):
        if entry.revision != number:
            problems.append(f"history entry {number} has revision {entry.revision}")
        if entry.from_version != current.get(entry.alias):
            problems.append(
                f"revision {entry.revision} moves {entry.alias} from {entry.from_version}, "
                f"but it pointed at {current.get(entry.alias)}"
            )
        current[entry.alias] = entry.to_version
    if state.revision != len(history):
        problems.append(f"revision {state.revision} but {len(history)} history entries")
    for alias in ALIAS_NAMES:
        if state.aliases.get(alias) != current.get(alias):
            problems.append(f"{alias} is {state.aliases.get(alias)} but the history ends at {current.get(alias)}")
    return problems


def committed_history(state: AliasState, records: Iterable[AuditEntry]) -> list[AuditEntry]:
    """The committed changes, oldest first, out of every record read from ``audit/``.

    Walks the chain down from the change ``aliases.json`` names for its revision; records off the
    chain (orphans of changes that never committed) are ignored. Below the first record with an
    id, the records named without an id (written before ids existed) fill the revisions in.

    Raises:
        CrackModelError: a committed record is missing, so the log would have a gap.
    """
    if state.legacy_history:
        return list(state.legacy_history)
    by_id: dict[str, AuditEntry] = {}
    without_id: dict[int, AuditEntry] = {}
    for record in records:
        if record.entry_id:
            by_id[record.entry_id] = record
        else:
            without_id[record.revision] = record
    chain: list[AuditEntry] = []
    expected = state.revision
    wanted = state.head.entry_id if state.head else None
    while wanted is not None:
        link = by_id.get(wanted)
        if link is None or link.revision != expected:
            raise CrackModelError(_gap_message(state, expected, f"the record with id {wanted}"))
        chain.append(link)
        wanted, expected = link.previous_id, expected - 1
    for revision in range(expected, 0, -1):
        if revision not in without_id:
            raise CrackModelError(_gap_message(state, revision, "its record"))
        chain.append(without_id[revision])
    chain.reverse()
    return chain


def _gap_message(state: AliasState, revision: int, what: str) -> str:
    return (
        f"the audit log of model {state.name} has a gap: revision {revision} is committed but {what} is missing "
        f"from models/{state.name}/{AUDIT_FOLDER}/; restore it from a backup or versioned bucket before a rollback"
    )


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


class RollbackDoneError(CrackModelError):
    """This run id rolled the champion back already (a retried or overlapping try): ``entry`` is that rollback."""

    def __init__(self, message: str, entry: AuditEntry) -> None:
        super().__init__(message)
        self.entry = entry
