"""Labeled data: listing, errors, fingerprints, leak-free deterministic splits, tf.data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core.config import DataConfig
from crack_model.core.errors import CrackModelError
from crack_model.data.labeled import (
    LabeledImage,
    list_labeled,
    load_labeled,
    make_dataset,
    read_manifest,
    split_images,
)
from tests import imagefiles


def test_missing_folder_is_a_clear_error(tmp_path):
    """A data folder that does not exist is named in the error."""
    with pytest.raises(CrackModelError, match="does not exist"):
        list_labeled(tmp_path / "nope", ("Negative", "Positive"))


def test_missing_class_folder_lists_what_was_found(tmp_path):
    """A missing class folder names the expected and the found folders."""
    (tmp_path / "Negative").mkdir()
    (tmp_path / "Cracks").mkdir()
    with pytest.raises(CrackModelError, match=r"Positive is missing.*Cracks"):
        list_labeled(tmp_path, ("Negative", "Positive"))


def test_empty_class_is_an_error(tmp_path):
    """A class folder with no images (only other files) is an error."""
    for name in ("Negative", "Positive"):
        (tmp_path / name).mkdir()
    (tmp_path / "Negative" / "a.jpg").write_bytes(imagefiles.jpeg())
    (tmp_path / "Positive" / "notes.txt").write_text("no images here")
    with pytest.raises(CrackModelError, match="Positive has no images"):
        list_labeled(tmp_path, ("Negative", "Positive"))


def test_listing_reads_nested_folders_and_png(tmp_path):
    """Images below class folders at any depth, in JPEG and PNG, are found; hidden files are not."""
    (tmp_path / "Negative" / "site-a").mkdir(parents=True)
    (tmp_path / "Positive").mkdir()
    (tmp_path / "Negative" / "site-a" / "n.png").write_bytes(imagefiles.grayscale_png())
    (tmp_path / "Positive" / "p.JPG").write_bytes(imagefiles.jpeg())
    (tmp_path / "Positive" / ".hidden.jpg").write_bytes(imagefiles.jpeg())
    images = list_labeled(tmp_path, ("Negative", "Positive"))
    assert sorted((Path(i.uri).name, i.label) for i in images) == [("n.png", "Negative"), ("p.JPG", "Positive")]


def test_phone_photos_are_labeled_images_that_train_upright(tmp_path):
    """HEIC (.heic, .HEIF, .hif) in class folders is listed, and reaches training upright."""
    (tmp_path / "Negative").mkdir()
    (tmp_path / "Positive").mkdir()
    upright = imagefiles.gradient_rgb(64, 48)
    (tmp_path / "Negative" / "IMG_0001.HEIC").write_bytes(
        imagefiles.heic(upright.transpose(Image.Transpose.ROTATE_90), orientation=6, quality=90)
    )
    (tmp_path / "Negative" / "b.hif").write_bytes(imagefiles.heic(upright, quality=90))
    (tmp_path / "Positive" / "c.HEIF").write_bytes(imagefiles.heic(upright, quality=90))
    images = list_labeled(tmp_path, ("Negative", "Positive"))
    assert sorted(Path(image.uri).name for image in images) == ["IMG_0001.HEIC", "b.hif", "c.HEIF"]
    pixels, _ = next(iter(make_dataset(images, DataConfig(image_size=64, batch_size=3))))
    expected = np.asarray(upright.resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    for decoded in pixels.numpy():
        assert np.abs(decoded - expected).mean() < 6


def test_manifest_reads_relative_paths_and_rejects_unknown_labels(tmp_path):
    """Manifest URIs are relative to the manifest; an unknown label names its line."""
    (tmp_path / "a.jpg").write_bytes(imagefiles.jpeg())
    (tmp_path / "b.png").write_bytes(imagefiles.rgba_png())
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,label\na.jpg,Positive\nb.png,Negative\n")
    images = read_manifest(manifest, ("Negative", "Positive"))
    assert [(Path(i.uri), i.label) for i in images] == [
        (tmp_path / "a.jpg", "Positive"),
        (tmp_path / "b.png", "Negative"),
    ]
    manifest.write_text("uri,label\na.jpg,Positive\nb.png,Crack\n")
    with pytest.raises(CrackModelError, match=r"line 3.*'Crack'"):
        read_manifest(manifest, ("Negative", "Positive"))
    manifest.write_bytes(b"\xef\xbb\xbfuri,label\na.jpg,Positive\nb.png,Negative\n")  # Excel's "CSV UTF-8": a BOM
    labels = [image.label for image in read_manifest(manifest, ("Negative", "Positive"))]
    assert labels == ["Positive", "Negative"]


def _labeled_folder(root: Path, count: int = 12) -> Path:
    from crack_model.data.synth import generate_dataset

    generate_dataset(root, count, size=48, seed=3)
    return root


def test_unreadable_images_stop_loading_unless_skipped(tmp_path):
    """A corrupt image is an error naming it; with skip_unreadable it is left out."""
    root = _labeled_folder(tmp_path)
    (root / "Positive" / "broken.jpg").write_bytes(imagefiles.truncated_jpeg())
    (root / "Negative" / "empty.jpg").write_bytes(b"")
    with pytest.raises(CrackModelError, match=r"2 unreadable image"):
        load_labeled(root, DataConfig())
    images = load_labeled(root, DataConfig(), skip_unreadable=True)
    assert len(images) == 24
    assert not any("broken" in i.uri or "empty" in i.uri for i in images)


def test_a_labeled_file_over_the_size_limit_is_unreadable_and_never_read(tmp_path, loaded_keys):
    """A file over the upload limit (sparse: no disk used) in a local training folder is refused by its size:
    an error naming it and the limit, or left out with skip_unreadable; its bytes are never loaded."""
    from crack_model.core.uploads import MAX_UPLOAD_BYTES

    root = _labeled_folder(tmp_path)
    with (root / "Positive" / "scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(CrackModelError, match=rf"scan\.tif: too large: {MAX_UPLOAD_BYTES + 1:,} bytes, over the limit"):
        load_labeled(root, DataConfig())
    images = load_labeled(root, DataConfig(), skip_unreadable=True)
    assert len(images) == 24 and "scan.tif" not in loaded_keys and len(loaded_keys) == 48


def test_training_reads_a_photo_again_within_the_size_limit(tmp_path, monkeypatch):
    """Training reads each photo again long after its fingerprint (features, tiles, the photo rule): a photo
    replaced by a file over the limit in between is refused there too, by the size of what the read opens."""
    from crack_model.core import uploads

    photo = tmp_path / "Positive" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x" * 100)
    assert uploads.read_photo_uri(str(photo)) == b"x" * 100
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 99)
    with pytest.raises(uploads.UnservableObjectError, match=r"^too large: 100 bytes, over the limit of 99"):
        uploads.read_photo_uri(str(photo))


def test_a_labeled_photo_replaced_after_its_fingerprint_is_refused_when_read_again(tmp_path):
    """Training reads a photo again long after it fingerprinted and checked it (duplicates, holdout overlap):
    other bytes by then are an error naming the photo and what to do, not a photo learned unchecked. The
    same bytes, and an image never fingerprinted (no sha256), read as they are."""
    from crack_model.data.labeled import LabeledPhotoChangedError, labeled_fetch, read_labeled

    images = load_labeled(_labeled_folder(tmp_path), DataConfig())
    replaced, other = images[0], images[-1]
    assert read_labeled(replaced) == Path(replaced.uri).read_bytes()
    Path(replaced.uri).write_bytes(Path(other.uri).read_bytes())  # a valid photo, just another one
    uri, old = re.escape(replaced.uri), replaced.sha256[:12]
    message = rf"labeled photo {uri} changed while training used it \(sha256 {old}\.\.\. "
    with pytest.raises(LabeledPhotoChangedError, match=message + r".*run it again once the labeled photos stop"):
        read_labeled(replaced)
    read = labeled_fetch(images)
    with pytest.raises(LabeledPhotoChangedError, match=message):
        read(replaced.uri)
    assert read(other.uri) == Path(other.uri).read_bytes()
    assert read_labeled(LabeledImage(replaced.uri, replaced.label)) == Path(other.uri).read_bytes()
    with pytest.raises(
        CrackModelError, match=r"elsewhere\.jpg is not one of the labeled photos training fingerprinted"
    ):
        read(str(tmp_path / "elsewhere.jpg"))


def test_a_dataset_stops_on_a_photo_replaced_after_its_fingerprint(tmp_path):
    """The full-network path (no feature cache) decodes in tf.data: a replaced photo stops it, named."""
    images = load_labeled(_labeled_folder(tmp_path), DataConfig())
    config = DataConfig(image_size=32, batch_size=4)
    assert sum(len(labels) for _, labels in make_dataset(images, config)) == len(images)
    Path(images[5].uri).write_bytes(Path(images[6].uri).read_bytes())
    with pytest.raises(Exception, match=rf"labeled photo {re.escape(images[5].uri)} changed while training used it"):
        list(make_dataset(images, config))


def test_a_library_error_inside_tf_data_comes_back_as_one_line(tmp_path):
    """TensorFlow carries an error raised while tf.data reads a photo inside one of its own, with a traceback:
    ``dataset_errors`` raises the library's again (what the CLI prints as ``crack-model: error: ...``), and
    leaves TensorFlow's own errors alone."""
    import tensorflow as tf

    from crack_model.data.labeled import dataset_errors

    images = load_labeled(_labeled_folder(tmp_path), DataConfig())
    Path(images[3].uri).unlink()
    with pytest.raises(CrackModelError) as raised, dataset_errors():
        list(make_dataset(images, DataConfig(image_size=32, batch_size=4)))
    assert type(raised.value) is CrackModelError
    assert re.fullmatch(rf"object not found: .*{re.escape(Path(images[3].uri).name)}", str(raised.value))
    with pytest.raises(tf.errors.InvalidArgumentError), dataset_errors():
        tf.reshape(tf.zeros(3), (2,))

    def fail(value):  # raised inside a plain (not parallel) map: TensorFlow words its error differently
        raise (CrackModelError if value > 1 else ValueError)(f"photo {value}: unreadable")

    def mapped(values: list[int]) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(values).map(lambda v: tf.numpy_function(fail, [v], tf.int64))

    with pytest.raises(CrackModelError, match=r"^photo 2: unreadable$"), dataset_errors():
        list(mapped([2]))
    with pytest.raises(tf.errors.OpError, match="ValueError: photo 1: unreadable"), dataset_errors():
        list(mapped([1]))  # not the library's: TensorFlow's error, as it was


