"""Which files of a labeled tree (or a folder given to ``predict``) are images, and why one is left out."""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".heic", ".heif", ".hif"}
)


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS and not Path(name).name.startswith(".")


def why_not_an_image(relative: str) -> str | None:
    """Why a file of a labeled tree (its ``/``-separated path inside the tree) is left out of it, or None.

    The same rule wherever labeled photos are listed (training, its suite, the holdout), and each says why:
    a photo left out in silence is a site's photos never learned from.
    """
    parts = relative.split("/")
    if any(part.startswith(".") for part in parts):  # .Trash/, .DS_Store, a tool's .cache/
        return "hidden (a name starting with '.')"
    if Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file name (.jpg, .png, .heic, ...)"
    return None
