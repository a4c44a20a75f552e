"""GX Data Docs for every validation run (crack_model.quality.data_docs), written into the store."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest

from crack_model.core import layout
from crack_model.core.documents import read_outcome
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.batch_page import batch_page
from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.data_docs import with_offline_links
from crack_model.quality.outcome import FAILED, PASSED


def upload(root: Path, batch_id: str, photos: list[Path], extra: dict[str, bytes] | None = None) -> None:
    folder = root / "incoming" / batch_id
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)


@pytest.fixture(scope="module")
def photos(metu_sample: Path) -> list[Path]:
    """12 real photos, both classes."""
    return sorted((metu_sample / "Positive").glob("*.jpg"))[:6] + sorted((metu_sample / "Negative").glob("*.jpg"))[:6]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> LocalStore:
    """Batch ``broken`` (12 photos and one undecodable file: fails) validated, then batch ``clean`` (passes)."""
    root = tmp_path_factory.mktemp("data-docs-store")
    upload(root, "broken", photos, {"not-a-photo.jpg": b"these bytes are no JPEG"})
    upload(root, "clean", photos)
    assert validate_batch(str(root), "broken").outcome == FAILED
    assert validate_batch(str(root), "clean").outcome == PASSED
    return LocalStore(root)


def pages(store: LocalStore, batch_id: str) -> dict[str, str]:
    """Every HTML page of the batch's Data Docs, by its path inside the site."""
    prefix = layout.data_docs_key(batch_id) + "/"
    return {info.key.removeprefix(prefix): store.read(info.key).decode() for info in store.list(prefix)
            if info.key.endswith(".html")}  # fmt: skip


def text_of(page: str) -> str:
    """The words a reader sees (scripts and styles left out)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_a_validation_run_writes_data_docs_with_the_batchs_expectation_results(store):
    """index.html, the run's result page (the failed check and its offender) and the suite page, in the store."""
    outcome = read_outcome(store, "broken")
    assert outcome["data_docs"] == {"index": "validation/broken/data_docs/index.html", "pages": 3, "error": None}
    site = pages(store, "broken")
    (result_page,) = [name for name in site if name.startswith("validations/")]
    shown = text_of(site[result_page])
    assert "Status: Failed" in shown and "Unsuccessful Expectations 1" in shown
    assert "incoming/broken/not-a-photo.jpg" in shown
    # Each expectation's status is a word as well as GX's icon (the icon font comes from a CDN).
    assert "decodable Status Expectation Observed Value failed values must belong" in shown
    assert shown.count("Observed Value passed ") == 10 and shown.count("Observed Value failed ") == 1
    assert "at least 95 % of the time" in shown  # the suite's mostly, filled in from the run's thresholds
    assert "$PARAMETER" not in text_of(site["expectations/crack_model/incoming.html"])
    assert outcome["files"]["data_docs"] == store.url(outcome["data_docs"]["index"])


def test_the_index_links_every_page_without_scripts_and_only_used_assets_are_copied(store):
    """GX's index table needs CDN scripts; the plain list beside it links each page, all of them stored."""
    site = pages(store, "broken")
    links = re.findall(r'<nav class="crack-offline-links".*?</nav>', site["index.html"], flags=re.DOTALL)
    assert len(links) == 1
    targets = re.findall(r'href="([^"]+)"', links[0])
    assert sorted(targets) == sorted(name for name in site if name != "index.html")
    assets = [info.key for info in store.list(layout.data_docs_key("broken", "static") + "/")]
    assert assets == ["validation/broken/data_docs/static/images/favicon.ico"]  # not GX's 4 MB of unused images


def test_each_run_documents_its_own_result_only(store):
    """The second batch's index lists its own result, not the first batch's (the shared GX context is left clean)."""
    site = pages(store, "clean")
    assert [name for name in site if name.startswith("validations/")] == [
        name for name in site if name.startswith("validations/crack_model/incoming/clean/")
    ]
    assert "broken" not in site["index.html"] and "Status: Succeeded" in text_of(
        next(page for name, page in site.items() if name.startswith("validations/"))
    )


def test_batch_page_exposes_the_data_docs_key(store):
    """The ops view's batch page (and the overview's row of the batch) link the run's Data Docs by store key."""
    page = batch_page(store, "broken")
    validation = page["validation"]
    assert page["batch"]["links"]["data_docs"] == layout.data_docs_index_key("broken")
    assert validation["data_docs"] == layout.data_docs_index_key("broken") and validation["data_docs_error"] is None
    assert store.exists(validation["data_docs"])


def test_a_data_docs_failure_is_recorded_and_never_fails_validation(tmp_path, photos):
    """A store that cannot take the site (a file where its folder goes): validation passes, outcome.json says why."""
    upload(tmp_path, "b1", photos)
    (tmp_path / "validation" / "b1").mkdir(parents=True)
    (tmp_path / "validation" / "b1" / "data_docs").write_bytes(b"in the way")

    outcome = validate_batch(str(tmp_path), "b1")

    assert outcome.outcome == PASSED and outcome.data_docs["index"] is None
    assert outcome.data_docs["error"].startswith("GX Data Docs not built: ")
    stored = json.loads((tmp_path / "validation" / "b1" / "outcome.json").read_bytes())
    assert stored["data_docs"] == outcome.data_docs and "data_docs" not in stored["files"]
    assert (tmp_path / "validation" / "b1" / "report.html").is_file()
    assert batch_page(LocalStore(tmp_path), "b1")["validation"]["data_docs"] is None


def test_offline_links_go_before_the_first_table_or_at_the_end():
    """The link list is put where a reader meets it: before GX's table, else before </body>."""
    linked = {"index.html": "", "validations/s/r/t/b.html": ""}
    with_table = with_offline_links("<body><h1>x</h1><table id='t'></table></body>", linked)
    assert with_table.index("crack-offline-links") < with_table.index("<table")
    assert 'href="validations/s/r/t/b.html"' in with_table
    without = with_offline_links("<body><p>no table</p></body>", linked)
    assert without.endswith("</nav></body>") and "Validation result: batch b" in without


def test_an_uploads_name_is_shown_as_text_on_the_result_page_never_run_as_html(tmp_path, photos):
    """A name holding markup is escaped in the page's offenders cell; result.json keeps the name as it is."""
    name = "<img src=x onerror=alert(1)><script>alert(2).jpg"
    upload(tmp_path, "b1", photos, {name: b"these bytes are no JPEG"})

    validate_batch(str(tmp_path), "b1")

    site = pages(LocalStore(tmp_path), "b1")
    (result_page,) = [page for key, page in site.items() if key.startswith("validations/")]
    assert "<img src=x" not in result_page and "<script>alert(2)" not in result_page
    assert f"incoming/b1/{name}" in html.unescape(text_of(result_page))
    stored = (tmp_path / "validation" / "b1" / "result.json").read_text(encoding="utf-8")
    assert json.dumps(f"incoming/b1/{name}") in stored
