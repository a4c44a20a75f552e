"""Reading small JSON documents for the ops overview: a missing one is None, a broken one a noted problem.

A document that parses but holds a field of the wrong type is fitted to the shape the page expects
(``document_shapes``): that field counts as absent, and the problem names it.
"""

from __future__ import annotations

import json
from typing import Any

from crack_model.core.documents import read_if_present
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.pipelines.document_shapes import Record, conform

log = module_logger(__name__)


class StoreReader:
    """Small JSON documents from the store; a missing one is None, a broken one a noted problem."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.problems: list[str] = []

    def json(self, key: str, shape: Record | None = None) -> dict[str, Any] | None:
        """The JSON object at ``key`` (fitted to ``shape`` when given); None if missing or unreadable."""
        try:
            # One GET, not a HEAD first: the trends read a few documents a night, and twice the requests on S3 took
            # the 366 nights a page may show to 2,300 requests.
            data = read_if_present(self.store, key)
            if data is None:
                return None
            document = json.loads(data)
        except Exception as error:  # one unreadable document must not take the whole page down
            self.note(f"cannot read {key}: {error}")
            return None
        if not isinstance(document, dict):
            self.note(f"{key} is not a JSON object")
            return None
        if shape is None:
            return document
        fitted, problems = conform(document, shape, key)
        for problem in problems:
            self.note(problem)
        return fitted

    def exists(self, key: str) -> bool:
        """Whether the object exists; an error is a noted problem and counts as absent."""
        try:
            return self.store.exists(key)
        except Exception as error:  # one unreachable object must not take the whole page down
            self.note(f"cannot check {key}: {error}")
            return False

    def note(self, problem: str) -> None:
        if problem in self.problems:  # a page may read a document twice: its problem is one line
            return
        # Keys and names in it are anyone's: a line break in one would forge a log line of its own.
        log.warning(
            "ops overview: %s",
            problem.encode("unicode_escape").decode("ascii") if not problem.isprintable() else problem,
        )
        self.problems.append(problem)
