"""The photos of a labeled folder's class folders, and a warning for each thing beside them that is not trained on.

``train --data`` and ``evaluate --cv`` take ``<root>/<class>/**/<image>``. A photo anywhere else (a folder named
``positive`` or ``Cracked``, a photo at the root) or behind an entry the walk does not enter (a linked slice
folder, a link to a file that is gone, a folder it cannot list) was dropped without a word: a site's photos
never learned from, and nobody told.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from crack_model.core.log_lines import module_logger
from crack_model.data.image_names import why_not_an_image

log = module_logger(__name__)


def class_photos(class_dir: Path) -> list[Path]:
    """The image files under ``class_dir``, sorted; every other entry is logged as left out, with why.

    A link to a file is read as that file (as ``train --data`` always did); a link to a folder is not entered.
    """
    photos: list[Path] = []
    left_out: dict[Path, str] = {}
    _walk(class_dir, class_dir, photos, left_out)
    for path, why in sorted(left_out.items()):
        log.warning("left out %s: %s", path, why)  # said, never silent: a site's photos never learned from
    return sorted(photos)


def _walk(folder: Path, class_dir: Path, photos: list[Path], left_out: dict[Path, str]) -> None:
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError as error:
        left_out[folder] = f"the folder cannot be listed ({error.strerror or error}): make it readable"
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            _walk(path, class_dir, photos, left_out)
        elif path.is_file():  # a file, or a link to one
            if why := why_not_an_image(path.relative_to(class_dir).as_posix()):
                left_out[path] = why
            else:
                photos.append(path)
        elif entry.is_symlink():
            left_out[path] = (
                "a symbolic link to a folder: links inside a class folder are not followed; put the real folder there"
                if path.is_dir()
                else "a symbolic link to nothing (its target is gone or cannot be read): put the real file there"
            )
        else:
            left_out[path] = "not a regular file (a pipe, socket or device)"


def warn_outside_classes(root: Path, class_names: Sequence[str]) -> None:
    """Log each folder beside the class folders, and each photo at the root: neither is trained on.

    A folder named like a class but for case or spaces (``positive``, ``'Positive '``) is said to be one.
    Hidden entries (``.DS_Store``, ``.git``) and other files at the root (notes, a manifest) are not photos.
    """
    classes = {name.strip().casefold(): name for name in class_names}
    for path in sorted(root.iterdir()):
        if path.name in class_names or path.name.startswith("."):
            continue
        if path.is_dir():
            twin = classes.get(path.name.strip().casefold())
            advice = (
                f"it differs from the class folder {twin!r} only by case or spaces: move its photos there"
                if twin
                else f"the classes are {', '.join(class_names)}: move its photos into one (or name the classes "
                "with --classes)"
            )
            # Quoted: a name's trailing space is the difference that matters.
            log.warning("left out %r: not a class folder, so its photos are not trained on; %s", str(path), advice)
        elif not why_not_an_image(path.name):
            log.warning("left out %s: a photo outside the class folders (%s) is not trained on: move it into one",
                        path, ", ".join(class_names))  # fmt: skip
