"""Reading small JSON documents for the ops overview: a missing one is None, a broken one a noted problem."""

from __future__ import annotations

import json
import logging
from typing import Any

from crack_model.core.object_keys import ObjectStore

log = logging.getLogger(__name__)


class StoreReader:
    """Small JSON documents from the store; a missing one is None, a broken one a noted problem."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.problems: list[str] = []

    def json(self, key: str) -> dict[str, Any] | None:
        try:
            if not self.store.exists(key):
                return None
            document = json.loads(self.store.read(key))
        except Exception as error:  # one unreadable document must not take the whole page down
            self.note(f"cannot read {key}: {error}")
            return None
        if not isinstance(document, dict):
            self.note(f"{key} is not a JSON object")
            return None
        return document

    def exists(self, key: str) -> bool:
        """Whether the object exists; an error is a noted problem and counts as absent."""
        try:
            return self.store.exists(key)
        except Exception as error:  # one unreachable object must not take the whole page down
            self.note(f"cannot check {key}: {error}")
            return False

    def note(self, problem: str) -> None:
        log.warning("ops overview: %s", problem)
        self.problems.append(problem)
