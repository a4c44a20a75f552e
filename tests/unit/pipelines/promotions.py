"""A registry whose champion was promoted twice, so a rollback has somewhere to go (no training: tiny folders)."""

from __future__ import annotations

from pathlib import Path

from crack_model.core.local_store import LocalStore
from crack_model.core.model_card import ModelCard
from crack_model.registry.versions import Registry

FIRST = "20261101T020000Z-aaaa1111"
SECOND = "20261122T000000Z-cccc3333"


def two_promotions(root: Path, name: str = "crack") -> LocalStore:
    """A local store under ``root``: ``FIRST`` promoted, then ``SECOND`` promoted over it (the champion)."""
    store = LocalStore(root / "store")
    registry = Registry(store)
    previous = None
    for version in (FIRST, SECOND):
        folder = root / version
        folder.mkdir(parents=True)
        ModelCard(version=version, threshold=0.5, created_at=f"{version[:4]}-{version[4:6]}-{version[6:8]}T02:00:00Z"
                  ).save(folder)  # fmt: skip
        (folder / "model.keras").write_bytes(b"not a real model: a rollback never loads it")
        registry.register(folder, name, actor="tester", run_id=f"manual__{version}")
        registry.promote(name, version, expected_current=previous, actor="airflow:crack_retraining",
                         reason="passed gate policy", run_id=f"scheduled__{version[:8]}")  # fmt: skip
        previous = version
    return store
