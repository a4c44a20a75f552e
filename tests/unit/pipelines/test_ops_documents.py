"""Documents that parse but hold a field of the wrong type cost that field, never an ops page.

Each case edits one document of the ops_store story, builds every page that reads it (overview
with trends, history, the batch pages, the champion's model page), renders their HTML, and checks
the page names the document and the field, and still shows the rest.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crack_ops.ops_render import environment, number, percent, size, trend_charts

from crack_model.core import layout
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.batch_page import batch_page
from crack_model.pipelines.document_shapes import (
    COUNT,
    NUMBER,
    TEXT,
    ListOf,
    MapOf,
    Record,
    conform,
)
from crack_model.pipelines.history import history
from crack_model.pipelines.model_page import model_page
from crack_model.pipelines.overview import overview
from crack_model.registry.naming import VersionNotFoundError
from tests.unit.pipelines.ops_store import CHAMPION, SCORED, build_store

OUTCOME = f"validation/{SCORED}/outcome.json"
FAILED_OUTCOME = "validation/blank-frames/outcome.json"
SUMMARY = f"results/{SCORED}/summary.json"
RUN = layout.run_summary_key("scheduled__2026-11-24T02:00:00+00:00")
VERSION = f"models/crack/versions/{CHAMPION}/version.json"
GATE = f"models/crack/versions/{CHAMPION}/gate_report.json"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four nights of ops_store, written once; each test edits its own copy."""
    with pytest.MonkeyPatch.context() as patch:
        return build_store(tmp_path_factory.mktemp("ops-documents"), patch).root


@pytest.fixture()
def store(pristine: Path, tmp_path: Path) -> LocalStore:
    shutil.copytree(pristine, tmp_path / "store")
    return LocalStore(tmp_path / "store")


def edit(store: LocalStore, key: str, change: Callable[[dict[str, Any]], Any]) -> None:
    document = json.loads(store.read(key))
    change(document)
    store.write(key, json.dumps(document).encode())


def every_page(store: LocalStore) -> dict[str, dict[str, Any]]:
    """Each page's data, after rendering its HTML the way the ops view does (a template error fails the test)."""
    templates = environment()
    actions = {"release": False, "rollback": False}

    def rendered(template: str, root: str, **context: Any) -> None:
        templates.get_template(template).render(root=root, nonce="n", actions=actions, **context)

    pages = {"overview": overview(store), "history": history(store)}
    rendered("ops.html", "", data=pages["overview"], trends=pages["history"], charts=trend_charts(pages["history"]))
    for batch_id in (SCORED, "blank-frames"):
        data = batch_page(store, batch_id)
        assert data is not None
        rendered("batch.html", "../", data=data)
        pages[batch_id] = data
    pages["model"] = model_page(store, "crack", CHAMPION)
    rendered("model.html", "../../", data=pages["model"])
    return pages


def problems_of(pages: dict[str, dict[str, Any]]) -> list[str]:
    return [problem for data in pages.values() for problem in data["problems"]]


def scored_batch_intact(pages: dict[str, dict[str, Any]]) -> bool:
    batch = pages[SCORED]
    return batch["batch"]["model_version"] == CHAMPION and batch["cracks_total"] == 2


def failed_batch_intact(pages: dict[str, dict[str, Any]]) -> bool:
    validation = pages["blank-frames"]["validation"]
    return validation["reasons"] == ["contrast_in_bounds: 12 of 12 fail"] and validation["drift"]["drifted"] is True


def validation_intact(pages: dict[str, dict[str, Any]]) -> bool:
    return pages[SCORED]["validation"]["outcome"] == "passed_with_quarantine"


def night_intact(pages: dict[str, dict[str, Any]]) -> bool:
    """Night 24 scored night 23's batch again: it is named there, and counted (2 cracks) on night 23."""
    nights = {point["run_id"][: len("scheduled__2026-11-24")]: point for point in pages["history"]["points"]}
    again = nights["scheduled__2026-11-24"]["scored_again"]
    return again == [SCORED] and nights["scheduled__2026-11-23"]["cracks"] == 2


def gate_intact(pages: dict[str, dict[str, Any]]) -> bool:
    return pages["model"]["gate"]["decision"] == "promote" and pages["overview"]["champion"]["version"] == CHAMPION


def lineage_intact(pages: dict[str, dict[str, Any]]) -> bool:
    return pages["model"]["lineage"]["run_id"] == f"manual__{CHAMPION}"


