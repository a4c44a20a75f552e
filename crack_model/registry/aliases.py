"""Aliases (champion, challenger) of a registered model, moved by compare-and-swap with an audit trail.

The aliases live in one small document replaced whole with a conditional write (S3 ``If-Match``,
a file lock locally), so a reader sees the old pointer or the new one, and of two concurrent
promotions from the same champion exactly one wins.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from crack_model.core.clock import utc_now
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectStore, PreconditionFailedError, join_key
from crack_model.registry.audit_log import (
    ALIAS_NAMES,
    CHAMPION,
    AliasState,
    AuditEntry,
    champion_lineage,
    check_history,
    validate_alias,
)
from crack_model.registry.naming import ALIASES_FILE, CAS_ATTEMPTS, DEFAULT_NAME, PromotionConflictError

log = logging.getLogger(__name__)


class AliasOperations:
    """Alias reads and moves; mixed into ``Registry``, which supplies the store and version lookups."""

    store: ObjectStore

    @property
    def uri(self) -> str:
        raise NotImplementedError

    def model_prefix(self, name: str) -> str:
        raise NotImplementedError

    def read_version(self, name: str, version: str) -> dict[str, Any]:
        raise NotImplementedError

    def gate_report(self, name: str, version: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def aliases(self, name: str = DEFAULT_NAME) -> AliasState:
        """The current aliases and their history (empty if nothing was ever promoted)."""
        key = join_key(self.model_prefix(name), ALIASES_FILE)
        info = self.store.head(key)
        if info is None:
            return AliasState(name, dict.fromkeys(ALIAS_NAMES), [], 0, None)
        # The ETag is read before the bytes: if the document changes in between, the
        # conditional write against this older ETag fails and the caller re-reads.
        data = self.store.read(key)
        try:
            document = json.loads(data)
            return AliasState(
                name=name,
                aliases={alias: document.get("aliases", {}).get(alias) for alias in ALIAS_NAMES},
                history=[AuditEntry.from_dict(entry) for entry in document.get("history", [])],
                revision=int(document.get("revision", 0)),
                etag=info.etag,
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            msg = (
                f"{self.store.url(key)} is not a valid aliases document ({error}); restore it from models/{name}/audit/"
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
        return self.aliases(name).history

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
    ) -> AuditEntry | None:
        """Point ``alias`` at ``version`` if it still points at ``expected_current`` (None: unset).

        Atomic: the aliases document is replaced with a conditional write, and a lost race is
        retried only while the alias still points at ``expected_current``. Returns the new
        history entry, or None if the alias already pointed at ``version`` (a retried task).

        Raises:
            PromotionConflictError: the alias points elsewhere now (someone else promoted).
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
            return AuditEntry(
                state.revision + 1,
                "promote",
                alias,
                current,
                version,
                actor,
                run_id,
                reason,
                utc_now(),
                gate.get("decision") if gate else None,
            )

        return self._update_aliases(name, change)

    def rollback(
        self,
        name: str = DEFAULT_NAME,
        *,
        reason: str,
        actor: str,
        run_id: str | None = None,
    ) -> AuditEntry:
        """Point the champion back at the champion before it (as the history records)."""
        if not reason.strip():
            raise CrackModelError("a rollback needs a reason (it goes into the audit log)")
        seen = self.aliases(name).get(CHAMPION)

        def change(state: AliasState) -> AuditEntry:
            current = state.get(CHAMPION)
            if current != seen:
                msg = f"{name}@{CHAMPION} moved from {seen} to {current} during the rollback; check and retry"
                raise PromotionConflictError(msg)
            lineage = champion_lineage(state.history)
            if current is None or len(lineage) < 2:
                raise CrackModelError(f"model {name} has no previous champion to roll back to (champion: {current})")
            target = lineage[-2]
            gate = self.gate_report(name, target)
            return AuditEntry(
                state.revision + 1,
                "rollback",
                CHAMPION,
                current,
                target,
                actor,
                run_id,
                reason,
                utc_now(),
                gate.get("decision") if gate else None,
            )

        entry = self._update_aliases(name, change)
        if entry is None:  # change() never returns None for a rollback
            raise CrackModelError("rollback changed nothing")
        return entry

    def _update_aliases(self, name: str, change: Callable[[AliasState], AuditEntry | None]) -> AuditEntry | None:
        key = join_key(self.model_prefix(name), ALIASES_FILE)
        for attempt in range(CAS_ATTEMPTS):
            state = self.aliases(name)
            problems = check_history(state)
            if problems:
                raise CrackModelError(f"{self.store.url(key)} is inconsistent ({problems[0]}); fix it before promoting")
            entry = change(state)
            if entry is None:
                return None
            aliases = dict(state.aliases)
            aliases[entry.alias] = entry.to_version
            updated = AliasState(name, aliases, [*state.history, entry], entry.revision, state.etag)
            try:
                self.store.write_if_match(key, _json_bytes(updated.as_document()), state.etag)
            except PreconditionFailedError:
                # Another writer changed the document: re-read and re-check (maybe another alias moved).
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                continue
            self._mirror_audit(name, entry)
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

    def _mirror_audit(self, name: str, entry: AuditEntry) -> None:
        # One object per event for tools that watch a prefix; aliases.json stays the record.
        key = join_key(self.model_prefix(name), "audit", f"{entry.revision:08d}-{entry.event}-{entry.alias}.json")
        try:
            self.store.write_if_match(key, _json_bytes(entry.as_dict()), None)
        except Exception as error:  # the change is committed; a missing copy must not undo it
            log.warning("could not write the audit copy %s: %s", key, error)


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")
