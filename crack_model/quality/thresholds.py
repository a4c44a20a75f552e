"""The numbers validation checks against: ``ValidationThresholds`` and ``derive_thresholds`` from real photos."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crack_model.core.config import DEFAULT_CLASS_NAMES
from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import ALLOWED_FORMATS
from crack_model.core.storage import read_uri

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ValidationThresholds:
    """The numbers the suites' ``$PARAMETER`` references stand for.

    Image statistics: derived from the real METU sample (2,000 227x227 concrete patches) by
    ``derive_thresholds`` / ``bench/derive_bounds.py``: the 0.1st and 99.9th percentiles, widened
    by 15 % of the spread between them for brightness (a 0..255 scale) and by a factor of 1.5
    for contrast and blur (positive, long-tailed). Every image of the sample lies inside.
    The others are policy:

    Attributes:
        max_bad_fraction: share of objects that may break per-object checks and be quarantined
            (the suites' ``mostly`` is ``1 - max_bad_fraction``); more fails the batch.
        allowed_formats: Pillow format names accepted: by default every format the decoder opens
            (``imaging.ALLOWED_FORMATS``, the list the bucket contract invites), so validation passes what
            scoring scores; a thresholds file may narrow it.
        min_side, max_side: accepted width and height in pixels. The sample is all 227x227; below
            200 px a photo is smaller than one training patch; 16,384 takes the 14,204 px side of the
            150 MP inspection cameras (Phase One iXM), and a longer side is a panorama.
        brightness_min/max: mean grey level (sample 99.1..237.9, percentiles 99.5..226.6).
        contrast_min/max: standard deviation of grey (sample 2.31..55.7, percentiles 2.71..50.7), measured like
            blur.
        blur_min/max: variance of the Laplacian (sample 5.0..829, percentiles 5.30..639), measured on tile-size
            windows at the scale scoring cuts tiles at (``grey_image.window_statistics``), as the patches were.
        max_saturated_fraction, max_dark_fraction: share of pixels at grey >= 250 / <= 5. The sample
            has almost none (99.9th percentiles 5.3 % and 0.06 %), so a derived bound would reject
            ordinary glare and shadow; a quarter of the picture clipped is the policy.
        class_names: the known classes (training suite).
        min_images_per_class: decodable images each class needs (training suite).
        min_class_balance: smallest class / largest class, at least (training suite).
        fail_on_drift: a drifted batch fails instead of only being flagged.
        training_min_side: the training suite quarantines images smaller than this a side as broken
            (a thumbnail); a new site's 227x170 photos are smaller than the METU patches, not broken.
        blank_contrast: the training suite quarantines images whose grey spread is below this as blank.
        min_slice_images_for_bounds: a training slice (``labeled/<class>/<slice>/``) with at least this many
            decodable images gets brightness, contrast and blur bounds derived from its own photos;
            smaller slices are compared with the defaults above. Either way, a photo outside them is
            reported, not quarantined: a new surface is drift to know about, not broken data.
    """

    max_bad_fraction: float = 0.05
    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS
    min_side: int = 200
    max_side: int = 16_384
    brightness_min: float = 80.0
    brightness_max: float = 246.0
    contrast_min: float = 1.8
    contrast_max: float = 76.0
    blur_min: float = 3.5
    blur_max: float = 960.0
    max_saturated_fraction: float = 0.25
    max_dark_fraction: float = 0.25
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    min_images_per_class: int = 100
    min_class_balance: float = 0.2
    fail_on_drift: bool = False
    training_min_side: int = 64
    blank_contrast: float = 1.0
    min_slice_images_for_bounds: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.max_bad_fraction < 1:
            raise CrackModelError(f"max_bad_fraction must be in [0, 1), got {self.max_bad_fraction}")
        for low, high in (("min_side", "max_side"), ("brightness_min", "brightness_max"),
                          ("contrast_min", "contrast_max"), ("blur_min", "blur_max")):  # fmt: skip
            if getattr(self, low) > getattr(self, high):
                raise CrackModelError(f"threshold {low} ({getattr(self, low)}) exceeds {high} ({getattr(self, high)})")
        if not self.class_names:
            raise CrackModelError("class_names must name at least one class")
        if not 0 <= self.min_class_balance <= 1:
            raise CrackModelError(f"min_class_balance must be in [0, 1], got {self.min_class_balance}")

    def parameters(self) -> dict[str, Any]:
        """The values of the suites' ``$PARAMETER`` references."""
        values = dataclasses.asdict(self)
        values["mostly"] = round(1.0 - self.max_bad_fraction, 12)
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def replace(self, **overrides: Any) -> ValidationThresholds:
        """A copy with some values changed; unknown names are an error naming the known ones."""
        known = {item.name: item for item in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise CrackModelError(f"unknown threshold(s) {unknown}: use some of {sorted(known)}")
        for name, value in overrides.items():  # a JSON file may say "80" or null where a number goes
            if not _same_kind(value, known[name].default):
                kind = _KINDS[type(known[name].default).__name__]
                raise CrackModelError(f"threshold {name} must be {kind}, got {value!r}")
        converted: dict[str, Any] = {name: _as_kind(value, known[name].default) for name, value in overrides.items()}
        return dataclasses.replace(self, **converted)

    @classmethod
    def load(cls, uri: str) -> ValidationThresholds:
        """Defaults overridden by a JSON object of threshold names and values (a file or s3:// object)."""
        try:
            overrides = json.loads(read_uri(uri))
        except json.JSONDecodeError as error:
            raise CrackModelError(f"thresholds file {uri} is not JSON: {error}") from None
        if not isinstance(overrides, dict):
            raise CrackModelError(f"thresholds file {uri} must hold a JSON object of name: value")
        return cls().replace(**overrides)


_KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number", "tuple": "a list of names"}


def _as_kind(value: Any, default: Any) -> Any:
    """A checked value in its threshold's type: a list as a tuple, ``16384.0`` as 16384."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        return int(value)
    return value


def _same_kind(value: Any, default: Any) -> bool:
    """Is ``value`` of the kind of a threshold's default (an int is a float too; a bool is no number)?"""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, tuple):
        return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, int) and isinstance(value, float):
        return value.is_integer()  # 16384.0 for max_side
    return isinstance(value, type(default))


PHOTO_BOUNDS = ("brightness", "contrast", "blur")


def slice_bounds(profile: pd.DataFrame, slices: pd.Series, thresholds: ValidationThresholds) -> dict[str, Any]:
    """``{slice: ValidationThresholds}``: each slice's own derived bounds where it has enough photos.

    Args:
        profile: the profiled objects (``decodable`` and the photo statistics).
        slices: the slice of each row of ``profile`` (same index).
        thresholds: the defaults, kept for slices below ``min_slice_images_for_bounds``.
    """
    bounds: dict[str, Any] = {}
    decodable = profile["decodable"].astype(bool)
    for name in sorted(set(slices)):
        rows = profile[(slices == name) & decodable]
        own = len(rows) >= thresholds.min_slice_images_for_bounds
        bounds[name] = derive_thresholds(rows, base=thresholds) if own else thresholds
    return bounds


def derive_thresholds(
    profile: pd.DataFrame,
    *,
    base: ValidationThresholds | None = None,
    low_quantile: float = 0.001,
    high_quantile: float = 0.999,
    linear_margin: float = 0.15,
    log_margin: float = 1.5,
) -> ValidationThresholds:
    """Thresholds for brightness, contrast and blur derived from profiled real photos.

    Method: take the ``low_quantile`` and ``high_quantile`` of each statistic over the decodable
    images; widen brightness (a bounded 0..255 scale) by ``linear_margin`` of the spread between
    them on each side, and contrast and blur (positive, long-tailed) by dividing the low end and
    multiplying the high end by ``log_margin``. Everything else is kept from ``base``.
    """
    usable = profile[profile["decodable"].astype(bool)]
    if usable.empty:
        raise CrackModelError("cannot derive thresholds from a profile without decodable images")
    base = base or ValidationThresholds()
    low, high = usable["brightness"].quantile(low_quantile), usable["brightness"].quantile(high_quantile)
    spread = high - low
    values = {
        "brightness_min": max(0.0, round(low - linear_margin * spread, 1)),
        "brightness_max": min(255.0, round(high + linear_margin * spread, 1)),
    }
    for name in ("contrast", "blur"):
        low, high = usable[name].quantile(low_quantile), usable[name].quantile(high_quantile)
        values[f"{name}_min"] = float(f"{low / log_margin:.3g}")
        values[f"{name}_max"] = float(f"{high * log_margin:.3g}")
    return base.replace(**values)
