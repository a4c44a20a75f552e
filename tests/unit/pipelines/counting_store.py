"""Local stores that record what a reader asks of them: on S3 each call is a request, made one after another or not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from crack_model.core.local_store import LocalStore
from crack_model.core.object_keys import ObjectInfo


class CountingStore(LocalStore):
    """Records each ``exists``, ``head`` and ``read`` with its key."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def exists(self, key: str) -> bool:
        self.calls.append(("exists", key))
        return super().exists(key)

    def head(self, key: str) -> ObjectInfo | None:
        self.calls.append(("head", key))
        return super().head(key)

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        self.calls.append(("read", key))
        return super().read(key, max_bytes=max_bytes)

    def of(self, key: str) -> list[str]:
        """The calls made of ``key``, in order."""
        return [call for call, called in self.calls if called == key]


class OverlapStore(LocalStore):
    """Each read of a key ``watched`` picks waits (a few seconds at most) for another such read to start; ``most``:
    the most such reads at once. Read one after another, that is 1."""

    def __init__(self, root: Path, watched: Callable[[str], bool]) -> None:
        super().__init__(root)
        self.watched = watched
        self.lock = threading.Lock()
        self.reading = 0
        self.most = 0
        self.another = threading.Event()

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        if not self.watched(key):
            return super().read(key, max_bytes=max_bytes)
        with self.lock:
            self.reading += 1
            self.most = max(self.most, self.reading)
            if self.reading > 1:
                self.another.set()
        self.another.wait(timeout=3)
        try:
            return super().read(key, max_bytes=max_bytes)
        finally:
            with self.lock:
                self.reading -= 1
