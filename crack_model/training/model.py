"""The network: MobileNetV2 transfer learning, built with the Keras functional API.

The classifier takes raw RGB pixels (0..255): MobileNetV2's preprocessing is a layer
inside it, so a saved model cannot be fed wrongly. Augmentation layers wrap the
classifier only while training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crack_model.core.config import DataConfig, ModelConfig
from crack_model.core.errors import CrackModelError

if TYPE_CHECKING:
    import keras

BASE_NAME = "mobilenet_v2_base"
HIDDEN_LAYER = "hidden"
OUTPUT_LAYER = "class_probabilities"


def resolve_base_weights(weights: str | None) -> str | None:
    """Map the weights option to what Keras expects: "imagenet", a file path, or None."""
    if weights is None or str(weights).lower() in ("none", "random"):  # "" is no choice: a variable set empty
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        msg = (
            f"weights file {path} does not exist: pass 'imagenet' (download), 'none' (random init) "
            "or the path of a MobileNetV2 no-top .h5 weights file"
        )
        raise CrackModelError(msg)
    return str(path)


def build_base(data_config: DataConfig, model_config: ModelConfig) -> keras.Model:
    """MobileNetV2 without its top, frozen."""
    import keras

    weights = resolve_base_weights(model_config.weights)
    try:
        base = keras.applications.MobileNetV2(
            input_shape=(data_config.image_size, data_config.image_size, 3),
            alpha=model_config.alpha,
            include_top=False,
            weights=weights,
            name=BASE_NAME,
        )
    except Exception as error:
        if weights == "imagenet":  # offline, Keras's download raises a bare Exception ("URL fetch failure ...")
            msg = (
                f"could not get the ImageNet weights for MobileNetV2 ({str(error).splitlines()[0][:200]}); "
                "offline, pass --weights PATH to a local copy of the no-top .h5 file"
            )
            raise CrackModelError(msg) from None
        if weights is not None and isinstance(error, ValueError | OSError):
            msg = (
                f"weights file {weights} does not fit MobileNetV2 (alpha={model_config.alpha}, no top): "
                f"{str(error).splitlines()[0][:200]}"
            )
            raise CrackModelError(msg) from None
        raise
    base.trainable = False
    return with_pooled_layers(base, model_config.pooled_layers)


def with_pooled_layers(base: keras.Model, pooled_layers: tuple[str, ...]) -> keras.Model:
    """The base with the outputs of ``pooled_layers`` before its last layer's (itself when there are none)."""
    import keras

    if not pooled_layers:
        return base
    names = [layer.name for layer in base.layers]
    if names[-1] in pooled_layers:
        raise CrackModelError(f"pooled layer {names[-1]} is the base's last layer, which the head always sees")
    unknown = [name for name in pooled_layers if name not in names]
    if unknown:
        msg = (
            f"pooled layer(s) {unknown} are not layers of MobileNetV2: pass names such as block_6_expand_relu "
            "or block_13_expand_relu (keras.applications.MobileNetV2().summary() lists them)"
        )
        raise CrackModelError(msg)
    outputs = [base.get_layer(name).output for name in pooled_layers] + [base.output]
    # The same layers and weights under the same name: fine-tuning and the feature cache find it as the base.
    features = keras.Model(base.input, outputs, name=BASE_NAME)
    features.trainable = False
    return features


def check_pooled_layers(model_config: ModelConfig) -> None:
    """Raise CrackModelError for a pooled layer the base does not have, at once (an untrained base, 32 px)."""
    if model_config.pooled_layers:
        import keras

        base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=model_config.alpha, include_top=False,
                                              weights=None)  # fmt: skip
        with_pooled_layers(base, model_config.pooled_layers)


def build_classifier(data_config: DataConfig, model_config: ModelConfig) -> keras.Model:
    """Pixels (0..255) -> MobileNetV2 preprocessing -> frozen base -> pooled -> softmax over classes."""
    import keras
    from keras import layers

    size = data_config.image_size
    base = build_base(data_config, model_config)
    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    # MobileNetV2 expects [-1, 1]; as a layer, preprocessing travels with the saved model.
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_v2_preprocess")(inputs)
    # training=False keeps BatchNorm in inference mode even when the base is fine-tuned.
    x = base(x, training=False)
    if model_config.pooled_layers:  # each layer pooled, then side by side (the last layer's last)
        names = [*model_config.pooled_layers, "last"]
        pooled = [layers.GlobalAveragePooling2D(name=f"pool_{name}")(out) for name, out in zip(names, x, strict=True)]
        x = layers.Concatenate(name="pool")(pooled)
    else:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = add_head(x, len(data_config.class_names), model_config)
    return keras.Model(inputs, outputs, name="crack_classifier")