def test_no_training_or_evaluation_module_reads_a_photo_without_the_size_limit():
    """``storage.read_uri`` reads an object whole, whatever its size: training, the labeled data and evaluation read
    photos by URI through ``uploads.read_photo_uri`` instead (a module that imports ``read_uri`` again fails here),
    and training through ``labeled.read_labeled``, which also checks the photo is the one it fingerprinted."""
    import ast

    library = Path(__file__).resolve().parents[3] / "crack_model"
    training = sorted((library / "training").glob("*.py"))
    modules = [*training, *sorted((library / "evaluation").glob("*.py"))]
    offenders = []
    for path in [*modules, library / "data" / "labeled.py"]:
        # training reads a photo through data.labeled.read_labeled, which also checks it is the photo fingerprinted
        forbidden = {"read_uri", "read_photo_uri"} if path in training else {"read_uri"}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and any(alias.name in forbidden for alias in node.names):
                offenders.append(str(path.relative_to(library)))
    assert len(training) > 8 and len(modules) > 20 and offenders == []


def test_a_uri_that_names_no_file_is_unreadable_without_listing_a_store(monkeypatch):
    """A manifest's "/" or "s3://bucket" names no object: it is refused by its key, before the size check would
    list the whole file system or bucket."""
    from crack_model.core.local_store import LocalStore
    from crack_model.data.labeled import Unreadable, fingerprint

    listed = []
    monkeypatch.setattr(LocalStore, "list", lambda self, prefix="": listed.append(prefix) or iter(()))
    result = fingerprint(LabeledImage("/", "Positive"))
    assert isinstance(result, Unreadable) and "invalid object key ''" in result.reason
    assert listed == []