def update(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda document: document.update(fields)


def in_section(section: str, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda document: document[section].update(fields)


def in_checks(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda document: [check.update(fields) for check in document["checks"]]


def in_candidate(section: str, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda document: document["candidate"][section].update(fields)


def in_card(section: str, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda document: document["card"][section].update(fields)


# (document, edit, the field the problem names, what must still be shown)
CASES = {
    "psi holds a string": (OUTCOME, in_section("drift", psi={"brightness": 0.04, "blur": "x"}), "drift.psi.blur",
                           scored_batch_intact),
    "psi is a list": (OUTCOME, in_section("drift", psi=[0.1, 0.2]), "drift.psi", scored_batch_intact),
    "drift is a string": (OUTCOME, update(drift="n/a"), "drift", scored_batch_intact),
    "validated_at is a number": (OUTCOME, update(validated_at=12345), "validated_at", scored_batch_intact),
    "counts is a list": (OUTCOME, update(counts=[1, 2]), "counts", scored_batch_intact),
    "data_docs is a string": (OUTCOME, update(data_docs="x"), "data_docs", scored_batch_intact),
    "a check is a string": (FAILED_OUTCOME, update(checks=["x"]), "checks[0]", failed_batch_intact),
    "offenders is a number": (FAILED_OUTCOME, in_checks(offenders=5), "checks[0].offenders", failed_batch_intact),
    "offenders_total is a string": (FAILED_OUTCOME, in_checks(offenders_total="many"), "checks[0].offenders_total",
                                    failed_batch_intact),
    "cracks is a string": (SUMMARY, update(cracks="two", crack_rate="high"), "cracks", validation_intact),
    "status_counts is a list": (SUMMARY, update(status_counts=[1]), "status_counts", validation_intact),
    "summary finished_at is a number": (SUMMARY, update(finished_at=5), "finished_at", validation_intact),
    "a run validation is a string": (RUN, update(validations=["x"]), "validations[0]", night_intact),
    "run objects_scored is a string": (RUN, update(objects_scored="four"), "objects_scored", night_intact),
    "run finished_at is a number": (RUN, update(finished_at=5), "finished_at", scored_batch_intact),
    "an interval has one number": (GATE, in_candidate("intervals", crack_recall=[0.9]),
                                   "candidate.intervals.crack_recall", lineage_intact),
    "candidate is a string": (GATE, update(candidate="x"), "candidate", lineage_intact),
    "holdout is a string": (GATE, update(holdout="x"), "holdout", lineage_intact),
    "policy digest is a number": (GATE, in_section("policy", digest=5), "policy.digest", lineage_intact),
    "card is a string": (VERSION, update(card="x"), "card", gate_intact),
    "files is a list": (VERSION, update(files=["a"]), "files", gate_intact),
    "data_manifest is a string": (VERSION, update(data_manifest="x"), "data_manifest", gate_intact),
    "training metrics is a string": (VERSION, update(metrics="x"), "metrics", gate_intact),
    "photo calibration count is a string": (VERSION, in_card("photo_calibration", clean_mosaics="many"),
                                            "card.photo_calibration.clean_mosaics", gate_intact),
    # JSON numbers the page filters could not format (OverflowError): pages answered 500.
    "a drift threshold of 400 digits": (OUTCOME, in_section("drift", threshold=10**400), "drift.threshold",
                                        scored_batch_intact),
    "throughput is Infinity": (SUMMARY, update(throughput_images_per_second=float("inf")),
                               "throughput_images_per_second", validation_intact),
    "bootstrap confidence is Infinity": (GATE, in_section("policy", bootstrap={"confidence": float("inf")}),
                                         "policy.bootstrap.confidence", lineage_intact),
}  # fmt: skip


@pytest.mark.parametrize(("key", "change", "field", "intact"), CASES.values(), ids=CASES.keys())
def test_a_field_of_the_wrong_type_is_named_and_the_pages_still_render(store, key, change, field, intact):
    """Every page that reads the document renders; the problem names the document and field; the rest is shown."""
    edit(store, key, change)
    pages = every_page(store)
    named = [problem for problem in problems_of(pages) if problem.startswith(f"{key}: {field} is ")]
    assert named, problems_of(pages)
    assert intact(pages)


def test_the_story_as_written_has_no_problems(store):
    """The shapes fit what the workflow's own writers write: no page reports a problem on the untouched store."""
    assert problems_of(every_page(store)) == []


def test_a_psi_without_a_value_is_skipped_silently(store):
    """A feature whose PSI is null was not computed: no problem, and the highest PSI is of the others."""
    edit(store, OUTCOME, in_section("drift", psi={"brightness": None, "blur": 0.1}))
    pages = every_page(store)
    assert pages[SCORED]["batch"]["drift"]["max_psi"] == 0.1
    assert [item["feature"] for item in pages[SCORED]["validation"]["drift"]["features"]] == ["blur"]
    assert problems_of(pages) == []


def test_a_summary_without_status_counts_renders(store):
    """null counts (a hand-edited summary): nothing counted, no crash in the trends or the batch page."""
    edit(store, SUMMARY, update(status_counts=None))
    pages = every_page(store)
    assert validation_intact(pages)


@pytest.mark.parametrize("field", ["batches_scored", "validations", "failed_batches", "batches_failed_validation"])
def test_a_null_list_or_object_in_a_run_reads_as_empty(store, field):
    """null is how a writer says "not recorded": a list or object field that is null is read as empty."""
    edit(store, RUN, update(**{field: None}))
    pages = every_page(store)
    assert pages["overview"]["runs"] and problems_of(pages) == []


def test_a_null_among_the_items_of_a_list_is_left_out_and_named(store):
    edit(store, RUN, update(batches_scored=[None, SCORED]))
    edit(store, OUTCOME, update(reasons=[None, "a reason"]))
    pages = every_page(store)
    assert night_intact(pages) and scored_batch_intact(pages)
    problems = problems_of(pages)
    assert any(problem.startswith(f"{RUN}: batches_scored[0] is None") for problem in problems), problems
    assert any(problem.startswith(f"{OUTCOME}: reasons[0] is None") for problem in problems), problems


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_psi_that_is_no_finite_number_is_a_gap_in_the_trends(store, value):
    """Python's json reads Infinity and NaN: the chart leaves the point out instead of failing the page."""
    edit(store, OUTCOME, in_section("drift", psi={"brightness": value, "blur": 0.1}))
    pages = every_page(store)
    assert scored_batch_intact(pages)


def test_only_the_bad_part_of_a_field_is_left_out(store):
    """A psi map with one bad entry keeps the good one; a bad offender total falls back to the listed offenders."""
    edit(store, OUTCOME, in_section("drift", psi={"brightness": 0.04, "blur": "x"}))
    edit(store, FAILED_OUTCOME, in_checks(offenders_total="many"))
    pages = every_page(store)
    assert [(item["feature"], item["psi"]) for item in pages[SCORED]["validation"]["drift"]["features"]] == [
        ("brightness", 0.04)
    ]
    (check,) = pages["blank-frames"]["validation"]["failed_checks"]
    assert check["offenders_total"] == 12 and len(check["offenders"]) == 10  # the 12 the outcome lists


def test_a_damaged_version_json_gives_the_page_and_says_so(store):
    """An unparseable version.json: the model page renders its gate and audit, and names the damaged file."""
    store.write(VERSION, b"{")
    pages = every_page(store)
    data = pages["model"]
    assert data["gate"]["decision"] == "promote" and data["audit"]
    assert data["lineage"]["run_id"] is None
    assert any(problem.startswith(f"{VERSION} is damaged") for problem in data["problems"])


def test_a_version_without_version_json_is_not_found(store):
    """404 stays for a version that really is not registered."""
    with pytest.raises(VersionNotFoundError):
        model_page(store, "crack", "20991101T020000Z-ffff0000")


def test_conform_fits_a_document_and_names_each_misfit():
    """Wrong types become absent (None, [] or {}), bad items and entries are left out, null and pairs are honoured."""
    shape = Record(
        {
            "count": COUNT,
            "rate": NUMBER,
            "names": ListOf(TEXT),
            "per_label": MapOf(COUNT),
            "interval": ListOf(NUMBER, length=2),
            "nested": Record({"note": TEXT}),
        }
    )
    document = {"count": True, "rate": None, "names": ["a", 1], "per_label": {"a": 1, "b": "2", "c": None},
                "interval": [0.1, "x"], "nested": [], "other": object}  # fmt: skip
    fitted, problems = conform(document, shape, "doc.json")
    assert fitted == {"count": None, "rate": None, "names": ["a"], "per_label": {"a": 1}, "interval": [],
                      "nested": {}, "other": object}  # fmt: skip
    assert [problem.split(" is ")[0] for problem in problems] == [
        "doc.json: count",
        "doc.json: names[1]",
        "doc.json: per_label.b",
        "doc.json: interval",
        "doc.json: nested",
    ]
    assert document["names"] == ["a", 1], "the document read is not changed"


def test_a_document_with_many_misfits_is_a_few_lines():
    """Ten thousand bad items are one document's problem: a few lines and a count, not ten thousand lines."""
    _, problems = conform({"names": list(range(10_000))}, Record({"names": ListOf(TEXT)}), "doc.json")
    assert len(problems) == 6 and problems[-1] == "doc.json: ... and 9995 more fields of the wrong type"


@pytest.mark.parametrize(
    ("render", "value", "shown"),
    [
        (number, "four", "four"),
        (number, float("nan"), "nan"),
        (number, 12345, "12,345"),
        (number, 2.5, "2"),
        (percent, "high", "high"),
        (percent, 0.25, "25.0%"),
        (size, "big", "big"),
        (size, 2048, "2.0 kB"),
    ],
)
def test_number_filters_show_an_odd_value_as_it_is(render, value, shown):
    """A value a filter cannot format is shown as it is, never an error page."""
    assert render(value) == shown
