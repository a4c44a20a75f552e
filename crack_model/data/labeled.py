"""Labeled images: find them, fingerprint them, split them without leaks, feed them to Keras.

A labeled set is either a folder tree (``<root>/<class>/...``, any nesting below the class
folder) or a manifest CSV with ``uri,label`` columns. Splits are deterministic for a seed
and keep near-identical images (same bytes, or same perceptual hash) on one side, so the
test split never scores a re-encoded copy of a training image.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crack_model.core.config import DataConfig
from crack_model.core.errors import CrackModelError, ImageDecodeError
from crack_model.core.imaging import decode_to_array, difference_hash, open_header, open_image
from crack_model.core.log_lines import module_logger
from crack_model.core.uploads import UnservableObjectError, read_photo_uri
from crack_model.data.image_names import IMAGE_EXTENSIONS
from crack_model.data.labeled_folder import class_photos, warn_outside_classes

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

log = module_logger(__name__)

# An image directly in its class folder belongs to no named slice (the gate's holdout uses the same name).
NO_SLICE = "(none)"
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class LabeledImage:
    """One labeled image; ``slice`` is the folder right below its class folder (a site, a surface).

    ``width`` and ``height`` (as displayed, 0 when not read) tell training whether scoring would cut
    the image into tiles (training/photo_tiles.py).
    """

    uri: str
    label: str
    sha256: str = ""
    perceptual_hash: str = ""
    slice: str = NO_SLICE
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Unreadable:
    uri: str
    reason: str


class LabeledPhotoChangedError(CrackModelError):
    """A labeled photo read again is not the photo training fingerprinted (``read_labeled``)."""


@dataclass(frozen=True)
class Split:
    train: list[LabeledImage]
    validation: list[LabeledImage]
    test: list[LabeledImage]

    def parts(self) -> dict[str, list[LabeledImage]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def list_labeled_folder(root: str | Path, class_names: Sequence[str]) -> list[LabeledImage]:
    """List ``<root>/<class>/**/<image>`` for each class; raise on a missing or empty class."""
    root = Path(root)
    if not root.is_dir():
        raise CrackModelError(f"data folder {root} does not exist or is not a folder")
    missing = [name for name in class_names if not (root / name).is_dir()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        msg = (
            f"class folder {root / missing[0]} is missing: expected one sub-folder per class "
            f"({', '.join(class_names)}), found {found or 'none'}; set the names with --classes"
        )
        raise CrackModelError(msg)
    warn_outside_classes(root, class_names)
    images: list[LabeledImage] = []
    for class_name in class_names:
        class_dir = root / class_name
        files = class_photos(class_dir)
        if not files:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise CrackModelError(f"class folder {class_dir} has no images ({extensions})")
        images.extend(LabeledImage(str(path), class_name, slice=slice_of(path, class_dir)) for path in files)
    return images


def slice_of(path: Path, class_dir: Path) -> str:
    """``<class>/<slice>/.../<image>`` -> the slice; an image directly in its class folder -> NO_SLICE."""
    parts = path.relative_to(class_dir).parts
    return parts[0] if len(parts) >= 2 else NO_SLICE


def read_manifest(path: str | Path, class_names: Sequence[str]) -> list[LabeledImage]:
    """Read a ``uri,label[,slice]`` CSV; relative local paths are relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise CrackModelError(f"manifest {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's "CSV UTF-8" starts with a BOM
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"uri", "label"} <= set(reader.fieldnames):
            raise CrackModelError(f"manifest {path} needs a header with 'uri' and 'label' columns")
        images = []
        for line_number, row in enumerate(reader, start=2):
            uri, label = (row["uri"] or "").strip(), (row["label"] or "").strip()
            if label not in class_names:
                msg = f"manifest {path} line {line_number}: label {label!r} is not one of {list(class_names)}"
                raise CrackModelError(msg)
            if not uri:
                raise CrackModelError(f"manifest {path} line {line_number}: empty uri")
            if "://" not in uri and not Path(uri).is_absolute():
                uri = str(path.parent / uri)
            images.append(LabeledImage(uri, label, slice=(row.get("slice") or "").strip() or NO_SLICE))
    if not images:
        raise CrackModelError(f"manifest {path} lists no images")
    missing = [name for name in class_names if not any(image.label == name for image in images)]
    if missing:
        raise CrackModelError(f"manifest {path} has no images of class {', '.join(missing)}")
    return images


