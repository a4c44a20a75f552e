"""Compile and fit a Keras model with the project's metrics (crack precision and recall beside accuracy)."""

from __future__ import annotations

from typing import Any

from crack_model.data.labeled import dataset_errors


def compile_and_fit(
    model: Any,
    train: Any,
    validation: Any,
    epochs: int,
    learning_rate: float,
    callbacks: list[Any],
    verbose: int,
    crack_index: int,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
) -> dict[str, list[float]]:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=training_loss(label_smoothing, focal_gamma),
        metrics=[
            "accuracy",
            keras.metrics.Precision(class_id=crack_index, name="crack_precision"),
            keras.metrics.Recall(class_id=crack_index, name="crack_recall"),
        ],
    )
    with dataset_errors():  # a photo that cannot be read again: one line naming it, not a TensorFlow traceback
        history = model.fit(
            train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False
        )  # the tf.data pipeline shuffles
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def training_loss(label_smoothing: float, focal_gamma: float) -> Any:
    """Cross-entropy, or with ``focal_gamma`` > 0 focal cross-entropy (Lin et al. 2018).

    Focal loss scales each image's cross-entropy by ``(1 - p_true) ** gamma``: images the head
    already gets right weigh less, the few it gets wrong (stains, faint cracks) more. ``alpha`` is 1:
    classes and slices are weighted by balance_weights, not by the loss.
    """
    import keras

    if focal_gamma > 0:
        return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=focal_gamma, label_smoothing=label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
