"""A cache of the frozen base's features, so retraining costs little.

With the base frozen, almost all training time is the base's forward pass, and it gives
the same answer every epoch. Each image's pooled base features are stored once, keyed by
the image's content hash and a fingerprint of the base (weights, width, input size, pooled layers), for
the plain image (view 0) and a fixed number of augmented views (also keyed by the augmentation
drawn: views of another augmentation are computed anew, not reused). Training the head on cached
features takes seconds; a retraining run that reuses most of the pool only computes the
new images.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from crack_model.core.concurrency import map_bounded
from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.imaging import decode_to_array
from crack_model.core.log_lines import module_logger
from crack_model.data.labeled import LabeledImage, label_indices, read_labeled
from crack_model.serving.runtimes import LiteRTRuntime
from crack_model.training.fitting import compile_and_fit
from crack_model.training.model import add_head, augmentation_key, build_augmentation, get_base, head_layers

log = module_logger(__name__)

# Missing feature vectors from which converting the extractor to LiteRT pays for itself (see litert_extractor).
LITERT_MIN_IMAGES = 600

# A temporary file older than this was left by a training that died mid-write (kill -9, a lost machine): no write
# takes an hour, so one that old is swept when a cache is opened; younger ones may be another training's.
ABANDONED_AFTER_S = 3600


# Bumped whenever decoding gives some photo other pixels (imaging.py, pixel_modes.py, deep_colour.py): vectors
# cached from the old pixels are misses then. 12-bit data in 16-bit colour files decoded near black before
# 2026-12-07, and a cache filled then trained on those near-black frames after the fix.
DECODING = "2026-12-07"


def base_fingerprint(base: Any, image_size: int) -> str:
    """Changes whenever the base's weights, width, input size or pooled layers change, or decoding does."""
    digest = hashlib.sha256(f"size={image_size};decoding={DECODING}".encode())
    if len(base.outputs) > 1:  # earlier layers pooled beside the last (one output keeps its old fingerprints)
        digest.update(f"outputs={','.join(base.output_names)}".encode())
    for weights in base.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """``<directory>/<base fingerprint>/<sha[:2]>/<sha>-v<view>[-<augmentation>].npy`` files of float32 vectors.

    View 0 is the plain image; ``augmentation`` (``augmentation_key``) names what the augmented views were drawn
    with, so that a recipe with another augmentation never trains on them.
    """

    def __init__(self, directory: Path, fingerprint: str, augmentation: str = "") -> None:
        self.root = Path(directory) / fingerprint
        self.augmentation = augmentation
        self.unwritable = False  # warned once: a write failed
        self._sweep_abandoned_writes()

    def _sweep_abandoned_writes(self) -> None:
        now = time.time()
        for leftover in [*self.root.glob(".tmp-*"), *self.root.glob("*/.tmp-*")]:  # the extractor's, vectors'
            with contextlib.suppress(OSError):  # gone already (another training swept it), or not ours to remove
                if now - leftover.stat().st_mtime > ABANDONED_AFTER_S:
                    leftover.unlink()

    def _path(self, sha256: str, view: int) -> Path:
        suffix = f"-{self.augmentation}" if view and self.augmentation else ""
        return self.root / sha256[:2] / f"{sha256}-v{view}{suffix}.npy"

    def get(self, sha256: str, view: int) -> np.ndarray | None:
        path = self._path(sha256, view)
        try:
            return np.asarray(np.load(path))
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError):  # damaged (EOFError: empty, a crash before the data reached disk)
            path.unlink(missing_ok=True)  # computed and written again, instead of failing every later training
            return None

    def put(self, sha256: str, view: int, features: np.ndarray) -> None:
        """Keep a vector; a cache that cannot take it (a full disk, no permission) is warned of once and skipped:
        a cache is a shortcut, and a full one failed every retry of a retraining with a bare OSError."""
        path = self._path(sha256, view)
        temporary = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")  # trainings may share a cache
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                np.save(handle, features.astype(np.float32))
                handle.flush()
                os.fsync(handle.fileno())  # on disk before its name is: a crash must not leave an empty vector
            temporary.replace(path)
        except OSError as error:
            if not self.unwritable:
                log.warning("cannot write to the feature cache %s (%s): features are computed without it; free "
                            "space there or point CRACK_MODEL_CACHE elsewhere", self.root, error)  # fmt: skip
            self.unwritable = True
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)  # a failed write (disk full) leaves nothing behind

    @property
    def extractor_path(self) -> Path:
        """The extractor converted to LiteRT, kept beside the features it computes (same fingerprint)."""
        return self.root / "extractor_fp32.tflite"