def list_labeled(source: str | Path, class_names: Sequence[str]) -> list[LabeledImage]:
    """A folder tree or a ``.csv`` manifest."""
    if str(source).lower().endswith(".csv"):
        return read_manifest(source, class_names)
    return list_labeled_folder(source, class_names)


def fingerprint(image: LabeledImage) -> LabeledImage | Unreadable:
    """Add the content hash, perceptual hash and size; decode failures come back as Unreadable."""
    try:
        data = read_photo_uri(image.uri)  # a file over the upload limit is refused by its size, never read
        opened = open_header(data)
        decoded = open_image(data, opened=opened)
    except (ImageDecodeError, UnservableObjectError) as error:
        return Unreadable(image.uri, str(error))
    except (CrackModelError, OSError) as error:
        return Unreadable(image.uri, f"cannot read: {error}")
    header = opened.header
    return replace(image, sha256=hashlib.sha256(data).hexdigest(), perceptual_hash=difference_hash(decoded),
                   width=header.width, height=header.height)  # fmt: skip


def read_labeled(image: LabeledImage) -> bytes:
    """A labeled photo's bytes, read again after its fingerprint (features, tiles, seam examples, the photo rule),
    within the upload size limit.

    Bytes other than the fingerprinted ones raise ``LabeledPhotoChangedError``: the duplicate groups, the split
    and the photo's tiles were made from those, the model's data manifest records their hash (the gate checks
    the holdout against it), and the feature cache files the features under it, so a photo replaced since would
    be learned unrecorded and cached under another photo's name.
    """
    data = read_photo_uri(image.uri)
    if image.sha256 and (now := hashlib.sha256(data).hexdigest()) != image.sha256:
        raise LabeledPhotoChangedError(
            f"labeled photo {image.uri} changed while training used it (sha256 {image.sha256[:12]}... when it was "
            f"checked, {now[:12]}... now): training stops rather than learn from a photo it did not check; "
            "run it again once the labeled photos stop changing"
        )
    return data


def labeled_fetch(images: Iterable[LabeledImage]) -> Callable[[str], bytes]:
    """``read_labeled`` by URI, for the code that fetches by URI (mosaics, seam examples, photo scoring); a URI
    that is none of ``images`` is refused, unread (it is no photo training checked)."""
    by_uri = {image.uri: image for image in images}

    def read(uri: str) -> bytes:
        if uri not in by_uri:
            raise CrackModelError(f"{uri} is not one of the labeled photos training fingerprinted")
        return read_labeled(by_uri[uri])

    return read


def fingerprint_all(
    images: Sequence[LabeledImage], *, workers: int = 8, progress: bool = False
) -> tuple[list[LabeledImage], list[Unreadable]]:
    """Fingerprint concurrently; return (readable images, unreadable ones with reasons)."""
    from tqdm import tqdm

    readable: list[LabeledImage] = []
    unreadable: list[Unreadable] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fingerprint, images)
        for result in tqdm(results, total=len(images), desc="reading images", unit="img", disable=not progress):
            (readable if isinstance(result, LabeledImage) else unreadable).append(result)
    return readable, unreadable