def add_head(
    pooled: keras.KerasTensor, classes: int, model_config: ModelConfig, regularizers: Mapping[str, Any] | None = None
) -> keras.KerasTensor:
    """Pooled features -> dropout -> [hidden ReLU layer -> dropout] -> softmax over classes.

    Shared by the classifier and the head trained on cached features, so both are one network.
    ``regularizers``: a kernel regularizer by layer name (``HIDDEN_LAYER``, ``OUTPUT_LAYER``), for
    the head trained on cached features (warm_start.py); the saved classifier has none.
    """
    from keras import layers

    regularizers = regularizers or {}
    x = layers.Dropout(model_config.dropout, name="dropout")(pooled)
    if model_config.hidden_units:
        x = layers.Dense(model_config.hidden_units, activation="relu", name=HIDDEN_LAYER,
                         kernel_regularizer=regularizers.get(HIDDEN_LAYER))(x)  # fmt: skip
        x = layers.Dropout(model_config.dropout, name="hidden_dropout")(x)
    return layers.Dense(classes, activation="softmax", name=OUTPUT_LAYER,
                        kernel_regularizer=regularizers.get(OUTPUT_LAYER))(x)  # fmt: skip


def head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The head's layers with weights, input side first (the dropout layers have none)."""
    names = [layer.name for layer in model.layers]
    return [model.get_layer(name) for name in (HIDDEN_LAYER, OUTPUT_LAYER) if name in names]


def build_augmentation(model_config: ModelConfig, seed: int | None = None) -> keras.Sequential:
    """Random flips and rotations (concrete has no up or left), zoom (no fixed distance), brightness and contrast."""
    import keras
    from keras import layers

    steps = [
        layers.RandomFlip("horizontal_and_vertical", seed=seed),
        layers.RandomRotation(model_config.rotation_factor, fill_mode="reflect", seed=seed),
    ]
    if model_config.zoom_factor > 0:
        steps.append(layers.RandomZoom(model_config.zoom_factor, fill_mode="reflect", seed=seed))
    if model_config.brightness_factor > 0:  # on 0..255 pixels, MobileNetV2's preprocessing comes after
        steps.append(layers.RandomBrightness(model_config.brightness_factor, seed=seed))
    if model_config.contrast_factor > 0:
        steps.append(layers.RandomContrast(model_config.contrast_factor, seed=seed))
    return keras.Sequential(steps, name="augmentation")


def augmentation_key(model_config: ModelConfig) -> str:
    """Names what ``build_augmentation`` draws, so that cached augmented views of one never stand in for another's."""
    config = model_config
    return (f"rot{config.rotation_factor:g}-zoom{config.zoom_factor:g}-bri{config.brightness_factor:g}"
            f"-con{config.contrast_factor:g}")  # fmt: skip


def build_training_model(classifier: keras.Model, augmentation: keras.Model | None) -> keras.Model:
    """The classifier behind augmentation layers (which are inactive outside training)."""
    import keras

    if augmentation is None:
        return classifier
    inputs = keras.Input(shape=classifier.input_shape[1:], name="pixels")
    outputs = classifier(augmentation(inputs))
    return keras.Model(inputs, outputs, name="crack_classifier_training")


def get_base(classifier: keras.Model) -> keras.Model:
    return classifier.get_layer(BASE_NAME)


def unfreeze_top_layers(classifier: keras.Model, count: int) -> int:
    """Make the top ``count`` base layers trainable (BatchNorm stays frozen); return how many."""
    from keras import layers

    base = get_base(classifier)
    base.trainable = True
    unfrozen = 0
    for index, layer in enumerate(base.layers):
        in_top = index >= len(base.layers) - count
        layer.trainable = in_top and not isinstance(layer, layers.BatchNormalization)
        unfrozen += int(layer.trainable)
    return unfrozen
