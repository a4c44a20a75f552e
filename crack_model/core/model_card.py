"""``model.json``: what a saved model needs besides its weights to score correctly."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crack_model import __version__
from crack_model.core.clock import utc_now
from crack_model.core.config import DEFAULT_CLASS_NAMES, DEFAULT_CRACK_CLASS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from crack_model.core.errors import CrackModelError

CARD_NAME = "model.json"
MODEL_NAME = "model.keras"
SPLIT_NAME = "split.csv"  # which labeled image went to which split (data/labeled.py write_split_manifest)
# Fastest first: measured on 2 cores (bench/), LiteRT int8 ~2x fp32 ~3x Keras.
RUNTIME_PREFERENCE = ("litert-int8", "litert-fp32", "keras")
RUNTIME_FILES = {"keras": MODEL_NAME, "litert-fp32": "model_fp32.tflite", "litert-int8": "model_int8.tflite"}


@dataclass
class ModelCard:
    version: str
    class_names: list[str] = field(default_factory=lambda: list(DEFAULT_CLASS_NAMES))
    crack_class: str = DEFAULT_CRACK_CLASS
    image_size: int = 224
    threshold: float = 0.5
    # Photos larger than this many pixels a side are cut into tiles of this size:
    # the training patches were 227x227 crops of phone photos.
    tile_size: int = 227
    alpha: float = 1.0
    base_weights: str = "imagenet"
    seed: int = 42
    target_recall: float = 0.99
    created_at: str = field(default_factory=lambda: utc_now())
    library_version: str = __version__
    git_commit: str | None = None
    # Exported runtimes approved for serving by the gate, fastest first (see runtimes.py).
    approved_runtimes: list[str] = field(default_factory=lambda: ["keras"])
    # A photo cut into several tiles is labeled by the photo rule (serving/photo_decision.py), chosen on
    # mosaics of validation patches and the validation split's labeled photos: the highest of ~150
    # tiles is a far likelier false alarm than one patch's score. ``threshold`` still marks crack
    # tiles. None (cards from before the rule): a photo is a crack when its highest tile reaches ``threshold``.
    photo_threshold: float | None = None
    # Tiles at or above ``threshold`` that must touch each other for a crack (1: any single tile).
    photo_min_tiles: int = 1
    # ``photo_threshold`` holds up to this many tiles (the calibration photos'); for a photo of more,
    # it rises by ``photo_tail_scale`` log-odds per e-fold of tiles, never above ``photo_max_threshold``
    # (what 90 % of the validation crack photos reach). None: the same for every count.
    photo_tiles: int | None = None
    photo_tail_scale: float | None = None
    photo_max_threshold: float | None = None
    # A photo the rule calls crack must also have one of its highest tiles reach this averaged over
    # its flips (serving/photo_confirmation.py); None: no confirmation (cards from before it).
    photo_confirm_threshold: float | None = None
    # A one-tile image (a patch) scored from ``threshold`` up to photo_confirmation.PATCH_CONFIRM_BELOW
    # is a crack only if its mean over itself and its flips reaches this; None: no confirmation.
    patch_confirm_threshold: float | None = None
    # How the photo rule was chosen: the mosaics and labeled photos, their figures, the rule's inputs.
    photo_calibration: dict[str, Any] | None = None

    @property
    def crack_index(self) -> int:
        return self.class_names.index(self.crack_class)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CARD_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelCard:
        """A card from its JSON object; TypeError names the first field of the wrong type (``"224"``, ``[]``)."""
        if not isinstance(values, dict):
            raise TypeError(f"a JSON object is expected, got {type(values).__name__}")
        for item in fields(cls):
            if item.name in values and not _of_type(values[item.name], str(item.type)):
                raise TypeError(f"{item.name} is {values[item.name]!r}, which is not {item.type}")
        known = {item.name for item in fields(cls)}
        card = cls(**{key: value for key, value in values.items() if key in known})
        if problem := card.range_problem():
            raise ValueError(problem)
        return card

    def range_problem(self) -> str | None:
        """What in this card no model can score with (a threshold of 2 missed every crack in silence), or None."""
        if len(set(self.class_names)) < 2:
            return f"class_names {self.class_names} must hold two or more names"
        if self.crack_class not in self.class_names:
            return f"crack_class {self.crack_class!r} is not one of class_names {self.class_names}"
        sizes = {
            "image_size": (self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
            "tile_size": (self.tile_size, 32, 8192),
            "photo_min_tiles": (self.photo_min_tiles, 1, 10_000),
            "photo_tiles": (self.photo_tiles, 1, 10**6),
        }
        for name, (value, low, high) in sizes.items():
            if value is not None and not low <= value <= high:
                return f"{name} is {value}, which is not from {low} to {high}"
        for name in ("threshold", "photo_threshold", "photo_max_threshold", "photo_confirm_threshold",
                     "patch_confirm_threshold"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:  # NaN too; 0 is valid (training writes it: "at least 0")
                return f"{name} is {value}, which is not a probability (0 to 1)"
        return None

    @classmethod
    def load(cls, directory: Path) -> ModelCard:
        path = Path(directory) / CARD_NAME
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CrackModelError(f"{path} is missing: a model folder holds model.keras and model.json") from None
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            msg = f"{path} is not a valid model card: {error}; train or export the model again (or mend the file)"
            raise CrackModelError(msg) from None


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "list[str]": (list,), "dict[str, Any]": (dict,),
}  # fmt: skip


def _of_type(value: Any, annotation: str) -> bool:
    """Does a JSON value fit a card field's annotation ("float | None", "list[str]", ...)? A bool is no number."""
    kinds = annotation.split(" | ")
    if value is None:
        return "None" in kinds
    allowed = tuple(kind for name in kinds if name != "None" for kind in _JSON_TYPES.get(name, (object,)))
    if isinstance(value, bool) or not isinstance(value, allowed):
        return False
    return not isinstance(value, list) or all(isinstance(element, str) for element in value)


def new_version(model_file: Path) -> str:
    """A sortable, unique version: UTC time plus a hash of the saved model."""
    digest = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()[:8]
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def git_commit() -> str | None:
    """The commit of the code that trained the model, when run from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
