"""Aliases (champion, challenger) of a registered model, moved by compare-and-swap, each change an audit record.

``models/<name>/aliases.json`` holds the current aliases, a revision number and the last change of
each alias: a few hundred bytes, replaced whole with a conditional write (S3 ``If-Match`` on the
ETag, ``If-None-Match`` for the first write; a file lock locally). A reader sees the old pointers
or the new ones, and of two concurrent promotions from the same champion exactly one wins.

Every change also gets its own write-once record,
``models/<name>/audit/<revision:08d>-<event>-<alias>-<id>.json`` (who, which run, when, from, to,
why, the gate decision), and the records are the audit log. A change is made in this order:

1. read ``aliases.json``: revision R, its ETag, and the id of revision R's record (its newest change);
2. write the record of revision R+1 with ``If-None-Match`` under a fresh random id; it names
   revision R's record as ``previous``;
3. replace ``aliases.json`` if its ETag is still the one read in 1 (revision R+1, the new entry as
   its alias's last change). Only this write commits the change.

The record is written before the commit, so no committed change lacks its record. The price is
orphans: a writer that loses step 3 to another (or dies between 2 and 3) leaves a record of a
revision it never committed. Readers therefore trust no record by its name alone: they start at
the record ``aliases.json`` names for its revision and follow ``previous`` down to revision 1.
A record above ``aliases.json``'s revision (a writer in flight, or dead) is never read; a record
at or below it that is off the chain (the loser of a race for that revision) is ignored. A
writer that lost retries from step 1 with a new id, so an orphan never blocks the revision it
claimed: the winner's record replaces it in the chain. Orphans are left in place (the prefix is
append-only); they are small and only a lost race or a crash makes one.

``history`` lists ``audit/`` (one LIST request per 1,000 records) and reads the records at or below
the current revision; ``rollback`` walks that history. ``resolve`` and scoring read
``aliases.json`` only.

Stores written before the records existed keep the whole log as a ``history`` list inside
``aliases.json``, and a copy of each entry as ``audit/<revision:08d>-<event>-<alias>.json`` (no id).
Both are read: while the list is there it is the log; the first change writes every listed entry
as an id-less record (the old copies are kept when present) before its own record, then drops the
list. Below the first record with an id, id-less records fill the revisions in. A library from
before this change refuses to move an alias of a store moved on (it finds a revision without a
history list and stops with "inconsistent"), so it cannot fork the log.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from crack_model.core.clock import utc_now
from crack_model.core.concurrency import map_bounded
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore, PreconditionFailedError, join_key
from crack_model.registry.audit_log import (
    ALIAS_NAMES,
    AUDIT_FOLDER,
    CHAMPION,
    AliasState,
    AuditEntry,
    RollbackDoneError,
    champion_lineage,
    check_history,
    check_state,
    committed_history,
    parse_record_name,
    validate_alias,
)
from crack_model.registry.naming import ALIASES_FILE, CAS_ATTEMPTS, DEFAULT_NAME, PromotionConflictError

log = module_logger(__name__)

READ_WORKERS = 8
# Audit records read by this process, by URL and listed version (``_read_records``): a few hundred bytes a record.
_RECORDS_READ: dict[tuple[str, str], AuditEntry] = {}


class AliasOperations(ABC):
    """Alias reads and moves; mixed into ``Registry``, which supplies the store and version lookups."""

    store: ObjectStore

    @property
    @abstractmethod
    def uri(self) -> str:
        """The registry store's URI (for messages)."""

    @abstractmethod
    def model_prefix(self, name: str) -> str:
        """``models/<name>``."""

    @abstractmethod
    def read_version(self, name: str, version: str) -> dict[str, Any]:
        """The version's ``version.json``; raises naming the latest versions if there is none."""

    @abstractmethod
    def gate_report(self, name: str, version: str) -> dict[str, Any] | None:
        """The version's stored gate report, if it was gated."""

    @abstractmethod
    def check_serving_files(self, name: str, version: str) -> None:
        """Raise unless every file scoring reads from the version is in the store as registered (size, SHA-256)."""

    def aliases(self, name: str = DEFAULT_NAME) -> AliasState:
        """The current aliases and the last change of each (all unset if nothing was ever promoted)."""
        key = join_key(self.model_prefix(name), ALIASES_FILE)
        info = self.store.head(key)
        if info is None:
            names = [record_key.rsplit("/", 1)[-1] for record_key in self._record_keys(name)]
            revisions = [parsed[0] for record in names if (parsed := parse_record_name(record))]
            # Records past revision 1: it was written, and is lost (a fresh state would restart the log at revision
            # 1, champion None). Revision 1 alone may be the record of a first promotion that died before it.
            if max(revisions, default=0) >= 2:
                raise CrackModelError(
                    f"{self.store.url(key)} is missing, yet models/{name}/{AUDIT_FOLDER}/ records changes up to "
                    f"revision {max(revisions)}: restore it from a backup, or rebuild it from the newest record; "
                    "until then nothing is promoted, rolled back or resolved"
                )
            return AliasState(name, dict.fromkeys(ALIAS_NAMES), 0, None)
        # The ETag is read before the bytes: if the document changes in between, the
        # conditional write against this older ETag fails and the caller re-reads.
        data = self.store.read(key)
        try:
            return AliasState.from_document(name, json.loads(data), info.etag)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            msg = (
                f"{self.store.url(key)} is not a valid aliases document ({error}); "
                f"rebuild it from the newest record in models/{name}/{AUDIT_FOLDER}/"
            )
            raise CrackModelError(msg) from None

    def resolve(self, name: str = DEFAULT_NAME, alias: str = CHAMPION) -> str:
        """The version an alias points at; an error if the alias is not set."""
        validate_alias(alias)
        version = self.aliases(name).get(alias)
        if version is None:
            msg = (
                f"model {name} has no {alias} in {self.uri}: "
                f"promote a version first (crack-model registry promote --version ... --alias {alias})"
            )
            raise CrackModelError(msg)
        return version

    def history(self, name: str = DEFAULT_NAME) -> list[AuditEntry]:
        """Every committed alias change, oldest first, from the audit records (orphans left out)."""
        return self._history_of(self.aliases(name))

    def _history_of(self, state: AliasState) -> list[AuditEntry]:
        if state.legacy_history or state.revision == 0:
            history = list(state.legacy_history)
        else:
            unreadable: dict[str, str] = {}
            records = self._read_records(state.name, up_to=state.revision, unreadable=unreadable)
            try:
                history = committed_history(state, records)
            except CrackModelError as error:  # a gap: say which records could not be read, if any
                damaged = "; ".join(f"{key} is not a valid audit record ({why})" for key, why in unreadable.items())
                raise CrackModelError(f"{error} ({damaged})" if damaged else str(error)) from None
        problems = check_history(state, history)
        if problems:
            msg = (
                f"the audit log of model {state.name} in {self.uri} disagrees with its aliases ({problems[0]}); "
                f"compare models/{state.name}/{ALIASES_FILE} with models/{state.name}/{AUDIT_FOLDER}/ and fix it"
            )
            raise CrackModelError(msg)
        return history

    def _read_records(self, name: str, *, up_to: int, unreadable: dict[str, str]) -> list[AuditEntry]:
        """Every readable record under ``audit/`` with a revision up to ``up_to`` (orphans included).

        A damaged record is left out and put in ``unreadable`` (its URL and why): an orphan's damage must not
        block rollbacks, and one the chain needs shows as a gap that names it.
        """
        listed = self._record_keys(name)
        keys = []
        for key in listed:
            parsed = parse_record_name(key.rsplit("/", 1)[-1])
            if parsed is not None and parsed[0] <= up_to:  # above: a change in flight or never committed
                keys.append(key)

        def read(key: str) -> AuditEntry | None:
            # A record is written once and never changed: one read before, of the version listed, is read again
            # from memory. The ops view read the whole log, a request a record, twice on every page (trends and
            # the rollback form), and every retraining adds a record or two.
            version = listed[key]
            seen = (self.store.url(key), version or "")
            if version and (entry := _RECORDS_READ.get(seen)) is not None:
                return entry
            try:
                entry = AuditEntry.from_dict(json.loads(self.store.read(key)))
                if version:
                    _RECORDS_READ[seen] = entry
                return entry
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
                log.warning("%s is not a valid audit record (%s)", self.store.url(key), error)
                unreadable[self.store.url(key)] = str(error)
                return None

        read_all = map_bounded(read, keys, workers=READ_WORKERS, thread_name_prefix="audit-read")
        return [record for record in read_all if record is not None]

    def promote(
        self,
        name: str,
        version: str,
        alias: str = CHAMPION,
        *,
        expected_current: str | None,
        actor: str,
        reason: str,
        run_id: str | None = None,
        unless_dethroned: bool = False,
    ) -> AuditEntry | None:
        """Point ``alias`` at ``version`` if it still points at ``expected_current`` (None: unset).

        Atomic: the aliases document is replaced with a conditional write, and a lost race is
        retried only while the alias still points at ``expected_current``. Returns the new
        audit entry, or None if the alias already pointed at ``version`` (a retried task).
        ``unless_dethroned``: refuse a version the champion was moved away from (rolled back, or replaced),
        checked on the state the change commits on: a stored gate report must not put it back unasked.

        Raises:
            PromotionConflictError: the alias points elsewhere now (someone else promoted).
            CrackModelError: ``unless_dethroned`` and the version was champion before.
        """
        validate_alias(alias)
        self.read_version(name, version)
        if not reason.strip():
            raise CrackModelError("a promotion needs a reason (it goes into the audit log)")
        gate = self.gate_report(name, version)

        def change(state: AliasState) -> AuditEntry | None:
            current = state.get(alias)
            if current == version:
                log.info("%s@%s already points at %s; nothing to do", name, alias, version)
                return None
            if current != expected_current:
                msg = (
                    f"cannot move {name}@{alias} to {version}: it points at {current}, not at "
                    f"{expected_current} as expected (another promotion won); re-run the gate against {current}"
                )
                raise PromotionConflictError(msg)
            if unless_dethroned and (moved := _moves_away(self._history_of(state), version)):
                raise CrackModelError(
                    f"{name} version {version} was champion until revision {moved.revision} ({moved.event} by "
                    f"{moved.actor}: {moved.reason}); its stored gate report does not promote it again: register a "
                    "new version, or promote it by hand (crack-model registry promote --force) if it is wanted back"
                )
            decision = gate.get("decision") if gate else None
            return AuditEntry(state.revision + 1, "promote", alias, current, version, actor, run_id, reason,
                              utc_now(), decision)  # fmt: skip

        return self._update_aliases(name, change)

    def rollback(
        self,
        name: str = DEFAULT_NAME,
        *,
        reason: str,
        actor: str,
        run_id: str | None = None,
        expected_champion: str | None = None,
    ) -> AuditEntry:
        """Point the champion back at the champion before it (as the audit log records).

        ``expected_champion``: the champion the requester saw (default: the one read now), checked on the state the
        change commits on: a promotion in between must not be what is rolled back.

        Raises:
            RollbackDoneError: ``run_id`` rolled back already; checked on the state the change commits on, so
                two overlapping tries of one run roll back one version, not two.
        """
        if not reason.strip():
            raise CrackModelError("a rollback needs a reason (it goes into the audit log)")
        seen = expected_champion or self.aliases(name).get(CHAMPION)
        checked: set[str] = set()  # versions are immutable: a retried change does not read the files again

        def change(state: AliasState) -> AuditEntry:
            history = self._history_of(state)
            done = [entry for entry in history if entry.event == "rollback" and run_id and entry.run_id == run_id]
            if done:
                msg = f"run {run_id} already rolled {name} back (revision {done[-1].revision}): nothing more to do"
                raise RollbackDoneError(msg, done[-1])
            current = state.get(CHAMPION)
            if current != seen:
                msg = f"{name}@{CHAMPION} moved from {seen} to {current} during the rollback; check and retry"
                raise PromotionConflictError(msg)
            lineage = champion_lineage(history)
            if current is None or len(lineage) < 2:
                raise CrackModelError(f"model {name} has no previous champion to roll back to (champion: {current})")
            target = lineage[-2]
            if target not in checked:  # removed, cut short or replaced: nights and gates would fail on it
                self.check_serving_files(name, target)
                checked.add(target)
            gate = self.gate_report(name, target)
            decision = gate.get("decision") if gate else None
            return AuditEntry(state.revision + 1, "rollback", CHAMPION, current, target, actor, run_id, reason,
                              utc_now(), decision)  # fmt: skip

        entry = self._update_aliases(name, change)
        if entry is None:  # change() never returns None for a rollback
            raise CrackModelError("rollback changed nothing")
        return entry

    def _update_aliases(self, name: str, change: Callable[[AliasState], AuditEntry | None]) -> AuditEntry | None:
        key = join_key(self.model_prefix(name), ALIASES_FILE)
        for attempt in range(CAS_ATTEMPTS):
            state = self.aliases(name)
            problems = check_state(state)
            if problems:
                raise CrackModelError(f"{self.store.url(key)} is inconsistent ({problems[0]}); fix it before promoting")
            proposed = change(state)
            if proposed is None:
                return None
            head = state.head
            entry = replace(proposed, entry_id=uuid.uuid4().hex[:16], previous_id=head.entry_id if head else None)
            if state.legacy_history:
                self._write_legacy_records(name, state.legacy_history)
            # The record before the commit (see the module docstring): if the write below loses or
            # this process dies first, the record is an orphan that no reader trusts.
            try:
                self.store.write_if_match(self._record_key(name, entry), _json_bytes(entry.as_dict()), None)
                self.store.write_if_match(key, _json_bytes(state.after(entry).as_document()), state.etag)
            except PreconditionFailedError:
                # Another writer changed the document: re-read and re-check (maybe another alias moved).
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                continue
            log.info(
                "%s@%s: %s -> %s (%s by %s: %s)",
                name,
                entry.alias,
                entry.from_version,
                entry.to_version,
                entry.event,
                entry.actor,
                entry.reason,
            )
            return entry
        raise PromotionConflictError(f"gave up moving an alias of {name}: {CAS_ATTEMPTS} concurrent updates won first")

    def _record_key(self, name: str, entry: AuditEntry) -> str:
        return join_key(self.model_prefix(name), AUDIT_FOLDER, entry.record_name)

    def _record_keys(self, name: str) -> dict[str, str | None]:
        """Keys of every object directly under ``audit/`` (records, and whatever else lies there), each with the
        version the listing shows of it (ETag, or modification time)."""
        folder = join_key(self.model_prefix(name), AUDIT_FOLDER)
        return {
            info.key: info.version
            for info in self.store.list(folder)
            if info.key.startswith(folder + "/") and "/" not in info.key[len(folder) + 1 :]
        }

    def _write_legacy_records(self, name: str, history: Sequence[AuditEntry]) -> None:
        """Write the entries of an old store's ``history`` list as id-less records (kept if present)."""
        present = set(self._record_keys(name))
        written = 0
        for entry in history:
            record_key = self._record_key(name, entry)
            if record_key in present:
                continue
            try:
                self.store.write_if_match(record_key, _json_bytes(entry.as_dict()), None)
                written += 1
            except PreconditionFailedError:
                pass  # another writer moving the same store on wrote it: the same committed entry
        log.info("model %s: moved %d history entries from %s into audit records", name, written, ALIASES_FILE)


def _moves_away(history: Sequence[AuditEntry], version: str) -> AuditEntry | None:
    """The last change that moved the champion away from ``version``, if any."""
    moves = [entry for entry in history if entry.alias == CHAMPION and entry.from_version == version]
    return moves[-1] if moves else None


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")
