"""Scoring runtimes: the Keras model, and LiteRT exports of it (fp32 and full-integer int8).

Each runtime maps a float32 batch of raw pixels (N, S, S, 3) in 0..255 to class
probabilities (N, classes). The gate (registry) decides which exports may serve; the
scorer uses the fastest approved one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import RUNTIME_FILES

log = module_logger(__name__)


class Runtime(Protocol):
    name: str
    fixed_batch: bool
    preferred_batch: int

    def predict(self, pixels: np.ndarray) -> np.ndarray: ...


class KerasRuntime:
    name = "keras"
    fixed_batch = True  # a new batch shape retraces the predict function: pad the last batch
    preferred_batch = 64  # per-call overhead is high: big batches

    def __init__(self, model: Any) -> None:
        self.model = model

    @classmethod
    def load(cls, path: Path) -> KerasRuntime:
        import keras

        try:
            return cls(keras.models.load_model(path, compile=False))
        except (ValueError, OSError) as error:  # Keras says "File not found" for a file cut short, too
            msg = f"cannot load Keras model {path} ({str(error).splitlines()[0][:200]}): is the file whole?"
            raise CrackModelError(msg) from None

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(pixels.astype(np.float32, copy=False)))


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older installs: the interpreter inside TensorFlow
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter


class LiteRTRuntime:
    """A ``.tflite`` model on the LiteRT interpreter (XNNPACK on CPU)."""

    fixed_batch = False  # resizing the input for a short last batch is cheaper than scoring padding
    # Small batches keep decoding and inference overlapping (measured: 16 beats 64 by ~10%).
    preferred_batch = 16

    def __init__(self, path: Path, name: str, threads: int | None = None) -> None:
        self.name = name
        self.path = Path(path)
        if not self.path.is_file():
            raise CrackModelError(f"LiteRT model {self.path} does not exist")
        self.threads = threads or os.cpu_count() or 1
        try:
            self._interpreter = _interpreter_class()(model_path=str(self.path), num_threads=self.threads)
        except (ValueError, RuntimeError) as error:  # empty or cut short: "not a valid Flatbuffer", "mmap of size 0"
            msg = (f"cannot load LiteRT model {self.path} ({str(error).splitlines()[0][:200]}): the file is damaged; "
                   "export the model again, or restore the version's file")  # fmt: skip
            raise CrackModelError(msg) from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = 0

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            size = self._input["shape"][1:]
            self._interpreter.resize_tensor_input(self._input["index"], [batch, *size])
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
            self._batch = batch

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        self._resize(len(pixels))
        dtype = self._input["dtype"]
        if dtype == np.float32:
            values = pixels.astype(np.float32, copy=False)
        elif pixels.dtype == dtype and _is_identity(self._input["quantization"]):
            # Our int8 export takes raw uint8 pixels (scale 1, zero point 0): quantizing them would give the
            # same bytes after ~1 ms of float64 arithmetic per image, more than a third of the inference.
            values = np.ascontiguousarray(pixels)
        else:
            scale, zero_point = self._input["quantization"]
            info = np.iinfo(dtype)
            values = np.clip(np.round(pixels / scale + zero_point), info.min, info.max).astype(dtype)
        self._interpreter.set_tensor(self._input["index"], values)
        self._interpreter.invoke()
        output = self._interpreter.get_tensor(self._output["index"])
        if self._output["dtype"] != np.float32:
            scale, zero_point = self._output["quantization"]
            output = (output.astype(np.float32) - zero_point) * scale
        return np.asarray(output, dtype=np.float32)


def copies(runtime: Runtime, count: int) -> list[Runtime]:
    """Runtimes that can score batches side by side: ``count`` single-threaded LiteRT interpreters of the
    same model file (each holds its own tensors), or the runtime itself for Keras, which spreads one
    batch over the cores by itself and gains nothing from copies."""
    if count > 1 and isinstance(runtime, LiteRTRuntime):
        return [LiteRTRuntime(runtime.path, runtime.name, threads=1) for _ in range(count)]
    return [runtime]


def _is_identity(quantization: tuple[float, int]) -> bool:
    scale, zero_point = quantization
    return float(scale) == 1.0 and int(zero_point) == 0


def load_runtime(model_dir: Path, name: str, threads: int | None = None) -> Runtime:
    path = Path(model_dir) / RUNTIME_FILES[name]
    if name == "keras":
        return KerasRuntime.load(path)
    return LiteRTRuntime(path, name, threads)


def export_litert(
    keras_model: Any,
    output_dir: Path,
    *,
    representative_images: Callable[[], Iterable[np.ndarray]] | None = None,
) -> dict[str, Path]:
    """Export LiteRT fp32 and (given calibration images) full-integer int8 models.

    ``representative_images`` yields uint8 images (S, S, 3) from the training data; int8
    calibration on real photos is what keeps its accuracy close to fp32.
    """
    import tempfile

    import tensorflow as tf

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory(prefix="crack-model-export-") as saved_model:
        # A SavedModel freezes the variables; converting a live Keras function would not.
        keras_model.export(saved_model, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        written["litert-fp32"] = output_dir / RUNTIME_FILES["litert-fp32"]
        written["litert-fp32"].write_bytes(converter.convert())

        if representative_images is not None:

            def dataset() -> Iterable[list[np.ndarray]]:
                for image in representative_images():
                    yield [np.asarray(image, dtype=np.float32)[None]]

            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            # uint8 in: raw pixels need no scaling; float out: probabilities as usual.
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.float32
            written["litert-int8"] = output_dir / RUNTIME_FILES["litert-int8"]
            written["litert-int8"].write_bytes(converter.convert())
    return written
