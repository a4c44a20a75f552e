"""A damaged drift reference: named with what is wrong, and it leaves drift unmeasured rather than failing
every batch of the night (drift is advisory unless it fails batches)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.quality import drift
from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.outcome import PASSED
from crack_model.quality.thresholds import ValidationThresholds

WHOLE = {
    "format": drift.REFERENCE_FORMAT,
    "images": 10,
    "label_counts": {"Negative": 5, "Positive": 5},
    "features": {
        "blur": {"edges": [1.0, 2.0], "proportions": [0.3, 0.3, 0.4], "count": 10,
                 "by_label": {"Negative": [0.6, 0.2, 0.2], "Positive": [0.0, 0.4, 0.6]}},
    },
}  # fmt: skip


def damaged(change) -> dict:
    reference = copy.deepcopy(WHOLE)
    change(reference)
    return reference


def blur(reference: dict) -> dict:
    return reference["features"]["blur"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda ref: blur(ref).pop("count"), "feature blur: 'count' is not a positive number of images"),
        (lambda ref: blur(ref).pop("edges"), "feature blur: 'edges' is not a list of increasing numbers"),
        (lambda ref: blur(ref).update(edges=["1", "2"]), "'edges' is not a list of increasing numbers"),
        (lambda ref: blur(ref).update(edges=[2.0, 1.0]), "'edges' is not a list of increasing numbers"),
        (lambda ref: blur(ref).update(proportions=[0.5, 0.5]), "'proportions' is not a list of 3 numbers"),
        (lambda ref: blur(ref)["by_label"].update(Positive=[0.5, 0.5]), "'by_label' does not give each class 3"),
        (lambda ref: ref.update(features=[]), "'features' is not an object of features"),
        (lambda ref: ref.update(label_counts={"Negative": "5"}), "'label_counts' is not an object of image counts"),
    ],
    ids=[
        "no count",
        "no edges",
        "text edges",
        "edges out of order",
        "short proportions",
        "short class shares",
        "features a list",
        "count as text",
    ],
)
def test_a_damaged_reference_is_named_with_what_is_wrong(tmp_path, change, problem):
    path = tmp_path / "drift_reference.json"
    path.write_text(json.dumps(damaged(change)))
    with pytest.raises(drift.DamagedReferenceError, match=rf"drift reference {path} is damaged: .*{problem}"):
        drift.load_reference(str(path))


def test_a_whole_reference_loads(tmp_path):
    path = tmp_path / "drift_reference.json"
    path.write_text(json.dumps(WHOLE))
    assert drift.load_reference(str(path)) == WHOLE


@pytest.fixture
def batch(tmp_path: Path, metu_sample: Path) -> str:
    folder = tmp_path / "store" / "incoming" / "b1"
    folder.mkdir(parents=True)
    for path in sorted((metu_sample / "Negative").glob("*.jpg"))[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    (tmp_path / "ref.json").write_text(json.dumps(damaged(lambda ref: blur(ref).pop("count"))))
    return str(tmp_path / "store")


def test_a_batch_validated_against_a_damaged_reference_passes_with_drift_not_judged(batch, tmp_path):
    """A raw KeyError after profiling failed this batch, and every other batch sharing the champion's reference."""
    outcome = validate_batch(batch, "b1", reference=str(tmp_path / "ref.json"))
    assert outcome.outcome == PASSED
    assert outcome.drift["checked"] is False and outcome.drift["drifted"] is None and outcome.drift["images"] == 4
    assert outcome.drift["note"].startswith(f"not judged: drift reference {tmp_path / 'ref.json'} is damaged")
    saved = json.loads((tmp_path / "store" / "validation" / "b1" / "outcome.json").read_text())
    assert saved["drift"]["note"] == outcome.drift["note"]


def test_drift_that_fails_batches_refuses_a_damaged_reference(batch, tmp_path):
    with pytest.raises(CrackModelError, match="is damaged: feature blur: 'count'"):
        validate_batch(batch, "b1", reference=str(tmp_path / "ref.json"),
                       thresholds=ValidationThresholds(fail_on_drift=True))  # fmt: skip