def load_labeled(
    source: str | Path, config: DataConfig, *, skip_unreadable: bool = False, progress: bool = False
) -> list[LabeledImage]:
    """List and fingerprint a labeled set; unreadable images are an error unless skipped."""
    listed = list_labeled(source, config.class_names)
    readable, unreadable = fingerprint_all(listed, progress=progress)
    if unreadable:
        shown = "; ".join(f"{bad.uri}: {bad.reason}" for bad in unreadable[:3])
        more = f" (and {len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
        if not skip_unreadable:
            msg = (
                f"{len(unreadable)} unreadable image(s) in {source}: {shown}{more}; "
                "fix or remove them (crack-model train can also leave them out: --skip-unreadable)"
            )
            raise CrackModelError(msg)
        log.warning("skipping %d unreadable image(s): %s%s", len(unreadable), shown, more)
    for class_name in config.class_names:
        if not any(image.label == class_name for image in readable):
            raise CrackModelError(f"class {class_name!r} has no readable images in {source}")
    return readable


def group_near_duplicates(images: Sequence[LabeledImage]) -> list[list[int]]:
    """Group indices of images sharing a content hash or a perceptual hash (union-find)."""
    parent = list(range(len(images)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_seen: dict[str, int] = {}
    for index, image in enumerate(images):
        for key in (f"sha:{image.sha256}", f"dhash:{image.perceptual_hash}"):
            if key.endswith(":"):
                continue
            if key in first_seen:
                parent[find(index)] = find(first_seen[key])
            else:
                first_seen[key] = index
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(images)):
        groups[find(index)].append(index)
    return list(groups.values())


def split_images(
    images: Sequence[LabeledImage], config: DataConfig, *, keep_in_train: Collection[str] = frozenset()
) -> Split:
    """Deterministic, stratified, leak-free split into train/validation/test.

    Stratified by class and slice: each slice (say, 100 photos of a new site) gets its share of
    the validation and test splits, so its threshold and metrics can be measured there.
    Near-duplicate groups go to one split as a whole. Within each class and slice, groups are
    ordered by a seeded hash of their content, so the split depends only on the images
    and the seed, not on listing order or the machine. A group holding an image whose sha256 is in
    ``keep_in_train`` (what the model a run starts from trained on) goes to train: the other groups fill
    the validation and test shares (all of them, in proportion, if fewer), so neither holds one it has seen.
    """
    if any(not image.sha256 for image in images):
        raise ValueError("split_images needs fingerprinted images (see fingerprint_all)")
    by_stratum: dict[tuple[str, str], list[list[LabeledImage]]] = defaultdict(list)
    for indices in group_near_duplicates(images):
        members = [images[index] for index in indices]
        by_stratum[_majority(members)].append(members)

    parts: dict[str, list[LabeledImage]] = {name: [] for name in SPLIT_NAMES}
    for stratum in sorted(by_stratum):
        groups = sorted(by_stratum[stratum], key=lambda group: _seeded_order(group, config.seed))
        total = sum(len(group) for group in groups)
        free = sum(len(group) for group in groups if not any(member.sha256 in keep_in_train for member in group))
        wanted = {"test": round(total * config.test_fraction), "validation": round(total * config.validation_fraction)}
        if wanted["test"] + wanted["validation"] > free:  # too few the start has not seen: shared (validation up)
            wanted["test"] = int(free * config.test_fraction / (config.test_fraction + config.validation_fraction))
            wanted["validation"] = free - wanted["test"]
        taken = {"test": 0, "validation": 0}
        for group in groups:
            if any(member.sha256 in keep_in_train for member in group):
                parts["train"].extend(group)
                continue
            target = next((name for name in ("test", "validation") if taken[name] < wanted[name]), "train")
            if target != "train":
                taken[target] += len(group)
            parts[target].extend(group)
    return Split(**{name: sorted(parts[name], key=lambda image: image.uri) for name in SPLIT_NAMES})


def _majority(members: Sequence[LabeledImage]) -> tuple[str, str]:
    """The (label, slice) most members of a near-duplicate group share; ties go to the first by name."""
    counts = Counter((member.label, member.slice) for member in members).most_common()
    return sorted(counts, key=lambda item: (-item[1], item[0]))[0][0]


def _seeded_order(group: Sequence[LabeledImage], seed: int) -> str:
    anchor = min(member.sha256 for member in group)
    return hashlib.sha256(f"{seed}:{anchor}".encode()).hexdigest()


def write_split_manifest(split: Split, path: Path) -> None:
    """Record which image went where (uri, label, sha256, split, slice, perceptual hash: the gate's look-alike
    check) for audits and re-evaluation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uri", "label", "sha256", "split", "slice", "perceptual_hash"])
        for name, images in split.parts().items():
            for image in images:
                writer.writerow([image.uri, image.label, image.sha256, name, image.slice, image.perceptual_hash])


def label_indices(images: Iterable[LabeledImage], class_names: Sequence[str]) -> list[int]:
    return [class_names.index(image.label) for image in images]


# tf.data runs make_dataset's reads in TensorFlow ops, whose error message carries the Python exception as
# "... <ExceptionName>: <message>\nTraceback (most recent call last): ..." (after ": " or "}} ", by the map kind)
_TRACEBACK = "\nTraceback (most recent call last)"
_EXCEPTION_NAME = re.compile(r"(?<![\w.])(\w+): ")


@contextmanager
def dataset_errors() -> Iterator[None]:
    """Around code that runs ``make_dataset``'s pipelines: a library error raised while tf.data reads a photo
    (a photo changed or gone since its fingerprint, a read cut short) is raised again as ``CrackModelError`` with
    its own message, one line naming the photo, instead of the TensorFlow error that carries it (chained)."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        head = error.message.split(_TRACEBACK, 1)[0] if _TRACEBACK in error.message else ""
        names = _library_error_names(CrackModelError)
        for found in _EXCEPTION_NAME.finditer(head):
            if found.group(1) in names:
                raise CrackModelError(head[found.end() :]) from error
        raise


def _library_error_names(base: type[Exception]) -> set[str]:
    names = {base.__name__}
    for subclass in base.__subclasses__():
        names |= _library_error_names(subclass)
    return names


def make_dataset(
    images: Sequence[LabeledImage],
    config: DataConfig,
    *,
    shuffle: bool = False,
    cache: bool = True,
    weights: Sequence[float] | np.ndarray | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of (float32 pixels 0..255, one-hot label[, weight]) batches.

    With ``weights`` (one per image, e.g. ``balance_weights``) each element carries its sample weight.

    Decoding runs in parallel through Pillow (the same decoder scoring uses), the
    decoded images are cached in memory after the first epoch, and batches are prefetched.
    """
    import numpy as np
    import tensorflow as tf

    if not images:
        raise CrackModelError("cannot build a dataset from zero images")
    size = config.image_size

    read = labeled_fetch(images)

    def load(uri: Any) -> np.ndarray:
        return decode_to_array(read(uri.decode("utf-8")), size)

    def load_tensor(uri: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.numpy_function(load, [uri], tf.uint8, stateful=False)
        pixels.set_shape((size, size, 3))
        return tf.cast(pixels, tf.float32), tf.one_hot(label, len(config.class_names))

    uris = [image.uri for image in images]
    labels = label_indices(images, config.class_names)
    dataset = tf.data.Dataset.from_tensor_slices((uris, labels))
    dataset = dataset.map(load_tensor, num_parallel_calls=tf.data.AUTOTUNE)
    if weights is not None:
        if len(weights) != len(uris):
            raise ValueError(f"{len(weights)} weights for {len(uris)} images: give one weight per image")
        weight_data = tf.data.Dataset.from_tensor_slices(np.asarray(weights, dtype=np.float32))
        dataset = tf.data.Dataset.zip((dataset, weight_data)).map(lambda pair, weight: (*pair, weight))
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(min(len(uris), 2048), seed=config.seed, reshuffle_each_iteration=True)
    return dataset.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
