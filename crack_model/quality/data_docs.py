"""GX Data Docs for one validation run, written into the store beside the project's own report.

Great Expectations renders a validation result as a small static site: ``index.html``, one page per
validation result and one per expectation suite, and a ``static/`` folder of assets. This module
builds that site for the run's (merged) result in a temporary folder, through the same cached
ephemeral context validation already used (no second GX import, no second context), and copies it to
``validation/<batch_id>/data_docs/`` (``layout.data_docs_key``), ``index.html`` last.

Only what the pages use is copied: GX's ``static/`` folder holds 4 MB of images and fonts for buttons
this site does not show, and every page refers to the favicon alone. GX loads Bootstrap, jQuery,
bootstrap-table, Font Awesome and Vega from public CDNs and does not ship them; the pages' content is
plain HTML and reads without them, but GX's index table is filled by those scripts, so ``index.html``
also gets a plain list of the run's pages (see ``OFFLINE_LINKS``).

A Data Docs failure never fails validation: ``write_data_docs`` logs it and returns it for
``outcome.json`` (``data_docs.error``).
"""

from __future__ import annotations

import copy
import html
import mimetypes
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crack_model.core import layout
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.quality.expectations import gx_context, load_suite

log = module_logger(__name__)

STATIC = "static/"
OFFLINE_LINKS = (
    '<nav class="crack-offline-links" style="margin:1em">'
    "<p>This run's pages (plain links: the table below needs scripts from public CDNs):</p><ul>{items}</ul></nav>"
)
_TABLE = re.compile(r"<table\b")
# GX marks each expectation's status with a Font Awesome icon only, which is blank without the CDN stylesheet.
# (An icon with attributes, aria-hidden, stands beside its own word already.)
_STATUS_ICON = re.compile(r'(<i class="fas (fa-check-circle text-success|fa-times text-danger|'
                          r'fa-exclamation-triangle text-warning)"\s*></i>)')  # fmt: skip
_STATUS_WORDS = {
    "fa-check-circle text-success": "passed",
    "fa-times text-danger": "failed",
    "fa-exclamation-triangle text-warning": "error",
}
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".ico": "image/x-icon"}


def write_data_docs(
    output: ObjectStore, batch_id: str, result: Any, suite: str | None, validated_at: str
) -> dict[str, Any]:
    """Build the run's Data Docs and copy them to ``validation/<batch_id>/data_docs/``; never raises.

    Args:
        result: the GX ``ExpectationSuiteValidationResult`` of the run (``run_suite``'s merged result).
        suite: the suite the run checked (``incoming``, ``training`` or a path; its page is built too), or None.
        validated_at: the run's time (``outcome.validated_at``): names the result's page.

    Returns:
        ``{"index": <store key of index.html> | None, "pages": <count>, "error": <message> | None}``,
        what ``outcome.json`` records as ``data_docs``.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="crack-data-docs-") as folder:
            build_site(Path(folder), batch_id, result, load_suite(suite) if suite else None, validated_at)
            pages = copy_site(Path(folder), output, batch_id)
    except Exception as error:  # Data Docs are a second view of the result: validation stands without them
        message = f"GX Data Docs not built: {type(error).__name__}: {error}"
        log.warning("%s (validation of %s is unaffected)", message, batch_id)
        return {"index": None, "pages": 0, "error": message}
    index = layout.data_docs_index_key(batch_id)
    log.info("GX Data Docs of %s written to %s", batch_id, output.url(index))
    return {"index": index, "pages": pages, "error": None}


def build_site(folder: Path, batch_id: str, result: Any, suite: Mapping[str, Any] | None, validated_at: str) -> None:
    """Render the result (and its suite) as a GX Data Docs site in ``folder``.

    The result and suite are put into the shared context's in-memory stores only for the build and
    taken out again, so the next run's index lists its own result alone.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=batch_id, run_time=validated_at)
    page_result = copy.copy(result)  # the meta and values the renderer reads; result.json keeps the original
    page_result.results = [_with_escaped_values(expectation) for expectation in result.results]
    tables = sorted((result.meta or {}).get("tables") or {})
    page_result.meta = {
        **(result.meta or {}),
        "run_id": run_id,
        # The renderer takes the page's "Data asset" from here: the tables the suite checked.
        "batch_spec": {"data_asset_name": ", ".join(tables) or "objects", "batch_id": batch_id},
    }
    suite_id = ExpectationSuiteIdentifier(name=result.suite_name)
    result_id = ValidationResultIdentifier(suite_id, run_id, batch_id)
    site = f"{batch_id} ({result.suite_name})"  # the index's title; added and removed under the lock
    config = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    with gx_context() as context:
        added_suite = False
        context.add_data_docs_site(site, config)
        try:
            context.validation_results_store.set(result_id, page_result)
            if suite is not None and all(known.name != result.suite_name for known in context.suites.all()):
                expectations = resolved(suite["expectations"], result.suite_parameters or {})
                context.suites.add(gx.ExpectationSuite(name=result.suite_name, expectations=expectations))
                added_suite = True
            context.build_data_docs(site_names=[site], resource_identifiers=[result_id, suite_id])
        finally:  # a failed step must not hide its error behind a cleanup error
            if context.validation_results_store.has_key(result_id):
                context.validation_results_store.remove_key(result_id)
            if added_suite:
                context.suites.delete(result.suite_name)
            context.delete_data_docs_site(site)


