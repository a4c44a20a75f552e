"""Where downloaded models and cached features live on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$CRACK_MODEL_CACHE``, else (unset or empty, as a shell's ``CRACK_MODEL_CACHE=`` leaves it)
    ``~/.cache/crack-model``: an empty value would put the cache in whatever folder the command runs from."""
    return Path(os.environ.get("CRACK_MODEL_CACHE") or Path.home() / ".cache" / "crack-model")
