"""Reading the documents the workflow stores, for any layer that needs them."""

from __future__ import annotations

import json
from typing import Any

from crack_model.core import layout
from crack_model.core.storage import ObjectStore, open_store


def quarantined_objects(store: ObjectStore | str, batch_id: str) -> list[dict[str, Any]]:
    """The objects validation held back from a batch, each with ``key`` and ``reasons``."""
    store = open_store(store) if isinstance(store, str) else store
    key = layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST)
    if not store.exists(key):
        return []
    return list(json.loads(store.read(key)).get("objects", []))


def quarantined_keys(store: ObjectStore | str, batch_id: str) -> set[str]:
    """Keys validation held back from a batch (empty if it quarantined none): scoring skips them."""
    return {item["key"] for item in quarantined_objects(store, batch_id)}


def read_outcome(store: ObjectStore | str, batch_id: str) -> dict[str, Any] | None:
    """The ``outcome.json`` of a batch's last validation, or None if it was never validated."""
    store = open_store(store) if isinstance(store, str) else store
    key = layout.validation_key(batch_id, layout.OUTCOME)
    return json.loads(store.read(key)) if store.exists(key) else None