def _with_escaped_values(expectation_result: Any) -> Any:
    """A copy of one expectation's result whose string values (object keys, unexpected values) are HTML-escaped.

    GX puts the result's values (the observed value, the unexpected values and index rows such as
    ``incoming/b/<name>``) into the page's table cells as raw HTML, and an upload's name is the uploader's
    choice: unescaped, a name holding ``<script>`` would run in the reader's browser. The suite's own words
    go through GX's string templates, which escape them, so only the ``result`` dict is escaped here.
    """
    page_copy = copy.copy(expectation_result)
    page_copy.result = _escaped(expectation_result.result)
    return page_copy


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {name: _escaped(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    return value


def resolved(value: Any, parameters: Mapping[str, Any]) -> Any:
    """The suite's expectations with each ``{"$PARAMETER": name}`` replaced by this run's value, so the suite
    page shows the thresholds the run checked rather than the parameter names."""
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"} and value["$PARAMETER"] in parameters:
            return parameters[value["$PARAMETER"]]
        return {name: resolved(item, parameters) for name, item in value.items()}
    if isinstance(value, list):
        return [resolved(item, parameters) for item in value]
    return value


def copy_site(folder: Path, output: ObjectStore, batch_id: str) -> int:
    """Copy the site's pages and the static files they refer to; ``index.html`` last. Returns the page count."""
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    pages = [name for name in files if name.endswith(".html")]
    if layout.DATA_DOCS_INDEX not in pages:
        raise FileNotFoundError(f"GX wrote no {layout.DATA_DOCS_INDEX} in {folder}")
    texts = {name: with_status_words((folder / name).read_text(encoding="utf-8")) for name in pages}
    used = [name for name in files if name.startswith(STATIC) and any(name in text for text in texts.values())]
    texts[layout.DATA_DOCS_INDEX] = with_offline_links(texts[layout.DATA_DOCS_INDEX], texts)
    for name in used:
        output.write(layout.data_docs_key(batch_id, name), (folder / name).read_bytes(), content_type=_type(name))
    for name in sorted(pages, key=lambda page: page == layout.DATA_DOCS_INDEX):  # the index goes last
        output.write(layout.data_docs_key(batch_id, name), texts[name].encode("utf-8"), content_type=_type(name))
    return len(pages)


def with_status_words(page: str) -> str:
    """Each status icon followed by its word (passed, failed, error), so the status reads without Font Awesome."""
    return _STATUS_ICON.sub(
        lambda found: f'{found.group(1)}<span class="crack-status"> {_STATUS_WORDS[found.group(2)]}</span>', page
    )


def with_offline_links(index: str, pages: Mapping[str, str]) -> str:
    """The index with a plain list of the other pages before GX's script-filled table (or at the end)."""
    items = "".join(
        f'<li><a href="{html.escape(name)}">{html.escape(_page_title(name))}</a></li>'
        for name in sorted(pages)
        if name != layout.DATA_DOCS_INDEX
    )
    block = OFFLINE_LINKS.format(items=items)
    found = _TABLE.search(index)
    if found is None:
        return index.replace("</body>", block + "</body>", 1) if "</body>" in index else index + block
    return index[: found.start()] + block + index[found.start() :]


def _page_title(name: str) -> str:
    """A link text from GX's page paths: ``validations/<suite path>/<run>/<time>/<batch>.html`` and
    ``expectations/<suite path>.html`` (the pages' own titles are all alike)."""
    parts = name.removesuffix(".html").split("/")
    if parts[0] == "validations" and len(parts) >= 5:
        return f"Validation result: batch {parts[-1]}, suite {'.'.join(parts[1:-3])}, run {parts[-2]}"
    if parts[0] == "expectations":
        return f"Expectation suite: {'.'.join(parts[1:])}"
    return name


def _type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
