"""A lever probe: does pooling earlier MobileNetV2 layers beside the last one tell cracks apart better?

The head sees only the last layer's pooled features (7x7 at 224 px). A hairline crack or a small
pit is a detail earlier, finer layers may keep. This computes, once per image of the labeled set,
the pooled outputs of a few layers of the frozen ImageNet base (the plain image, no augmentation),
then cross-validates a logistic regression on each combination with the library's grouped folds
(``--repeats`` seeds), and counts missed cracks, false alarms and which images were wrong.

It measures the features, not the served recipe (no augmented views, seam examples or
confirmation by flips): a combination has to beat the last layer alone here to be worth building.

    python -m bench.multilevel_features --repeats 8

Writes ``bench/results/multilevel-features.json`` and ``.md`` (``--name`` changes the file names).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import SAMPLE, WEIGHTS, write_results

LAYERS = {"b6": "block_6_expand_relu", "b13": "block_13_expand_relu", "b16": "block_16_project", "last": "out_relu"}
# (name, layers, standardize features first, inverse regularization strength)
COMBINATIONS = (
    ("last layer (what the head sees)", ("last",), False, 0.1),
    ("last layer, standardized", ("last",), True, 1.0),
    ("b13 + last, standardized", ("b13", "last"), True, 1.0),
    ("b6 + b13 + last, standardized", ("b6", "b13", "last"), True, 1.0),
    ("b6 + b13 + b16 + last, standardized", ("b6", "b13", "b16", "last"), True, 1.0),
    ("b6 + b13 + last, plain", ("b6", "b13", "last"), False, 0.1),
)


def pooled_features(images: list[Any], size: int) -> dict[str, np.ndarray]:
    """Each layer's global-average-pooled output for every image, through the model's own preprocessing."""
    import keras

    from crack_model.core.imaging import decode_to_array
    from crack_model.data.labeled import read_labeled

    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=str(WEIGHTS))
    pooled = [keras.layers.GlobalAveragePooling2D()(base.get_layer(name).output) for name in LAYERS.values()]
    extractor = keras.Model(base.input, pooled)
    batches: dict[str, list[np.ndarray]] = {key: [] for key in LAYERS}
    for start in range(0, len(images), 64):
        pixels = np.stack([decode_to_array(read_labeled(image), size) for image in images[start : start + 64]])
        outputs = extractor.predict(pixels.astype(np.float32) / 127.5 - 1.0, verbose=0)
        for key, output in zip(LAYERS, outputs, strict=True):
            batches[key].append(output)
    return {key: np.concatenate(parts) for key, parts in batches.items()}


def cross_validate(features: np.ndarray, labels: np.ndarray, images: list[Any], *, standardize: bool, c: float,
                   folds: int, seeds: range) -> dict[str, Any]:  # fmt: skip
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from crack_model.training.cross_validation import grouped_folds

    wrong: collections.Counter[str] = collections.Counter()
    missed = false_alarms = 0
    for seed in seeds:
        for fold in grouped_folds(images, folds, seed):
            held_out = np.zeros(len(labels), dtype=bool)
            held_out[fold] = True
            steps = [StandardScaler()] if standardize else []
            model = make_pipeline(*steps, LogisticRegression(C=c, max_iter=3000))
            model.fit(features[~held_out], labels[~held_out])
            crack = model.predict_proba(features[held_out])[:, 1] >= 0.5
            for index, said_crack in zip(np.flatnonzero(held_out), crack, strict=True):
                if said_crack != bool(labels[index]):
                    wrong[f"{images[index].label}/{Path(images[index].uri).name}"] += 1
                    missed += int(labels[index])
                    false_alarms += int(not labels[index])
    return {"missed_cracks": missed, "false_alarms": false_alarms, "wrong_images": dict(wrong.most_common())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SAMPLE))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=8, help="seeds 0 .. repeats-1 pick the folds")
    parser.add_argument("--name", default="multilevel-features")
    args = parser.parse_args(argv)

    from crack_model.core.config import DataConfig
    from crack_model.data.labeled import load_labeled

    config = DataConfig(image_size=args.image_size)
    images = load_labeled(args.data, config)
    labels = np.array([image.label == config.crack_class for image in images], dtype=int)
    layers = pooled_features(images, args.image_size)
    rows = []
    for name, keys, standardize, c in COMBINATIONS:
        features = np.concatenate([layers[key] for key in keys], axis=1)
        result = cross_validate(features, labels, images, standardize=standardize, c=c, folds=args.folds,
                                seeds=range(args.repeats))  # fmt: skip
        rows.append({"combination": name, "layers": [LAYERS[key] for key in keys], "features": features.shape[1],
                     "standardized": standardize, "C": c, **result})  # fmt: skip
    scored = len(images) * args.repeats
    lines = [
        f"# Pooled layers of the frozen base, {args.folds}-fold grouped CV, seeds 0-{args.repeats - 1}, "
        f"{args.image_size} px, logistic regression ({scored} scored images per row)\n",
        "| layers | features | missed cracks | false alarms | images ever wrong (times) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        shown = ", ".join(f"`{image}` ({times})" for image, times in row["wrong_images"].items())
        lines.append(f"| {row['combination']} | {row['features']} | {row['missed_cracks']} | {row['false_alarms']} "
                     f"| {shown} |")  # fmt: skip
    write_results(args.name, {"data": args.data, "image_size": args.image_size, "folds": args.folds,
                              "repeats": args.repeats, "rows": rows}, "\n".join(lines) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
