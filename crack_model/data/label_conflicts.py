"""One photo under two classes: near-duplicates (the same bytes, or a re-saved copy with the same perceptual
hash) whose labels disagree. One of the labels is wrong, and training on both teaches noise, so the whole
group is left out of training and evaluation, each member named in a warning."""

from __future__ import annotations

from collections.abc import Sequence

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.data.labeled import LabeledImage, group_near_duplicates

log = module_logger(__name__)


def leave_out_label_conflicts(images: Sequence[LabeledImage]) -> list[LabeledImage]:
    """``images`` without the near-duplicate groups whose members carry more than one label (in order).

    (The gate's holdout has its own rule, ``holdout.without_label_conflicts``: same bytes only, since a holdout
    image is graded as it is, and a re-saved copy is a photo of its own there.)

    Raises:
        CrackModelError: a class is left with no image.
    """
    left_out: set[int] = set()
    for group in group_near_duplicates(images):
        if len({images[index].label for index in group}) > 1:
            members = "; ".join(f"{images[index].uri} ({images[index].label})" for index in sorted(group))
            log.warning("left out of training, one photo under two classes (relabel or remove one): %s", members)
            left_out.update(group)
    kept = [image for index, image in enumerate(images) if index not in left_out]
    if emptied := sorted({image.label for image in images} - {image.label for image in kept}):
        raise CrackModelError(f"class {emptied[0]} has no image left once its photos filed under two classes are "
                              "left out: relabel or remove the copies named above")  # fmt: skip
    return kept
