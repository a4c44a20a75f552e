"""Where downloaded models and cached features live on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$CRACK_MODEL_CACHE``, else ``~/.cache/crack-model``."""
    return Path(os.environ.get("CRACK_MODEL_CACHE", Path.home() / ".cache" / "crack-model"))
