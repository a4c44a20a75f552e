"""One batch in detail (crack_model.pipelines.batch_page) on the four nights of ops_store."""

from __future__ import annotations

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.pipelines import ops_files
from crack_model.pipelines.batch_page import batch_page
from tests.unit.pipelines.ops_store import CHAMPION, SCORED


def test_scored_batch_has_its_summary_links_and_validation(store):
    """The overview's row (counts, crack rate, drift, links), and the outcome with drift per feature, worst first."""
    data = batch_page(store.uri, SCORED)
    assert data["batch"]["state"] == "scored" and data["batch"]["model_version"] == CHAMPION
    assert data["batch"]["status_counts"] == {"error": 1, "ok": 3, "quarantined": 1}
    assert data["batch"]["links"]["predictions"] == f"results/{SCORED}/predictions.csv"
    validation = data["validation"]
    assert validation["outcome"] == "passed_with_quarantine" and validation["reasons"] == []
    assert [(item["feature"], item["psi"]) for item in validation["drift"]["features"]] == [
        ("blur", 0.11),
        ("brightness", 0.04),
    ]
    assert data["problems"] == []


def test_cracks_are_the_most_probable_first_with_their_overlays(store):
    """Rows labeled crack, highest probability first, each with the overlay the scoring engine wrote."""
    data = batch_page(store.uri, SCORED)
    assert [(crack["name"], crack["crack_probability"]) for crack in data["cracks"]] == [
        ("site a/photo-2.jpg", 0.97),
        ("site a/photo-0.jpg", 0.91),
    ]
    assert data["cracks_total"] == 2
    overlay = data["cracks"][0]["overlay"]
    assert overlay == f"results/{SCORED}/overlays/site a/photo-2.jpg.png" and ops_files.viewable(overlay)
    assert [crack["name"] for crack in batch_page(store.uri, SCORED, thumbnails=1)["cracks"]] == ["site a/photo-2.jpg"]


def test_quarantined_objects_with_reasons_and_copies(store):
    """The quarantine manifest: each object held back, why, and its servable copy."""
    data = batch_page(store.uri, SCORED)
    assert data["quarantined"] == [
        {"key": f"incoming/{SCORED}/bad.jpg", "name": "bad.jpg", "reasons": ["decodes: no"],
         "copy_key": f"quarantine/{SCORED}/uploads/bad.jpg"}
    ]  # fmt: skip
    assert data["quarantined_total"] == 1 and ops_files.viewable(data["quarantined"][0]["copy_key"])


def test_failed_batch_has_reasons_failed_checks_and_drift_but_no_cracks(store):
    """A batch that failed validation: its reasons, the failed check with a few offenders, drifted features."""
    data = batch_page(store.uri, "blank-frames")
    validation = data["validation"]
    assert validation["reasons"] == ["contrast_in_bounds: 12 of 12 fail"]
    (check,) = validation["failed_checks"]
    assert check["name"] == "contrast_in_bounds" and check["offenders_total"] == 12 and len(check["offenders"]) == 10
    assert [item["feature"] for item in validation["drift"]["features"] if item["drifted"]] == ["contrast", "blur"]
    assert data["cracks"] == [] and data["batch"]["state"] == "failed validation"


def test_unknown_and_invalid_batches(store):
    """A batch the store knows nothing of is None; an id that could escape the layout is a CrackModelError."""
    assert batch_page(store.uri, "2099-01-01") is None
    waiting = batch_page(store.uri, "2026-11-25")
    assert waiting is not None and waiting["batch"]["state"] == "waiting" and waiting["validation"] is None
    for bad in ("..", "a/b", ""):
        with pytest.raises(CrackModelError, match="invalid batch id"):
            batch_page(store.uri, bad)


def test_missing_predictions_are_a_problem_not_an_error(store):
    """A batch marked complete whose predictions.csv is gone: no crack list, a line in problems, the rest shown."""
    store.write("incoming/odd/a.jpg", b"jpeg")
    store.write("results/odd/_SUCCESS", b"{}")
    data = batch_page(store.uri, "odd")
    assert data["batch"]["state"] == "scored"
    assert data["cracks"] == [] and data["cracks_total"] == 0
    assert any("results/odd/predictions.csv" in problem for problem in data["problems"])


def test_an_overlay_in_a_folder_named_like_an_overlay_file_prefers_its_current_key(tmp_path, monkeypatch):
    """An upload in `x.jpg.png/`: its overlay moved to `x.jpg.png~/`. The page showed the old one whenever it was
    there, also after the overlay was drawn again under the current key (which the files route serves)."""
    from crack_model.core import layout
    from crack_model.core.local_store import LocalStore
    from tests.unit.pipelines.ops_store import _scored_batch

    store = LocalStore(tmp_path)
    _scored_batch(store, "b1", CHAMPION, [("x.jpg.png/y.jpg", "ok", "Positive", "0.9")])
    current, legacy = layout.overlay_keys("b1", "incoming/b1/x.jpg.png/y.jpg")
    assert legacy == "results/b1/overlays/x.jpg.png/y.jpg.png"  # where _scored_batch wrote it, as before the move
    [crack] = batch_page(store.uri, "b1")["cracks"]
    assert crack["overlay"] == legacy

    store.write(current, b"png drawn again")
    [crack] = batch_page(store.uri, "b1")["cracks"]
    assert crack["overlay"] == current == "results/b1/overlays/x.jpg.png~/y.jpg.png"
