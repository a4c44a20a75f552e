"""Names in the registry: model and version ids, the files a version folder holds, the registry's errors."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import CARD_NAME, MODEL_NAME, RUNTIME_FILES, SPLIT_NAME
from crack_model.data.manifest import DATA_MANIFEST

DEFAULT_NAME = "crack"

VERSION_MARKER = "version.json"
VERSIONS = "versions"  # models/<name>/versions/<version>/
# Written first, if absent, by a registration: the files it is about to upload. Another registration of the same
# version id with other files stops there, instead of overwriting the first one's files before version.json.
CLAIM = "registration_claim.json"
ALIASES_FILE = "aliases.json"
DRIFT_REFERENCE = "drift_reference.json"
GATE_REPORT = "gate_report.json"
GATE_HTML = "gate_report.html"
APPROVED_RUNTIMES = "approved_runtimes.json"
# What a training run leaves that is worth keeping with the version (PNGs are added too).
MODEL_ARTIFACTS = (
    MODEL_NAME,
    CARD_NAME,
    *(name for name in RUNTIME_FILES.values() if name != MODEL_NAME),
    "metrics.json",
    "training_config.json",
    SPLIT_NAME,
    "history.json",
)
RESERVED_NAMES = frozenset(
    {VERSION_MARKER, CLAIM, DATA_MANIFEST, DRIFT_REFERENCE, GATE_REPORT, GATE_HTML, APPROVED_RUNTIMES}
)
CAS_ATTEMPTS = 20

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}$")


class VersionExistsError(CrackModelError):
    """The version is already registered; versions are immutable."""


class VersionNotFoundError(CrackModelError):
    """No complete version of that name and version in the registry."""


class PromotionConflictError(CrackModelError):
    """The alias moved since the caller looked at it, or another writer won the race."""


class GateReportExistsError(CrackModelError):
    """The version already has a gate report; gate results are write-once."""


def validate_name(name: str) -> str:
    if not _NAME.match(name or ""):
        msg = f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (up to 64 characters, e.g. crack)"
        raise CrackModelError(msg)
    return name


def validate_version(version: str) -> str:
    if not _VERSION.match(version or ""):
        msg = (
            f"invalid model version {version!r}: use letters, digits, '.', '_', '+', '=' and '-' "
            "(up to 128 characters; training writes e.g. 20261124T195745Z-4a68a5b1)"
        )
        raise CrackModelError(msg)
    return version


def registered_version_problem(folder: str | Path) -> str | None:
    """Why nothing but a registration may write into ``folder``, or None: it is a registered version (it holds
    version.json) or lies in a registry's ``models/<name>/versions/`` folder. A version's files are checked against
    the hashes recorded at registration, so one changed in place leaves every worker unable to load it."""
    if (Path(folder) / VERSION_MARKER).is_file():
        return "is a registered version, which is never changed"
    parts = Path(os.path.realpath(folder)).parts
    if any(parts[index] == layout.MODELS and parts[index + 2] == VERSIONS for index in range(len(parts) - 3)):
        return f"is in a registry's {layout.MODELS}/<name>/{VERSIONS}/ folder, where only a registration writes"
    return None


def refuse_a_registered_version(folder: str | Path, advice: str) -> None:
    """Raise a CrackModelError saying ``advice`` (what to do instead) if ``folder`` is a registered version's."""
    if problem := registered_version_problem(folder):
        raise CrackModelError(f"{folder} {problem}: {advice}")


def version_document_problem(document: dict[str, Any]) -> str | None:
    """What makes a ``version.json`` unusable (hand-edited, cut short), or None: its card and its files, each with
    the SHA-256 every copy is checked against; a version without its card and a model file can serve nothing."""
    card, files = document.get("card"), document.get("files")
    if not isinstance(card, dict) or not isinstance(card.get("class_names"), list):
        return "its card, with class_names, is missing"
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("sha256"), str) for entry in files.values()
    ):
        return "its files, each with a sha256, are missing"
    if CARD_NAME not in files or not ({MODEL_NAME, *RUNTIME_FILES.values()} & set(files)):
        return f"its files name no {CARD_NAME} or no model file"
    return None


def metrics_summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The registered summary of a model's metrics.json: its test split's figures (else validation's)."""
    if metrics is None:
        return None
    split = "test" if "test" in metrics else "validation"
    figures = metrics.get(split) or {}
    keys = ("crack_recall", "crack_precision", "accuracy", "roc_auc", "images")
    return {"split": split, **{key: figures.get(key) for key in keys}}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_actor() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
