"""Train a crack classifier on a labeled set, choose its threshold, evaluate it, save it all."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import decode_to_array
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import MODEL_NAME, RUNTIME_FILES, SPLIT_NAME, ModelCard, git_commit, new_version
from crack_model.core.tiling import TileConfig
from crack_model.data.balance import balance_weights, cell_shares
from crack_model.data.label_conflicts import leave_out_label_conflicts
from crack_model.data.labeled import (
    LabeledImage,
    Split,
    dataset_errors,
    load_labeled,
    make_dataset,
    read_labeled,
    split_images,
    write_split_manifest,
)
from crack_model.evaluation.metrics import choose_slice_threshold, compute_metrics, misclassified
from crack_model.evaluation.mosaics import MosaicConfig
from crack_model.serving.photo_decision import PhotoRule
from crack_model.training.export import export_model
from crack_model.training.features import fit_head_on_features, predict_from_features
from crack_model.training.fitting import compile_and_fit
from crack_model.training.model import build_augmentation, build_classifier, build_training_model, unfreeze_top_layers
from crack_model.training.output_folder import prepare_output_folder
from crack_model.training.patch_confirmation import band_flip_means, choose_patch_confirmation, confirmed_labels
from crack_model.training.photo_rule import DEFAULT_MOSAICS, fit_photo_rule
from crack_model.training.photo_tiles import PhotoTiles
from crack_model.training.plots import save_confusion_matrix, save_image_grid, save_training_curves
from crack_model.training.seams import seam_examples
from crack_model.training.warm_start import check_start, starting_point, trained_images

log = module_logger(__name__)


@dataclass
class TrainingRun:
    output_dir: Path
    card: ModelCard
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    artifacts: dict[str, Path]


def set_seeds(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow at once


def predict_probabilities(model: Any, images: list[LabeledImage], config: DataConfig) -> np.ndarray:
    dataset = make_dataset(images, config, cache=False).map(lambda pixels, _label: pixels)
    with dataset_errors():
        return np.asarray(model.predict(dataset, verbose=0))


def train(
    data_source: str | Path,
    output_dir: str | Path,
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    skip_unreadable: bool = False,
    verbose: int = 2,
    progress: bool = False,
    split: Split | None = None,
    export_runtimes: bool = True,
    feature_cache_dir: str | Path | None = None,
    augmented_views: int = 1,
    photo_mosaics: MosaicConfig | None = DEFAULT_MOSAICS,
    start_from: str | Path | None = None,
    start_label: str | None = None,
) -> TrainingRun:
    """Train, pick the threshold on validation, evaluate on test, and save everything.

    With ``feature_cache_dir``, the frozen base's features are cached per image (the plain
    image and ``augmented_views`` augmented copies) and only the head trains on them: the
    same network, far less work (see features.py); fine-tuning still runs the full model.

    With ``start_from`` (a trained model's folder, the champion when retraining), the head starts from
    that model's head (pulled toward it if ``train_config.anchor_weight`` > 0; warm_start.py), if the
    two fit; metrics.json's ``started_from`` says whether it did and why not (``start_label`` names the
    model there). The pull needs ``feature_cache_dir``: without it the run only starts from the head.

    Photos cut into several tiles get a photo rule chosen on mosaics of validation patches and
    measured on mosaics of test patches (photo_rule.py, ``photo_mosaics``; None: no photo rule).
    A labeled image that scoring tiles trains as its tiles, a crack photo as those a first fit
    scores highest, and is evaluated by its highest tile (photo_tiles.py).

    Writes to ``output_dir``: model.keras, model.json (card), history.json, metrics.json,
    LiteRT exports (model_fp32.tflite, model_int8.tflite) unless ``export_runtimes`` is off,
    split.csv, checkpoints/best.keras, tensorboard/, and PNGs (examples, augmentation,
    training curves, confusion matrix).
    """
    data_config = data_config or DataConfig()
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    output_dir = Path(output_dir)
    if start_from is not None:
        check_start(start_from, output_dir)  # a wrong path fails now, not after the split and the figures
    prepare_output_folder(output_dir, data_source, data_config.class_names)
    set_seeds(data_config.seed)

    seen: frozenset[str] = frozenset()  # what the head's start trained on: kept in train (warm_start.py)
    if split is None:
        images = load_labeled(data_source, data_config, skip_unreadable=skip_unreadable, progress=progress)
        images = leave_out_label_conflicts(images)
        seen = trained_images(start_from) if start_from is not None else seen
        split = split_images(images, data_config, keep_in_train=seen)
    for name, part in split.parts().items():
        if name != "test" and not part:
            msg = (
                f"the {name} split of {data_source} is empty: "
                "add images (at least ~10 per class) or change the fractions"
            )
            if kept := sum(image.sha256 in seen for images in split.parts().values() for image in images):
                msg += f"; {kept} of its images stay in train because {start_from} trained on them: or train afresh"
            raise CrackModelError(msg)
    log.info("split: %d train, %d validation, %d test", len(split.train), len(split.validation), len(split.test))
    artifacts: dict[str, Path] = {"split": output_dir / SPLIT_NAME}
    write_split_manifest(split, artifacts["split"])
    artifacts.update(save_example_figures(split.train, data_config, model_config, output_dir))

    classifier = build_classifier(data_config, model_config)
    augmentation = build_augmentation(model_config, seed=data_config.seed) if model_config.augment else None
    training_model = build_training_model(classifier, augmentation)
    crack_class, crack_index = data_config.crack_class, data_config.crack_index
    start = None
    if start_from is not None:
        pull = train_config.anchor_weight if feature_cache_dir is not None else 0.0  # the record says what applies
        if pull != train_config.anchor_weight:
            log.warning("the pull toward the starting head needs the feature cache; this run only starts from it")
        start = starting_point(start_from, classifier, list(data_config.class_names), data_config.image_size,
                               pull, label=start_label)  # fmt: skip
    regularizers = start.anchor.regularizers() if start is not None and start.anchor is not None else None

    def fit(fit_images: list[LabeledImage], validation: list[LabeledImage], *, fine_tune: bool) -> dict[str, Any]:
        return fit_classifier(classifier, training_model, fit_images, validation, data_config, model_config,
                              train_config, output_dir, feature_cache_dir=feature_cache_dir, verbose=verbose,
                              augmented_views=augmented_views, fine_tune=fine_tune,
                              regularizers=regularizers)  # fmt: skip

    def predict_tiles(tiles: np.ndarray) -> np.ndarray:
        return np.asarray(classifier.predict_on_batch(tiles.astype(np.float32)))

    # Seam examples and photo tiles live only in this folder (seams.py, photo_tiles.py); split.csv has the real split.
    with tempfile.TemporaryDirectory(prefix="crack-training-") as scratch:
        photos = PhotoTiles(Path(scratch) / "tiles", TileConfig(), data_config.image_size, data_config.crack_class)
        # Seams are cut across patches' borders; a photo's tiles already show its own.
        patches = [image for image in split.train if not photos.is_photo(image)]
        seams = seam_examples(patches, train_config.seam_share, photos.tiles.tile_size, Path(scratch) / "seams",
                              crack_class=crack_class, seed=data_config.seed)  # fmt: skip
        first_fit_epochs = 0
        if photos.crack_photos(split.train):  # which tiles of a crack photo show its crack: a first fit tells
            first = fit(photos.examples(split.train) + seams, photos.examples(split.validation), fine_tune=False)
            first_fit_epochs = len(first.get("loss", []))
            labeled_photos = [image for image in split.train + split.validation if photos.is_photo(image)]
            photos.choose(labeled_photos, predict_tiles, crack_index, train_config.default_threshold)
        calibration = photos.examples(split.train)
        validation_examples = photos.examples(split.validation, unchosen_cracks=False)
        history = fit(calibration + seams, validation_examples, fine_tune=True)  # from the first fit's weights

        model_path = output_dir / MODEL_NAME
        classifier.save(model_path)
        artifacts["model"] = model_path
        artifacts["history"] = output_dir / "history.json"
        artifacts["history"].write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
        for path in save_training_curves(history, output_dir):
            artifacts[path.stem] = path

        def probabilities_of(images: list[LabeledImage]) -> np.ndarray:
            """Class probabilities per image; a photo's are its highest tile's, as scoring labels it."""
            single = [index for index, image in enumerate(images) if not photos.is_photo(image)]
            result = np.zeros((len(images), len(data_config.class_names)), np.float32)
            if single and feature_cache_dir is not None and train_config.fine_tune_layers == 0:  # no base pass
                result[single] = predict_from_features(classifier, [images[i] for i in single], data_config,
                                                       model_config, Path(feature_cache_dir))  # fmt: skip
            elif single:
                result[single] = predict_probabilities(classifier, [images[i] for i in single], data_config)
            for index in sorted(set(range(len(images))) - set(single)):
                result[index] = photos.highest_tile(images[index], predict_tiles, crack_index)
            return result

        validation_probabilities = probabilities_of(split.validation)
        is_crack = [image.label == data_config.crack_class for image in split.validation]
        threshold, slice_thresholds = choose_slice_threshold(
            is_crack,
            validation_probabilities[:, data_config.crack_index],
            [image.slice for image in split.validation],
            train_config.target_recall,
            ceiling=train_config.default_threshold,
            min_slice_images=train_config.min_slice_images,
        )
        log.info("threshold %.4f (each validation slice alone would need %s)", threshold, slice_thresholds)

        def flip_means(images: list[LabeledImage], probabilities: np.ndarray) -> np.ndarray:
            return band_flip_means(classifier, images, probabilities[:, crack_index], threshold, data_config,
                                   patches=[not photos.is_photo(image) for image in images])  # fmt: skip

        validation_means = flip_means(split.validation, validation_probabilities)
        patch_confirmation = choose_patch_confirmation(is_crack, validation_means, threshold)
        confirm_threshold = patch_confirmation["threshold"]
        card = ModelCard(
            version=new_version(model_path),
            class_names=list(data_config.class_names),
            crack_class=data_config.crack_class,
            image_size=data_config.image_size,
            threshold=threshold,
            alpha=model_config.alpha,
            base_weights=model_config.weights
            if model_config.weights in ("imagenet", "none")
            else Path(model_config.weights).name,
            seed=data_config.seed,
            target_recall=train_config.target_recall,
            git_commit=git_commit(),
            patch_confirm_threshold=confirm_threshold,
        )
        artifacts["card"] = card.save(output_dir)
        config_record = {"data": asdict(data_config), "model": asdict(model_config), "train": asdict(train_config)}
        artifacts["config"] = output_dir / "training_config.json"
        artifacts["config"].write_text(json.dumps(config_record, indent=2, default=str) + "\n", encoding="utf-8")

        def labels_of(probabilities: np.ndarray, means: np.ndarray) -> list[str]:  # patches as scoring labels them
            return confirmed_labels(probabilities, means, threshold, confirm_threshold, data_config.class_names,
                                    data_config.crack_class)  # fmt: skip

        def split_metrics(images: list[LabeledImage], probabilities: np.ndarray, means: np.ndarray) -> dict[str, Any]:
            labels = [image.label for image in images]
            return compute_metrics(labels, probabilities, threshold=threshold, class_names=data_config.class_names,
                                   crack_class=data_config.crack_class,
                                   predicted=labels_of(probabilities, means))  # fmt: skip

        started_from = (
            None if start is None else start.record() | {"kept_in_train": sum(i.sha256 in seen for i in split.train)}
        )
        metrics: dict[str, Any] = {"model_version": card.version, "threshold": threshold,
                                   "slice_thresholds": slice_thresholds,
                                   "patch_confirmation": patch_confirmation, "started_from": started_from}  # fmt: skip
        metrics["validation"] = split_metrics(split.validation, validation_probabilities, validation_means)
        metrics["per_slice"] = {
            "validation": per_slice_metrics(split.validation, validation_probabilities, validation_means, split_metrics)
        }
        if split.test:
            test_probabilities = probabilities_of(split.test)
            test_means = flip_means(split.test, test_probabilities)
            metrics["test"] = split_metrics(split.test, test_probabilities, test_means)
            metrics["test"]["misclassified"] = misclassified(
                split.test, test_probabilities, threshold=threshold, class_names=data_config.class_names,
                crack_class=data_config.crack_class, predicted=labels_of(test_probabilities, test_means),
            )  # fmt: skip
            unconfirmed = split_metrics(split.test, test_probabilities, np.full(len(split.test), np.nan))
            metrics["test"]["without_patch_confirmation"] = {
                key: unconfirmed[key] for key in ("accuracy", "crack_recall", "missed_cracks", "false_alarms")
            }
            metrics["per_slice"]["test"] = per_slice_metrics(split.test, test_probabilities, test_means, split_metrics)
            matrix = metrics["test"]["confusion_matrix"]
            artifacts["confusion_matrix"] = save_confusion_matrix(
                matrix["rows_true_columns_predicted"],
                matrix["labels"],
                output_dir / "confusion_matrix.png",
                title=f"Test split, threshold {threshold:.3f}",
            )
        if export_runtimes:
            checks = export_model(output_dir, calibration, validation_examples)
            metrics["runtime_agreement_on_validation"] = [check.as_dict() for check in checks]
            card = ModelCard.load(output_dir)
            for check in checks:
                artifacts[check.runtime] = output_dir / RUNTIME_FILES[check.runtime]
        # Mosaics are built of patches (a photo is not pasted into one, shrunk to a tile); the validation
        # split's photos join the mosaics as themselves.
        patch_split = Split(
            *([image for image in part if not photos.is_photo(image)] for part in split.parts().values())
        )
        validation_photos = [image for image in split.validation if photos.is_photo(image)]
        metrics["photo_level"] = fit_photo_rule(output_dir, patch_split, photo_mosaics,
                                                labeled_photos=validation_photos)  # fmt: skip
        card = ModelCard.load(output_dir)
        rule = PhotoRule.of(card)  # its figures on the validation and test photos (their tiles scored in Keras)
        metrics["labeled_photos"] = {name: photos.record(part, rule) for name, part in split.parts().items()}
        metrics["labeled_photos"]["first_fit_epochs"] = first_fit_epochs  # history.json has the final fit's
        artifacts["metrics"] = output_dir / "metrics.json"
        artifacts["metrics"].write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        checkpoint = output_dir / "checkpoints" / "best.keras"
        if checkpoint.is_file():  # the best epoch's full classifier (with the feature cache too: see features.py)
            artifacts["checkpoint"] = checkpoint
        artifacts["tensorboard"] = output_dir / "tensorboard"
    return TrainingRun(output_dir, card, metrics, history, artifacts)


def fit_classifier(
    classifier: Any,
    training_model: Any,
    fit_images: list[LabeledImage],
    validation: list[LabeledImage],
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    output_dir: Path,
    *,
    feature_cache_dir: str | Path | None,
    verbose: int,
    augmented_views: int,
    fine_tune: bool,
    regularizers: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Fit the classifier (its head on cached features, or the full network), then fine-tune if asked.

    Classes, then slices within each, are weighted as ``train_config.slice_balance`` says; the best epoch by
    validation loss is kept and saved to ``checkpoints/best.keras``. ``regularizers`` (the pull toward a
    starting head, warm_start.py) apply to the head trained on cached features only.
    """
    import keras

    crack_class, crack_weight = data_config.crack_class, train_config.crack_weight
    train_weights = balance_weights(fit_images, train_config.slice_balance, crack_class=crack_class,
                                    crack_weight=crack_weight)  # fmt: skip
    validation_weights = balance_weights(validation, train_config.slice_balance, crack_class=crack_class,
                                         crack_weight=crack_weight)  # fmt: skip
    log.info("share of the training loss per class/slice: %s", cell_shares(fit_images, train_weights))
    train_data = make_dataset(fit_images, data_config, shuffle=True, weights=train_weights)
    validation_data = make_dataset(validation, data_config, weights=validation_weights)

    checkpoint = output_dir / "checkpoints" / "best.keras"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train_config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True),
        keras.callbacks.TensorBoard(log_dir=str(output_dir / "tensorboard"), update_freq="batch"),
    ]
    if feature_cache_dir is not None:
        history = fit_head_on_features(
            classifier, fit_images, validation, data_config, model_config, train_config,
            Path(feature_cache_dir), callbacks, augmented_views=augmented_views, verbose=verbose,
            train_weights=train_weights, validation_weights=validation_weights, regularizers=regularizers,
        )  # fmt: skip
    else:  # no regularizers here: train() passes none without the cache (the saved classifier must not carry them)
        history = compile_and_fit(
            training_model, train_data, validation_data, train_config.epochs, train_config.learning_rate,
            callbacks, verbose, data_config.crack_index, train_config.label_smoothing, train_config.focal_gamma,
        )  # fmt: skip
    if fine_tune and train_config.fine_tune_layers > 0:
        unfrozen = unfreeze_top_layers(classifier, train_config.fine_tune_layers)
        log.info("fine-tuning %d base layers at learning rate %g", unfrozen, train_config.fine_tune_learning_rate)
        fine = compile_and_fit(
            training_model, train_data, validation_data, train_config.fine_tune_epochs,
            train_config.fine_tune_learning_rate, callbacks, verbose, data_config.crack_index,
            train_config.label_smoothing, train_config.focal_gamma,
        )  # fmt: skip
        history = {name: history.get(name, []) + values for name, values in fine.items()}
    return history


