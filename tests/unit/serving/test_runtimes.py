"""LiteRT runtimes: uint8 pixels go to the int8 model as they are, with the same result as quantizing them."""

from __future__ import annotations

import numpy as np
import pytest

from crack_model.serving.runtimes import LiteRTRuntime, export_litert

SIZE = 16


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """A tiny pixels -> softmax network exported to int8, calibrated on pixels spanning 0..255 as real photos do."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(scaled))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(features))
    rng = np.random.default_rng(0)

    def calibration():
        for _ in range(8):
            yield rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)

    return export_litert(model, tmp_path_factory.mktemp("int8"), representative_images=calibration)["litert-int8"]


def test_uint8_pixels_skip_quantization_with_the_same_probabilities(int8_model):
    """Raw-pixel input (scale 1, zero point 0): uint8 pixels give exactly what float pixels quantized give."""
    runtime = LiteRTRuntime(int8_model, "litert-int8", threads=1)
    assert runtime._input["quantization"] == (1.0, 0)
    pixels = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    direct = runtime.predict(pixels)
    quantized = runtime.predict(pixels.astype(np.float32))  # float pixels take the quantizing path
    assert direct.shape == (5, 2) and np.array_equal(direct, quantized)
    assert np.allclose(direct.sum(axis=1), 1.0, atol=0.02)
