"""The expectation suites and the Great Expectations runner.

A suite is plain GX 1.x suite JSON kept in ``crack_model/quality/suites/`` (or any ``.json`` path) whose
thresholds are ``$PARAMETER`` references filled from ``ValidationThresholds.parameters()``; each
expectation's ``meta.table`` names the table it checks (``objects``: one row per object, ``classes``:
one row per known class, see ``crack_model.quality.tables``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from crack_model.core.errors import CrackModelError
from crack_model.core.storage import read_uri

if TYPE_CHECKING:
    import pandas as pd

SUITES = ("incoming", "training")


def load_suite(suite: str, parameters: Collection[str] | None = None) -> dict[str, Any]:
    """A suite's JSON: ``incoming``, ``training`` (shipped with the package) or a path to a suite file.

    Checked before it is used, each expectation against GX's registry and its ``$PARAMETER`` references
    against ``parameters`` (when given): GX leaves out an expectation it cannot build with a log line, and a
    misspelled check would let a batch pass without it.
    """
    if suite in SUITES:
        text = resources.files("crack_model.quality").joinpath("suites", f"{suite}.json").read_text(encoding="utf-8")
    elif suite.endswith(".json"):
        text = read_uri(suite).decode("utf-8")
    else:
        raise CrackModelError(f"unknown suite {suite!r}: use {' or '.join(SUITES)}, or a path to a suite .json")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        raise CrackModelError(f"suite {suite} is not valid JSON: {error}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("expectations"), list):
        raise CrackModelError(f"suite {suite} is not an expectation suite (no 'expectations' list)")
    _check_expectations(loaded, suite, parameters)
    return loaded


def _check_expectations(loaded: Mapping[str, Any], suite: str, parameters: Collection[str] | None) -> None:
    if not isinstance(loaded.get("name"), str) or not loaded["name"].strip():
        raise CrackModelError(f"suite {suite} has no 'name': give the suite a name")
    _import_gx()
    from great_expectations.exceptions.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    for position, expectation in enumerate(loaded["expectations"], 1):
        kind = expectation.get("type") if isinstance(expectation, dict) else None
        where = f"expectation {position} of suite {suite}"
        if not isinstance(kind, str):
            raise CrackModelError(f"{where} has no 'type' (such as expect_column_values_to_be_between): add one")
        try:
            get_expectation_impl(kind)
        except ExpectationNotFoundError:
            raise CrackModelError(f"{where}: GX has no expectation {kind!r}; check its spelling") from None
        unknown = sorted(set(_parameter_references(expectation.get("kwargs"))) - set(parameters or ()))
        if parameters is not None and unknown:
            known = ", ".join(sorted(parameters))
            msg = f"{where} ({kind}) refers to $PARAMETER {', '.join(unknown)}: use one of {known}"
            raise CrackModelError(msg)


def _parameter_references(value: Any) -> Iterator[str]:
    """The names of the ``{"$PARAMETER": name}`` references anywhere in an expectation's kwargs."""
    if isinstance(value, dict):
        if isinstance(value.get("$PARAMETER"), str):
            yield value["$PARAMETER"]
        for item in value.values():
            yield from _parameter_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _parameter_references(item)


_gx_lock = threading.Lock()
_gx_state: dict[str, Any] = {}

# The key column GX reports for each unexpected row, per table.
TABLE_KEYS = {"objects": "key", "classes": "label"}


def _import_gx() -> Any:
    # GX logs its own set-up at INFO (dozens of lines); only its warnings matter here.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations

    # This module pins its own logger to INFO and announces each context's temporary docs folder.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return great_expectations


def _context() -> Any:
    """The process's one ephemeral GX context (created on first use); call with ``_gx_lock`` held."""
    if "context" not in _gx_state:
        gx = _import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _gx_state["context"] = context
        _gx_state["source"] = context.data_sources.add_pandas("crack_model")
    return _gx_state["context"]


@contextmanager
def gx_context() -> Iterator[Any]:
    """The cached GX context, held for the caller alone (its stores are shared by every thread)."""
    with _gx_lock:
        yield _context()


def _batch_definition(table: str) -> Any:
    """The (cached, ephemeral) GX context's batch definition for a pandas table; call with ``_gx_lock`` held."""
    _context()
    if table not in _gx_state:
        asset = _gx_state["source"].add_dataframe_asset(table)
        _gx_state[table] = asset.add_batch_definition_whole_dataframe(table)
    return _gx_state[table]


def run_suite(suite: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], parameters: Mapping[str, Any]) -> Any:
    """Validate each table with its share of the suite; one merged GX ``ExpectationSuiteValidationResult``."""
    gx = _import_gx()
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

    by_table: dict[str, list[dict[str, Any]]] = {}
    for expectation in suite["expectations"]:
        table = expectation.get("meta", {}).get("table", "objects")
        if table not in tables:
            raise CrackModelError(f"suite {suite.get('name')} checks a table {table!r} this validation does not build")
        by_table.setdefault(table, []).append(expectation)
    results: list[Any] = []
    table_meta: dict[str, Any] = {}
    with _gx_lock:
        for table, expectations in by_table.items():
            part = gx.ExpectationSuite(name=f"{suite['name']}.{table}", expectations=expectations)
            batch = _batch_definition(table).get_batch(batch_parameters={"dataframe": tables[table]})
            result_format = {
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [TABLE_KEYS.get(table, "key")],
                "return_unexpected_index_query": False,
            }
            result = batch.validate(part, result_format=result_format, expectation_parameters=dict(parameters))
            results.extend(result.results)
            table_meta[table] = result.to_json_dict().get("meta", {})
    successful = sum(1 for result in results if result.success)
    statistics = {
        "evaluated_expectations": len(results),
        "successful_expectations": successful,
        "unsuccessful_expectations": len(results) - successful,
        "success_percent": 100.0 * successful / len(results) if results else None,
    }
    meta = {"great_expectations_version": gx.__version__, "tables": table_meta}
    return ExpectationSuiteValidationResult(
        success=successful == len(results), results=results, suite_name=suite["name"],
        suite_parameters=dict(parameters), statistics=statistics, meta=meta,
    )  # fmt: skip
