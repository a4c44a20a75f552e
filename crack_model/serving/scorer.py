"""A saved model ready to score: its card, and the runtime that will run it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crack_model.core.cache import cache_root
from crack_model.core.errors import CrackModelError, RuntimeChoiceError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import CARD_NAME, MODEL_NAME, RUNTIME_FILES, RUNTIME_PREFERENCE, ModelCard
from crack_model.core.storage import file_uri_path, is_remote, open_store
from crack_model.registry.model_uri import is_model_uri, registered_folder, resolve_model_uri
from crack_model.serving.runtimes import Runtime, load_runtime

log = module_logger(__name__)


@dataclass
class Scorer:
    card: ModelCard
    runtime: Runtime
    model_dir: Path

    @property
    def version(self) -> str:
        return self.card.version

    def class_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 or float pixels (N, S, S, 3) in 0..255 -> probabilities (N, classes)."""
        return self.runtime.predict(pixels)


def fetch_model_dir(uri: str) -> Path:
    """A local folder holding the model: the folder itself, or a cached copy of a remote one."""
    if not is_remote(uri):
        path = Path(file_uri_path(uri) if uri.startswith("file://") else uri).expanduser()
        if path.is_file() and path.name.endswith(".keras"):
            return path.parent
        if not path.is_dir():
            raise CrackModelError(f"model {uri} does not exist: pass a model folder (with model.keras and model.json)")
        return path
    store = open_store(uri)
    card = store.head(CARD_NAME)
    if card is None:
        raise CrackModelError(f"model {uri} has no {CARD_NAME}: is this a model folder?")
    # Keyed by the card's ETag: a re-uploaded model gets a fresh copy.
    local = cache_root() / "models" / hashlib.sha256(f"{uri}@{card.etag}".encode()).hexdigest()[:16]
    if not (local / CARD_NAME).is_file():
        for info in store.list(""):
            if "/" not in info.key and (info.key in RUNTIME_FILES.values() or info.key == MODEL_NAME):
                store.download(info.key, local / info.key)
        store.download(CARD_NAME, local / CARD_NAME)  # last: its presence marks a complete copy
    return local


def load_scorer(
    uri: str | Path,
    runtime: str = "auto",
    threads: int | None = None,
    *,
    registry: str | os.PathLike[str] | None = None,
    approved_only: bool = False,
) -> Scorer:
    """Load a model folder (local path, ``file://``, ``s3://``) or a registry model with the chosen runtime.

    ``models:/<name>@<alias>`` and ``models:/<name>/<version>`` resolve against the registry
    store ``registry`` (default: ``$CRACK_MODEL_REGISTRY``) to one exact version.
    ``runtime="auto"`` picks the fastest approved runtime whose file is present: approved by
    the gate for a registry version, else as the model card lists; otherwise name one of
    ``keras``, ``litert-fp32``, ``litert-int8``. With ``approved_only``, a named runtime must be one of the
    approved too (the nightly DAG's ``runtime`` param: a night is never scored with an export that failed its
    agreement check).
    """
    gate_approved: list[str] | None = None
    resolved_version: str | None = None
    if not is_model_uri(uri) and (registered := registered_folder(str(uri))) is not None:
        log.info("%s is a registered version: loaded as %s, with the gate's runtimes", uri, registered[0])
        uri, registry = registered
    if is_model_uri(uri):
        resolved = resolve_model_uri(str(uri), registry)
        model_dir, gate_approved, resolved_version = resolved.model_dir, resolved.approved_runtimes, resolved.version
    else:
        model_dir = fetch_model_dir(str(uri))
    if not (model_dir / MODEL_NAME).is_file() and not any((model_dir / f).is_file() for f in RUNTIME_FILES.values()):
        raise CrackModelError(f"model folder {model_dir} has no {MODEL_NAME}")
    card = ModelCard.load(model_dir)
    if resolved_version is not None and card.version != resolved_version:
        msg = f"{uri} resolved to version {resolved_version}, but its model card says {card.version}: re-register it"
        raise CrackModelError(msg)
    allowed = gate_approved if gate_approved is not None else card.approved_runtimes
    if runtime == "auto":
        approved = [name for name in RUNTIME_PREFERENCE if name in allowed]
        available = [name for name in approved if (model_dir / RUNTIME_FILES[name]).is_file()]
        if not available:
            raise CrackModelError(f"model {uri} has no approved runtime file (approved: {allowed})")
        runtime = available[0]
    elif runtime not in RUNTIME_FILES:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r}: choose auto, {', '.join(RUNTIME_FILES)}")
    elif approved_only and runtime not in allowed:
        msg = f"runtime {runtime} is not approved for model {uri} (approved: {', '.join(allowed)}): name one of those"
        raise RuntimeChoiceError(msg + ", or auto for the fastest of them")
    elif runtime not in allowed:  # asked for by name (predict, evaluate): done, but never in silence
        log.warning("runtime %s is not approved for model %s (approved: %s): its labels may disagree with Keras's "
                    "beyond what the export check allows", runtime, uri, ", ".join(allowed))  # fmt: skip
    log.info("loading model %s (version %s) with runtime %s", uri, card.version, runtime)
    return Scorer(card=card, runtime=load_runtime(model_dir, runtime, threads), model_dir=model_dir)