def litert_extractor(extractor: Any, cache: FeatureCache, missing: int) -> Any | None:
    """The extractor on LiteRT fp32 (XNNPACK), or None to stay on Keras.

    On 2 CPU cores LiteRT computes MobileNetV2's features with about a third of Keras's CPU time per
    image (measured: 16.6 vs 51.4 ms under load, 418 vs 187 images/s alone); converting costs about
    as much as 400-550 images on Keras. So it is used when the converted model is already in the
    cache, or when at least ``LITERT_MIN_IMAGES`` vectors are missing; features differ from Keras's by
    about 4e-6 of their scale.
    """
    path = cache.extractor_path
    if not path.is_file():
        if missing < LITERT_MIN_IMAGES:
            return None
        import tensorflow as tf

        try:
            converted = tf.lite.TFLiteConverter.from_keras_model(extractor).convert()
        except Exception as error:  # the Keras path computes the same features, only slower
            log.warning("cannot convert the feature extractor to LiteRT (%s); computing features on Keras", error)
            return None
        temporary = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")  # two trainings may share a cache
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(converted)
            temporary.replace(path)
        except OSError as error:  # a full cache disk: features on Keras, as a cache that cannot take vectors
            log.warning("cannot write the LiteRT feature extractor to %s (%s); computing features on Keras", path,
                        error)  # fmt: skip
            return None
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)  # a failed write leaves nothing behind
    try:
        return LiteRTRuntime(path, "litert-fp32")
    except Exception as error:  # a damaged file: the Keras path computes the same features
        log.warning("cannot load the cached LiteRT feature extractor %s (%s); computing features on Keras", path, error)
        path.unlink(missing_ok=True)  # converted again next time
        return None


def feature_extractor(classifier: Any) -> Any:
    """Pixels -> pooled base features: the classifier up to (and including) global pooling."""
    import keras

    return keras.Model(classifier.input, classifier.get_layer("pool").output, name="feature_extractor")


def cached_features(
    images: Sequence[LabeledImage],
    views: int,
    extractor: Any,
    augmentation: Any,
    cache: FeatureCache,
    data_config: DataConfig,
) -> tuple[np.ndarray, int]:
    """Features (views, images, dims) for every image and view; returns (features, newly computed).

    What the cache lacks is computed image by image: each image is decoded once for all its missing
    views (on threads: Pillow decodes outside the GIL), the augmented copies of a batch are drawn in
    one call, batches keep one shape (a new one would retrace the extractor), and the cache files are
    written by a thread of their own while the next batch runs through the base.
    """
    dims = int(extractor.output_shape[-1])
    features = np.zeros((views, len(images), dims), dtype=np.float32)
    missing: dict[int, list[int]] = {}  # image index -> views to compute
    for view in range(views):
        for index, image in enumerate(images):
            found = cache.get(image.sha256, view)
            if found is None or found.shape != (dims,):
                missing.setdefault(index, []).append(view)
            else:
                features[view, index] = found
    computed = sum(len(wanted) for wanted in missing.values())
    if not computed:
        return features, 0
    size, batch_size = data_config.image_size, data_config.batch_size
    runtime = litert_extractor(extractor, cache, computed)
    predict = extractor.predict_on_batch if runtime is None else runtime.predict
    rows: list[tuple[int, int]] = []  # (view, image index) of each row of the batch being filled
    pixels = np.zeros((batch_size, size, size, 3), dtype=np.float32)

    def decode(index: int) -> tuple[int, np.ndarray]:
        return index, decode_to_array(read_labeled(images[index]), size)

    def store(entries: list[tuple[str, int, np.ndarray]]) -> None:
        for sha256, view, vector in entries:
            cache.put(sha256, view, vector)

    with ThreadPoolExecutor(1, thread_name_prefix="feature-cache") as writer:
        pending: list[Future[None]] = []

        def run_batch() -> None:
            augmented = np.array([view > 0 for view, _ in rows] + [False] * (batch_size - len(rows)))
            if augmented.any():
                pixels[augmented] = np.asarray(augmentation(pixels[augmented], training=True))
            output = np.asarray(predict(pixels))
            for row, (view, index) in enumerate(rows):
                features[view, index] = output[row]
            pending.append(writer.submit(store, [(images[index].sha256, view, output[row])
                                                 for row, (view, index) in enumerate(rows)]))  # fmt: skip
            rows.clear()

        decoded = map_bounded(decode, list(missing), workers=os.cpu_count() or 1, thread_name_prefix="features")
        with contextlib.closing(decoded):  # a failed batch stops the decoding threads now, not at a collection
            for index, image_pixels in decoded:
                for view in missing[index]:
                    pixels[len(rows)] = image_pixels
                    rows.append((view, index))
                    if len(rows) == batch_size:
                        run_batch()
        if rows:
            run_batch()
        for future in pending:
            future.result()  # a fault of ours while caching is an error (a cache that cannot be written is warned of)
    return features, computed


