"""One process at a time in a working folder.

Two retrainings given the same ``--work`` folder each copied their pool into it: the second deleted the first's
photos, and the first trained on the other store's pool and registered that model in its own registry, with the
other's lineage. A folder is now held with a non-blocking ``flock`` of ``<folder>/.lock`` for the whole run; the
operating system drops it when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crack_model.core.errors import CrackModelError

LOCK_NAME = ".lock"


@contextmanager
def held_folder(folder: Path, what: str = "run") -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this process, or raise CrackModelError when another holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "another process"
            raise CrackModelError(
                f"the working folder {folder} is in use by another {what} (pid {holder}): give each run its own "
                "folder, or wait until that one ends"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        yield folder
    finally:
        os.close(handle)