def test_fingerprints_are_content_hashes(tmp_path):
    """The sha256 recorded is the hash of the file's bytes."""
    import hashlib

    root = _labeled_folder(tmp_path, 2)
    for image in load_labeled(root, DataConfig()):
        assert image.sha256 == hashlib.sha256(Path(image.uri).read_bytes()).hexdigest()


@pytest.fixture()
def fingerprinted(synth_data):
    return load_labeled(synth_data, DataConfig())


def test_split_is_deterministic_and_stratified(fingerprinted):
    """The same seed gives the same split whatever the listing order; each split has both classes."""
    config = DataConfig()
    first = split_images(fingerprinted, config)
    again = split_images(list(reversed(fingerprinted)), config)
    assert first == again
    for part in first.parts().values():
        assert {image.label for image in part} == {"Negative", "Positive"}
    assert len(first.test) == pytest.approx(0.15 * 80, abs=2)
    other_seed = split_images(fingerprinted, DataConfig(seed=7))
    assert {i.uri for i in other_seed.test} != {i.uri for i in first.test}


def test_split_partitions_the_images(fingerprinted):
    """Every image lands in exactly one split."""
    split = split_images(fingerprinted, DataConfig())
    uris = [i.uri for part in split.parts().values() for i in part]
    assert sorted(uris) == sorted(i.uri for i in fingerprinted)