def fit_head_on_features(
    classifier: Any,
    train: Sequence[LabeledImage],
    validation: Sequence[LabeledImage],
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    cache_dir: Path,
    callbacks: list[Any],
    *,
    augmented_views: int = 1,
    verbose: int = 2,
    train_weights: np.ndarray | None = None,
    validation_weights: np.ndarray | None = None,
    regularizers: Mapping[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Train the classifier's head on cached base features, then put the head into the classifier.

    The head (dropout, an optional hidden ReLU layer, dense softmax: ``add_head``) is exactly the
    classifier's own, so the trained model is the same network as with uncached training; each
    epoch draws one of the cached views
    (the plain image or one of ``augmented_views`` augmented copies) per image. ``train_weights``
    and ``validation_weights`` (one per image, e.g. ``balance_weights``) weight the loss. The head starts
    from the classifier's head weights; ``regularizers`` (kernel regularizers by layer name, e.g. the pull
    toward the champion's head of warm_start.py) join its loss.
    """
    import keras
    import tensorflow as tf

    cache = FeatureCache(cache_dir, base_fingerprint(get_base(classifier), data_config.image_size),
                         augmentation_key(model_config))  # fmt: skip
    extractor = feature_extractor(classifier)
    augmentation = build_augmentation(model_config, seed=data_config.seed)
    views = 1 + (augmented_views if model_config.augment else 0)
    train_features, computed = cached_features(train, views, extractor, augmentation, cache, data_config)
    validation_features, computed_validation = cached_features(
        validation, 1, extractor, augmentation, cache, data_config
    )
    log.info(
        "feature cache %s: computed %d, reused %d feature vectors",
        cache.root, computed + computed_validation,
        train_features.shape[0] * train_features.shape[1] + len(validation) - computed - computed_validation,
    )  # fmt: skip

    classes = len(data_config.class_names)
    train_labels = tf.one_hot(label_indices(train, data_config.class_names), classes)
    validation_labels = tf.one_hot(label_indices(validation, data_config.class_names), classes)
    per_image = np.transpose(train_features, (1, 0, 2))  # (images, views, dims)
    seed = data_config.seed
    train_weights = np.ones(len(train), np.float32) if train_weights is None else np.asarray(train_weights, np.float32)
    validation_weights = (
        np.ones(len(validation), np.float32)
        if validation_weights is None
        else np.asarray(validation_weights, np.float32)
    )

    def pick_view(stack: tf.Tensor, label: tf.Tensor, weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return stack[tf.random.uniform([], maxval=views, dtype=tf.int32)], label, weight

    train_data = (
        tf.data.Dataset.from_tensor_slices((per_image, train_labels, train_weights))
        .shuffle(len(train), seed=seed, reshuffle_each_iteration=True)
        .map(pick_view)
        .batch(data_config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation_data = tf.data.Dataset.from_tensor_slices(
        (validation_features[0], validation_labels, validation_weights)
    ).batch(data_config.batch_size)
    inputs = keras.Input(shape=(train_features.shape[-1],), name="pooled_features")
    head = keras.Model(inputs, add_head(inputs, classes, model_config, regularizers), name="crack_head")
    copy_head(classifier, head)  # the classifier's initial weights: same start as uncached training

    head_callbacks = classifier_checkpoints(callbacks, classifier)
    history = compile_and_fit(head, train_data, validation_data, train_config.epochs, train_config.learning_rate,
                              head_callbacks, verbose, data_config.crack_index,
                              train_config.label_smoothing, train_config.focal_gamma)  # fmt: skip
    copy_head(head, classifier)
    return history


def predict_from_features(
    classifier: Any,
    images: Sequence[LabeledImage],
    data_config: DataConfig,
    model_config: ModelConfig,
    cache_dir: Path,
) -> np.ndarray:
    """The classifier's probabilities from cached plain-image features (same network, no base pass).

    Only valid while the base is the one the cache was filled with (not after fine-tuning: the
    fingerprint would differ and every feature would be recomputed with the new base).
    """
    cache = FeatureCache(cache_dir, base_fingerprint(get_base(classifier), data_config.image_size))
    augmentation = build_augmentation(model_config, seed=data_config.seed)
    features, _ = cached_features(images, 1, feature_extractor(classifier), augmentation, cache, data_config)
    outputs = features[0]
    for layer in head_layers(classifier):  # dropout is the identity when scoring
        outputs = layer(outputs)
    return np.asarray(outputs)


def copy_head(source: Any, destination: Any) -> None:
    """Copy the head's weighted layers (hidden, if any, and the output) from one model to the other."""
    for layer in head_layers(source):
        destination.get_layer(layer.name).set_weights(layer.get_weights())


def classifier_checkpoints(callbacks: Sequence[Any], classifier: Any) -> list[Any]:
    """``callbacks`` for fitting the head, each ModelCheckpoint made to save the full classifier.

    A ModelCheckpoint saves the model being fitted: here the head, which takes feature vectors,
    not pixels, and could not score an image. Wrapped, it saves the classifier with the head's
    weights of that epoch, so ``checkpoints/best.keras`` scores pixels as with uncached training.
    The wrapped checkpoint keeps its own best value, so a fine-tuning phase after this one only
    overwrites the file when it improves on the head's best.
    """
    import keras

    class ClassifierCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self, checkpoint: Any) -> None:
            super().__init__()
            self.checkpoint = checkpoint

        def set_params(self, params: Any) -> None:
            super().set_params(params)
            self.checkpoint.set_params(params)

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            self.checkpoint.set_model(classifier)

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.checkpoint.on_epoch_begin(epoch, logs)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            copy_head(self.model, classifier)
            self.checkpoint.on_epoch_end(epoch, logs)

    return [
        ClassifierCheckpoint(callback) if isinstance(callback, keras.callbacks.ModelCheckpoint) else callback
        for callback in callbacks
    ]
