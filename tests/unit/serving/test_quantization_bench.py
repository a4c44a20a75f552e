"""bench.quantization: LiteRT variants of one model scored per holdout slice against Keras."""

from __future__ import annotations

import json
import shutil

import numpy as np


def test_slice_figures_count_misses_false_alarms_and_disagreements_per_slice():
    from bench.quantization import slice_figures

    is_crack = np.array([True, True, False, False, True, False])
    slices = np.array(["a", "a", "a", "b", "b", "b"])
    keras = np.array([0.9, 0.6, 0.2, 0.1, 0.8, 0.7])
    variant = np.array([0.9, 0.4, 0.6, 0.1, 0.8, 0.7])  # a: one crack lost, one false alarm gained
    figures = slice_figures(variant, keras, is_crack, slices, 0.5)
    assert figures["a"] == {"images": 3, "missed_cracks": 1, "false_alarms": 1, "agreement": round(1 / 3, 4),
                            "max_gap": 0.4}  # fmt: skip
    assert figures["b"] == {"images": 3, "missed_cracks": 0, "false_alarms": 1, "agreement": 1.0, "max_gap": 0.0}


def test_every_variant_is_scored_on_every_slice(trained_model, synth_data, tmp_path, monkeypatch):
    import bench.quantization as quantization
    import bench.run

    holdout = tmp_path / "holdout"
    for class_dir in synth_data.iterdir():
        for index, image in enumerate(sorted(class_dir.glob("*.jpg"))[:8]):
            target = holdout / class_dir.name / ("site-a" if index % 2 else "site-b") / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target)
    monkeypatch.setattr(bench.run, "RESULTS", tmp_path)  # where write_results writes
    monkeypatch.setattr(quantization, "WORST_LAYERS", (1,))
    assert quantization.main(["--model", str(trained_model.output_dir), "--holdout", str(holdout),
                              "--labeled", str(synth_data), "--name", "quantization-test"]) == 0  # fmt: skip

    results = json.loads((tmp_path / "quantization-test.json").read_text())
    variants = [row["variant"] for row in results["variants"]]
    assert variants == ["keras", "fp32", "int8", "int8-calib1000", "dynamic-range", "int8-float-worst-1"]
    for row in results["variants"]:
        assert {name: figures["images"] for name, figures in row["slices"].items()} == {"site-a": 8, "site-b": 8}
    keras, fp32 = results["variants"][0]["slices"], results["variants"][1]["slices"]
    assert all(figures["agreement"] == 1.0 for figures in keras.values())
    assert all(fp32[name]["agreement"] >= 0.9 for name in fp32)  # the same network in float
    assert results["worst_layers"] and results["worst_layers"][0]["error_over_step"] >= 0
    assert "| int8-float-worst-1 |" in (tmp_path / "quantization-test.md").read_text()