def test_split_keeps_duplicates_and_reencodings_together(tmp_path, synth_data):
    """Byte copies and re-encoded copies of an image always share a split (no leak)."""
    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(synth_data, root)
    originals = sorted((root / "Positive").glob("*.jpg"))[:10] + sorted((root / "Negative").glob("*.jpg"))[:10]
    for path in originals:
        shutil.copy(path, path.with_name(f"copy_{path.name}"))
        Image.open(path).save(path.with_name(f"reenc_{path.stem}.png"))
    images = load_labeled(root, DataConfig())
    for seed in range(5):
        split = split_images(images, DataConfig(seed=seed))
        where = {Path(i.uri).name: name for name, part in split.parts().items() for i in part}
        for path in originals:
            assert where[path.name] == where[f"copy_{path.name}"] == where[f"reenc_{path.stem}.png"]


def test_split_needs_fingerprints():
    """Splitting unhashed images is a programming error, caught early."""
    with pytest.raises(ValueError, match="fingerprinted"):
        split_images([LabeledImage("a.jpg", "Positive")], DataConfig())


def test_dataset_yields_batches_of_pixels_and_one_hot_labels(fingerprinted):
    """tf.data gives (batch, size, size, 3) float pixels in 0..255 and one-hot labels."""
    config = DataConfig(image_size=32, batch_size=8)
    dataset = make_dataset(fingerprinted[:20], config, shuffle=True)
    pixels, labels = next(iter(dataset))
    assert pixels.shape == (8, 32, 32, 3) and labels.shape == (8, 2)
    assert float(np.min(pixels)) >= 0 and float(np.max(pixels)) <= 255
    assert np.allclose(np.sum(labels, axis=1), 1)
    total = sum(int(batch[0].shape[0]) for batch in dataset)
    assert total == 20


def test_dataset_reads_grayscale_and_rgba(tmp_path):
    """Grayscale and RGBA PNGs come out of the pipeline as 3-channel pixels."""
    (tmp_path / "g.png").write_bytes(imagefiles.grayscale_png())
    (tmp_path / "a.png").write_bytes(imagefiles.rgba_png())
    images = [LabeledImage(str(tmp_path / "g.png"), "Negative"), LabeledImage(str(tmp_path / "a.png"), "Positive")]
    pixels, labels = next(iter(make_dataset(images, DataConfig(image_size=32, batch_size=2))))
    assert pixels.shape == (2, 32, 32, 3)
    assert labels.numpy().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_config_rejects_inconsistent_values():
    """The crack class must be a class; fractions must leave training data."""
    with pytest.raises(ValueError, match="crack class"):
        DataConfig(crack_class="Crack")
    with pytest.raises(ValueError, match="fractions"):
        DataConfig(validation_fraction=0.5, test_fraction=0.5)
