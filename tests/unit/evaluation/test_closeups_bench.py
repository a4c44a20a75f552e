"""bench.closeups: held-out patches enlarged into photos of several tiles, scored through the serving core."""

from __future__ import annotations

import io
import json

from PIL import Image


def test_enlarge_scales_each_side_and_keeps_the_pixels_lossless():
    from bench.closeups import enlarge

    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(buffer, format="PNG")
    enlarged = Image.open(io.BytesIO(enlarge(buffer.getvalue(), 3)))
    assert enlarged.size == (90, 60)
    assert enlarged.getpixel((45, 30)) == (200, 10, 10)


def test_every_test_patch_is_one_photo_at_each_zoom(trained_model, tmp_path, monkeypatch):
    import bench.closeups as closeups
    import bench.run
    from crack_model.evaluation.assess import read_split_manifest

    monkeypatch.setattr(bench.run, "RESULTS", tmp_path)  # where write_results writes
    assert closeups.main(["--model", str(trained_model.output_dir), "--runtime", "keras", "--zoom", "1,5",
                          "--name", "closeups-test"]) == 0  # fmt: skip

    results = json.loads((tmp_path / "closeups-test.json").read_text())
    test = read_split_manifest(trained_model.output_dir / "split.csv", "test")
    cracks = sum(image.label == trained_model.card.crack_class for image in test)
    whole, enlarged = results["runs"]
    for run in (whole, enlarged):
        assert (run["crack_photos"], run["clean_photos"]) == (cracks, len(test) - cracks)
        assert len(run["missed"]) == run["crack_photos"] - run["found"]
    assert whole["tiles_per_photo"] == 1 and whole["photo_sizes"] == ["64x64"]
    assert enlarged["tiles_per_photo"] > 1 and enlarged["photo_sizes"] == ["320x320"]
    assert "| keras | 5 | 320x320 |" in (tmp_path / "closeups-test.md").read_text()
