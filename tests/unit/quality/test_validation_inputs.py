"""What validation is given: a suite file of one's own (refused with the broken expectation named, before any
upload is read) and a store path (a mistyped one is refused)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.quality import batch_validation
from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.expectations import load_suite
from crack_model.quality.thresholds import ValidationThresholds

PARAMETERS = ValidationThresholds().parameters()


def shipped() -> dict:
    return json.loads(resources.files("crack_model.quality").joinpath("suites", "incoming.json").read_text())


def suite_file(tmp_path: Path, change) -> str:
    suite = shipped()
    change(suite)
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    return str(path)


def brightness(suite: dict) -> dict:
    return next(item for item in suite["expectations"] if item["meta"].get("check") == "brightness_in_bounds")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda suite: brightness(suite).update(type="expect_column_values_to_be_betwen"),
            r"expectation \d+ of suite .*suite.json: GX has no expectation 'expect_column_values_to_be_betwen'; check",
        ),
        (lambda suite: brightness(suite).pop("type"), r"expectation \d+ of suite .* has no 'type'"),
        (
            lambda suite: brightness(suite)["kwargs"].update(min_value={"$PARAMETER": "brightness_low"}),
            r"refers to \$PARAMETER brightness_low: use one of .*brightness_min",
        ),
        (lambda suite: suite.pop("name"), r"suite .*suite.json has no 'name'"),
    ],
    ids=["misspelled type", "no type", "unknown parameter", "no name"],
)
def test_a_broken_suite_is_refused_naming_the_expectation(tmp_path, change, message):
    """A misspelled type was left out by GX with a log line, and a batch too dark for the real check passed."""
    with pytest.raises(CrackModelError, match=message):
        load_suite(suite_file(tmp_path, change), PARAMETERS)


def test_the_shipped_suites_pass_the_checks():
    for name in ("incoming", "training"):
        assert load_suite(name, PARAMETERS)["expectations"]


def test_a_broken_suite_is_refused_before_the_batch_is_read(tmp_path, monkeypatch):
    def no_profiling(*args, **kwargs):
        raise AssertionError("the batch was profiled")

    monkeypatch.setattr(batch_validation, "profile_listed", no_profiling)
    path = suite_file(tmp_path, lambda suite: brightness(suite).update(type="expect_nothing"))
    with pytest.raises(CrackModelError, match="GX has no expectation 'expect_nothing'"):
        validate_batch(str(tmp_path / "store"), "b1", suite=path)
    assert not (tmp_path / "store" / "validation").exists()


def test_an_expectation_on_a_column_the_profile_lacks_fails_saying_why(tmp_path, metu_sample):
    """GX reports the error per metric: the reason was left empty ("ghost: ")."""
    folder = tmp_path / "store" / "incoming" / "b1"
    folder.mkdir(parents=True)
    for path in sorted((metu_sample / "Negative").glob("*.jpg"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    ghost = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nosuchcol"},
             "meta": {"check": "ghost", "table": "objects"}}  # fmt: skip
    path = suite_file(tmp_path, lambda suite: suite["expectations"].append(ghost))

    outcome = validate_batch(str(tmp_path / "store"), "b1", suite=path)

    [reason] = [reason for reason in outcome.reasons if reason.startswith("ghost")]
    assert 'could not be evaluated (Error: The column "nosuchcol" in BatchData does not exist.)' in reason


def test_a_mistyped_store_path_is_refused_and_nothing_is_created(tmp_path):
    """A failed validation was written into the path, creating it."""
    missing = tmp_path / "no-such-store"
    with pytest.raises(CrackModelError, match=f"the store {missing} holds nothing at all: check the store's path"):
        validate_batch(str(missing), "b1")
    assert not missing.exists()


def test_a_mistyped_pool_path_is_refused_and_nothing_is_created(tmp_path):
    from crack_model.quality.batch_validation import validate_labeled

    missing = tmp_path / "no-such-store"
    with pytest.raises(CrackModelError, match="holds nothing at all"):
        validate_labeled(str(missing), "labeled")
    assert not missing.exists()


@pytest.mark.parametrize("output", [".", "Positive", "Positive/site-a"])
def test_an_output_inside_the_pool_is_refused_before_anything_is_written(tmp_path, output):
    """`validate --suite training --output <the pool>` wrote validation/ and quarantine/ among the class folders."""
    from crack_model.quality.batch_validation import validate_labeled

    pool = tmp_path / "pool"
    (pool / "Positive" / "site-a").mkdir(parents=True)
    (pool / "Positive" / "site-a" / "a.jpg").write_bytes(b"not read")
    before = sorted(path.relative_to(pool) for path in pool.rglob("*"))
    with pytest.raises(CrackModelError, match="needs an output store outside it"):
        validate_labeled(str(pool), "", output_uri=str(pool / output))
    assert sorted(path.relative_to(pool) for path in pool.rglob("*")) == before


def test_an_output_beside_a_pool_under_a_prefix_is_taken(tmp_path):
    """The nightly shape: the pool under labeled/ of the store, the reports in the same store's validation/."""
    from crack_model.quality.batch_validation import _location

    store = tmp_path / "store"
    assert not (_location(str(store)) + "/").startswith(_location(str(store / "labeled")) + "/")
    assert _location("s3://bucket/labeled/") == "s3://bucket/labeled"


def a_batch_and_a_model(tmp_path: Path) -> tuple[Path, Path]:
    """A store holding one upload in incoming/b1/site-a, and a model folder and a registered version beside."""
    store = tmp_path / "store"
    (store / "incoming" / "b1" / "site-a").mkdir(parents=True)
    (store / "incoming" / "b1" / "site-a" / "photo.jpg").write_bytes(b"a customer's photo")
    (store / "models" / "crack" / "versions" / "v1").mkdir(parents=True)
    (store / "models" / "crack" / "versions" / "v1" / "version.json").write_text("{}")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("kept")
    return store, tmp_path / "model"


@pytest.mark.parametrize(
    ("report", "said"),
    [
        ("store/incoming/b1/site-a/photo.jpg", "is an image's name"),
        ("store/incoming/b1/site-a/report.html", "/store/incoming, which validation reads"),
        ("store/incoming/b2/report.html", "/store/incoming, which validation reads"),
        ("photo.png", "is an image's name"),
        ("notes.txt", "is an existing file not named .html"),
        ("store", "is a folder"),
        ("store/models/crack/versions/v1/report.html", "is in a model's folder"),
        ("model/report.html", "is in a model's folder"),
    ],
)
def test_a_report_over_an_upload_or_a_model_file_is_refused_before_the_batch_is_read(
    tmp_path, monkeypatch, report, said
):
    """`validate --report <a photo of the batch>` wrote the HTML over the customer's JPEG (or added it as an upload)."""
    store, _ = a_batch_and_a_model(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrackModelError, match=f"--report {report} .*{said}.*: give a new .html file"):
        validate_batch(str(store), "b1", report_uri=report)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_a_report_inside_the_labeled_pool_is_refused(tmp_path):
    """A labeled pool is read as validation's input too: its class folders take no report."""
    from crack_model.quality.batch_validation import validate_labeled

    pool = tmp_path / "pool"
    (pool / "Positive").mkdir(parents=True)
    (pool / "Positive" / "a.jpg").write_bytes(b"not read")
    with pytest.raises(CrackModelError, match=f"is inside {pool}, which validation reads"):
        validate_labeled(str(pool), "", output_uri=str(tmp_path / "out"), report_uri=str(pool / "Positive" / "r.html"))
    assert not (pool / "Positive" / "r.html").exists() and not (tmp_path / "out").exists()