def per_slice_metrics(
    images: list[LabeledImage], probabilities: np.ndarray, means: np.ndarray, measure: Any
) -> dict[str, Any]:
    """Accuracy, crack recall and confusion matrix of each slice (the whole metrics dict is too large to repeat)."""
    report = {}
    for name in sorted({image.slice for image in images}):
        indices = [index for index, image in enumerate(images) if image.slice == name]
        figures = measure([images[index] for index in indices], probabilities[indices], means[indices])
        report[name] = {key: figures[key] for key in ("images", "cracks", "accuracy", "crack_recall", "missed_cracks",
                                                      "false_alarms", "confusion_matrix")}  # fmt: skip
    return report


def save_example_figures(
    images: list[LabeledImage], data_config: DataConfig, model_config: ModelConfig, output_dir: Path, count: int = 12
) -> dict[str, Path]:
    """A grid of example training images, and one image augmented repeatedly."""

    chosen = [images[index] for index in np.linspace(0, len(images) - 1, min(count, len(images))).astype(int)]
    pixels = [decode_to_array(read_labeled(image), data_config.image_size) for image in chosen]
    written = {"examples": save_image_grid(pixels, [image.label for image in chosen], output_dir / "examples.png")}
    augmentation = build_augmentation(model_config, seed=data_config.seed)
    views = [np.asarray(augmentation(pixels[0][None].astype("float32"), training=True)[0]) for _ in range(9)]
    written["augmentation"] = save_image_grid(
        [pixels[0], *views],
        ["original"] + [f"augmented {n}" for n in range(1, 10)],
        output_dir / "augmentation.png",
        columns=5,
    )
    return written
