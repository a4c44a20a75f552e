"""Data validation with Great Expectations: is a batch fit to be scored (or a pool fit to train on)?

A batch is profiled (``crack_model.quality.profile``: one row per object) and the rows are checked
against an expectation suite kept in the repository (``crack_model/quality/suites/*.json``, plain
GX 1.x suite JSON whose thresholds are ``$PARAMETER`` references filled from
``ValidationThresholds``). Checks GX has no expectation for are computed as columns or a
small derived table first: ``duplicate_of`` and ``in_holdout`` per object, and one row per
known class (``images``, ``share_of_largest``) for the class size and balance checks.

The outcome is one of:

* ``passed``: every expectation holds and no object broke a per-object check.
* ``passed_with_quarantine``: every expectation holds thanks to its ``mostly`` tolerance, and
  the few objects that broke one (at most ``max_bad_fraction`` of the batch) are held back:
  their bytes are copied to ``quarantine/<batch_id>/<relative key>`` and listed with reasons
  in ``quarantine/<batch_id>/quarantine.json``; scoring skips ``quarantined_keys(...)``.
* ``failed``: an expectation does not hold; the batch must not be scored. The reasons say why.

Every run writes ``validation/<batch_id>/result.json`` (the GX validation result),
``outcome.json`` (small: outcome, reasons, quarantined keys, counts, drift), ``profile.csv``
and ``report.html`` (each failing expectation and the objects that broke it). Nothing is
ever deleted: uploads stay where they are, quarantine holds copies.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.config import DEFAULT_CLASS_NAMES
from crack_model.core.errors import CrackModelError
from crack_model.core.storage import ObjectStore, open_store, read_uri, split_uri
from crack_model.quality import drift
from crack_model.quality.profile import ProfileConfig, batch_keys, label_of, labeled_keys, profile_objects

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SUITES = ("incoming", "training")
PASSED = "passed"
PASSED_WITH_QUARANTINE = "passed_with_quarantine"
FAILED = "failed"
RESULT_NAME = "result.json"
REPORT_NAME = "report.html"
PROFILE_NAME = "profile.csv"
REPORT_ROWS = 200  # offending objects listed per expectation in the HTML report
OUTCOME_OFFENDERS = 100  # ... and in outcome.json, which stays small


@dataclass(frozen=True)
class ValidationThresholds:
    """The numbers the suites' ``$PARAMETER`` references stand for.

    Image statistics: derived from the real METU sample (2,000 227x227 concrete patches) by
    ``derive_thresholds`` / ``bench/derive_bounds.py``: the 0.1st and 99.9th percentiles, widened
    by 15 % of the spread between them for brightness (a 0..255 scale) and by a factor of 1.5
    for contrast and blur (positive, long-tailed). Every image of the sample lies inside.
    The others are policy:

    Attributes:
        max_bad_fraction: share of objects that may break per-object checks and be quarantined
            (the suites' ``mostly`` is ``1 - max_bad_fraction``); more fails the batch.
        allowed_formats: Pillow format names accepted (MPO is what some phones call their JPEGs).
        min_side, max_side: accepted width and height in pixels. The sample is all 227x227; below
            200 px a photo is smaller than one training patch, above 12,000 it is a panorama.
        brightness_min/max: mean grey level (sample 99.1..237.9, percentiles 99.5..226.6).
        contrast_min/max: standard deviation of grey (sample 2.31..55.7, percentiles 2.71..50.7).
        blur_min/max: variance of the Laplacian at <= 512 px (sample 5.0..829, percentiles 5.30..639).
        max_saturated_fraction, max_dark_fraction: share of pixels at grey >= 250 / <= 5. The sample
            has almost none (99.9th percentiles 5.3 % and 0.06 %), so a derived bound would reject
            ordinary glare and shadow; a quarter of the picture clipped is the policy.
        class_names: the known classes (training suite).
        min_images_per_class: decodable images each class needs (training suite).
        min_class_balance: smallest class / largest class, at least (training suite).
        fail_on_drift: a drifted batch fails instead of only being flagged.
    """

    max_bad_fraction: float = 0.05
    allowed_formats: tuple[str, ...] = ("JPEG", "MPO", "PNG", "TIFF", "WEBP")
    min_side: int = 200
    max_side: int = 12_000
    brightness_min: float = 80.0
    brightness_max: float = 246.0
    contrast_min: float = 1.8
    contrast_max: float = 76.0
    blur_min: float = 3.5
    blur_max: float = 960.0
    max_saturated_fraction: float = 0.25
    max_dark_fraction: float = 0.25
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    min_images_per_class: int = 100
    min_class_balance: float = 0.2
    fail_on_drift: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_bad_fraction < 1:
            raise CrackModelError(f"max_bad_fraction must be in [0, 1), got {self.max_bad_fraction}")
        for low, high in (("min_side", "max_side"), ("brightness_min", "brightness_max"),
                          ("contrast_min", "contrast_max"), ("blur_min", "blur_max")):  # fmt: skip
            if getattr(self, low) > getattr(self, high):
                raise CrackModelError(f"threshold {low} ({getattr(self, low)}) exceeds {high} ({getattr(self, high)})")
        if not self.class_names:
            raise CrackModelError("class_names must name at least one class")
        if not 0 <= self.min_class_balance <= 1:
            raise CrackModelError(f"min_class_balance must be in [0, 1], got {self.min_class_balance}")

    def parameters(self) -> dict[str, Any]:
        """The values of the suites' ``$PARAMETER`` references."""
        values = dataclasses.asdict(self)
        values["mostly"] = round(1.0 - self.max_bad_fraction, 12)
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def replace(self, **overrides: Any) -> ValidationThresholds:
        """A copy with some values changed; unknown names are an error naming the known ones."""
        known = {item.name: item for item in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise CrackModelError(f"unknown threshold(s) {unknown}: use some of {sorted(known)}")
        converted: dict[str, Any] = {
            name: tuple(value) if isinstance(value, list) else value for name, value in overrides.items()
        }
        return dataclasses.replace(self, **converted)

    @classmethod
    def load(cls, uri: str) -> ValidationThresholds:
        """Defaults overridden by a JSON object of threshold names and values (a file or s3:// object)."""
        try:
            overrides = json.loads(read_uri(uri))
        except json.JSONDecodeError as error:
            raise CrackModelError(f"thresholds file {uri} is not JSON: {error}") from None
        if not isinstance(overrides, dict):
            raise CrackModelError(f"thresholds file {uri} must hold a JSON object of name: value")
        return cls().replace(**overrides)


def derive_thresholds(
    profile: pd.DataFrame,
    *,
    base: ValidationThresholds | None = None,
    low_quantile: float = 0.001,
    high_quantile: float = 0.999,
    linear_margin: float = 0.15,
    log_margin: float = 1.5,
) -> ValidationThresholds:
    """Thresholds for brightness, contrast and blur derived from profiled real photos.

    Method: take the ``low_quantile`` and ``high_quantile`` of each statistic over the decodable
    images; widen brightness (a bounded 0..255 scale) by ``linear_margin`` of the spread between
    them on each side, and contrast and blur (positive, long-tailed) by dividing the low end and
    multiplying the high end by ``log_margin``. Everything else is kept from ``base``.
    """
    usable = profile[profile["decodable"].astype(bool)]
    if usable.empty:
        raise CrackModelError("cannot derive thresholds from a profile without decodable images")
    base = base or ValidationThresholds()
    low, high = usable["brightness"].quantile(low_quantile), usable["brightness"].quantile(high_quantile)
    spread = high - low
    values = {
        "brightness_min": max(0.0, round(low - linear_margin * spread, 1)),
        "brightness_max": min(255.0, round(high + linear_margin * spread, 1)),
    }
    for name in ("contrast", "blur"):
        low, high = usable[name].quantile(low_quantile), usable[name].quantile(high_quantile)
        values[f"{name}_min"] = float(f"{low / log_margin:.3g}")
        values[f"{name}_max"] = float(f"{high * log_margin:.3g}")
    return base.replace(**values)


# ---------------------------------------------------------------- suites and Great Expectations


def load_suite(suite: str) -> dict[str, Any]:
    """A suite's JSON: ``incoming``, ``training`` (shipped with the package) or a path to a suite file."""
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
    return loaded


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


def _batch_definition(table: str) -> Any:
    """The (cached, ephemeral) GX context's batch definition for a pandas table; call with ``_gx_lock`` held."""
    if "context" not in _gx_state:
        gx = _import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _gx_state["context"] = context
        _gx_state["source"] = context.data_sources.add_pandas("crack_model")
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


# ---------------------------------------------------------------- tables


def objects_table(profile: pd.DataFrame, holdout_hashes: Collection[str] = ()) -> pd.DataFrame:
    """The profile plus ``duplicate_of`` (first key with the same bytes) and ``in_holdout``."""
    table = profile.copy()
    first_key: dict[str, str] = {}
    duplicates: list[str | None] = []
    for key, digest in sorted(zip(table["key"], table["sha256"], strict=True)):
        if isinstance(digest, str) and digest in first_key:
            duplicates.append(first_key[digest])
        else:
            if isinstance(digest, str):
                first_key[digest] = key
            duplicates.append(None)
    duplicate_of = dict(zip(sorted(table["key"]), duplicates, strict=True))
    table["duplicate_of"] = [duplicate_of[key] for key in table["key"]]
    table["duplicate_of"] = table["duplicate_of"].astype(object)
    holdout = set(holdout_hashes)
    table["in_holdout"] = [isinstance(digest, str) and digest in holdout for digest in table["sha256"]]
    table["in_holdout"] = table["in_holdout"].astype(bool)
    return table


def classes_table(profile: pd.DataFrame, class_names: Iterable[str]) -> pd.DataFrame:
    """One row per known class: decodable ``images`` and ``share_of_largest``."""
    import pandas as pd

    decodable = profile[profile["decodable"].astype(bool)]
    counts = decodable["label"].value_counts()
    names = list(class_names)
    images = [int(counts.get(name, 0)) for name in names]
    largest = max(images, default=0)
    shares = [count / largest if largest else 0.0 for count in images]
    return pd.DataFrame({"label": names, "images": images, "share_of_largest": shares})


# ---------------------------------------------------------------- judging


@dataclass
class ValidationOutcome:
    """What validation decided about a batch, and where its files are."""

    batch_id: str
    suite: str
    outcome: str
    reasons: list[str]
    quarantined: list[dict[str, Any]]
    counts: dict[str, int]
    checks: list[dict[str, Any]]
    drift: dict[str, Any] | None
    thresholds: dict[str, Any]
    source: str = ""
    holdout_checked: bool = False
    files: dict[str, str] = field(default_factory=dict)
    validated_at: str = field(default_factory=utc_now)

    @property
    def passed(self) -> bool:
        """True when the batch may be scored (possibly without its quarantined objects)."""
        return self.outcome != FAILED

    @property
    def quarantined_keys(self) -> set[str]:
        return {item["key"] for item in self.quarantined}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; each check lists at most ``OUTCOME_OFFENDERS`` offenders (result.json has them all)."""
        data = {**dataclasses.asdict(self), "passed": self.passed}
        for check in data["checks"]:
            check["offenders_total"] = len(check["offenders"])
            check["offenders"] = check["offenders"][:OUTCOME_OFFENDERS]
        return data

    def summary(self) -> str:
        """A few lines for the CLI and task logs."""
        counts = self.counts
        lines = [
            f"batch {self.batch_id}: {self.outcome} ({self.suite} suite; {counts.get('objects', 0)} objects, "
            f"{counts.get('quarantined', 0)} quarantined, {counts.get('failed_expectations', 0)} of "
            f"{counts.get('evaluated_expectations', 0)} expectations failed)"
        ]
        lines += [f"  reason: {reason}" for reason in self.reasons]
        lines += [f"  quarantined {item['key']}: {'; '.join(item['reasons'])}" for item in self.quarantined[:20]]
        if len(self.quarantined) > 20:
            lines.append(f"  ... and {len(self.quarantined) - 20} more quarantined (see quarantine.json)")
        if self.drift is not None:
            lines.append(f"  {drift.describe(self.drift)}")
        lines += [f"  {name}: {uri}" for name, uri in self.files.items()]
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """numpy / pandas scalars to plain Python, missing to None."""
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value


def _object_reason(meta: Mapping[str, Any], row: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str:
    template = meta.get("object_reason") or "{column} = {value}"
    column = kwargs.get("column", "")
    values = {**kwargs, **{name: _plain(value) for name, value in row.items()}}
    values.setdefault("value", values.get(column))
    try:
        text = template.format(**values)
    except (KeyError, ValueError, TypeError, IndexError):
        text = f"{column} = {values.get(column)!r}"
    return f"{meta.get('check', column)}: {text}"


def _check_entry(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    meta = dict(config.meta or {})
    details = result.result or {}
    key_column = TABLE_KEYS.get(meta.get("table", "objects"), "key")
    entry = {
        "name": meta.get("check", config.type),
        "expectation": config.type,
        "table": meta.get("table", "objects"),
        "column": config.kwargs.get("column"),
        "success": bool(result.success),
        "per_object": bool(meta.get("per_object", False)),
        "description": meta.get("description", ""),
        "reason": meta.get("reason", ""),
        "kwargs": {
            name: value if isinstance(value, list) else _plain(value)
            for name, value in config.kwargs.items()
            if name != "batch_id"
        },
        "element_count": _plain(details.get("element_count")),
        "unexpected_count": _plain(details.get("unexpected_count")),
        "unexpected_percent": _plain(details.get("unexpected_percent")),
        "observed_value": _plain(details.get("observed_value")),
        "offenders": [_plain(item.get(key_column)) for item in details.get("unexpected_index_list") or []],
        "error": "",
    }
    info = result.exception_info or {}
    if info.get("raised_exception"):
        entry["error"] = str(info.get("exception_message") or "the expectation raised an exception")
    return entry


def _failure_reason(entry: Mapping[str, Any]) -> str:
    name = entry["name"]
    if entry["error"]:
        return f"{name}: could not be evaluated ({entry['error']}); check the suite and the profile columns"
    mostly = entry["kwargs"].get("mostly")
    if entry["unexpected_count"] is not None and entry["element_count"]:
        allowed = f"; at most {100 * (1 - mostly):.1f}% may" if mostly is not None else ""
        shown = ", ".join(str(item) for item in entry["offenders"][:5])
        more = f" and {len(entry['offenders']) - 5} more" if len(entry["offenders"]) > 5 else ""
        return (
            f"{name}: {entry['unexpected_count']} of {entry['element_count']} {entry['table']} "
            f"({entry['unexpected_percent']:.1f}%) fail{allowed} ({shown}{more}) - {entry['reason']}"
        )
    return f"{name}: {entry['reason']}"


def judge(
    result: Any, objects: pd.DataFrame, thresholds: ValidationThresholds, drift_report: Mapping[str, Any] | None
) -> tuple[str, list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Decide the outcome from a GX result: (outcome, reasons, quarantined [{key, reasons}], checks)."""
    checks = [_check_entry(item) for item in result.results]
    reasons = [_failure_reason(entry) for entry in checks if not entry["success"]]
    rows = objects.set_index("key", drop=False)
    offending: dict[str, list[str]] = {}
    for item, entry in zip(result.results, checks, strict=True):
        if not entry["per_object"] or entry["table"] != "objects":
            continue
        meta = item.expectation_config.meta or {}
        for key in entry["offenders"]:
            row = rows.loc[key].to_dict() if key in rows.index else {}
            offending.setdefault(key, []).append(_object_reason(meta, row, entry["kwargs"]))
    total = len(objects)
    allowed = int(thresholds.max_bad_fraction * total)
    tolerance_ok = len(offending) <= allowed
    checks.append({
        "name": "bad_objects_within_tolerance", "expectation": "(computed beside GX)", "table": "objects",
        "column": None, "success": tolerance_ok, "per_object": False,
        "description": "Objects breaking any per-object check, together, are at most max_bad_fraction of the batch.",
        "reason": "too many objects break the checks to hold them back one by one: fix the upload and re-run",
        "kwargs": {"max_bad_fraction": thresholds.max_bad_fraction}, "element_count": total,
        "unexpected_count": len(offending), "unexpected_percent": 100.0 * len(offending) / total if total else 0.0,
        "observed_value": len(offending), "offenders": sorted(offending), "error": "",
    })  # fmt: skip
    if not tolerance_ok and result.success:
        reasons.append(
            f"bad_objects_within_tolerance: {len(offending)} of {total} objects break per-object checks, more "
            f"than the {thresholds.max_bad_fraction:.1%} that may be quarantined - fix the upload and re-run"
        )
    if drift_report is not None:
        checks.append({
            "name": "no_drift", "expectation": "(computed beside GX)", "table": "objects", "column": None,
            "success": drift_report.get("drifted") is not True, "per_object": False,
            "description": "Population stability index of each feature against the training reference.",
            "reason": drift_report.get("note", ""), "kwargs": {"psi_threshold": drift_report.get("threshold")},
            "element_count": drift_report.get("images"), "unexpected_count": None, "unexpected_percent": None,
            "observed_value": drift_report.get("psi"), "offenders": [], "error": "",
        })  # fmt: skip
        if drift_report.get("drifted") and thresholds.fail_on_drift:
            reasons.append(f"no_drift: {drift_report.get('note')}")
    if reasons:
        return FAILED, reasons, [], checks
    quarantined = [{"key": key, "reasons": offending[key]} for key in sorted(offending)]
    return (PASSED_WITH_QUARANTINE if quarantined else PASSED), [], quarantined, checks


# ---------------------------------------------------------------- running and writing


def validate_profile(
    profile: pd.DataFrame,
    *,
    batch_id: str,
    suite: str = "incoming",
    thresholds: ValidationThresholds | None = None,
    holdout_hashes: Collection[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    drift_config: drift.DriftConfig | None = None,
) -> tuple[ValidationOutcome, Any, pd.DataFrame]:
    """Validate an already computed profile; no I/O. Returns (outcome, GX result, objects table)."""
    thresholds = thresholds or ValidationThresholds()
    suite_json = load_suite(suite)
    objects = objects_table(profile, holdout_hashes or ())
    tables = {"objects": objects, "classes": classes_table(profile, thresholds.class_names)}
    result = run_suite(suite_json, tables, thresholds.parameters())
    drift_report = drift.compare(profile, reference, drift_config) if reference is not None else None
    outcome, reasons, quarantined, checks = judge(result, objects, thresholds, drift_report)
    statistics = result.statistics
    counts = {
        "objects": len(profile),
        "decodable": int(profile["decodable"].astype(bool).sum()),
        "quarantined": len(quarantined),
        "evaluated_expectations": int(statistics["evaluated_expectations"]),
        "failed_expectations": int(statistics["unsuccessful_expectations"]),
    }
    labels = profile["label"].dropna().value_counts().sort_index()
    if not labels.empty:
        counts.update({f"label:{name}": int(count) for name, count in labels.items()})
    report = ValidationOutcome(
        batch_id=batch_id, suite=suite, outcome=outcome, reasons=reasons, quarantined=quarantined, counts=counts,
        checks=checks, drift=drift_report, thresholds=thresholds.parameters(),
        holdout_checked=holdout_hashes is not None,
    )  # fmt: skip
    log.info("validation of %s with the %s suite: %s", batch_id, suite, outcome)
    return report, result, objects


def _resolve_reference(reference: str | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if reference is None or isinstance(reference, Mapping):
        return reference
    return drift.load_reference(reference)


def validate_batch(
    store_uri: str,
    batch_id: str,
    suite: str = "incoming",
    *,
    thresholds: ValidationThresholds | None = None,
    reference: str | Mapping[str, Any] | None = None,
    holdout_hashes: Collection[str] | None = None,
    report_uri: str | None = None,
    profile_config: ProfileConfig | None = None,
    drift_config: drift.DriftConfig | None = None,
) -> ValidationOutcome:
    """Validate ``<store>/incoming/<batch_id>/`` and write validation (and quarantine) files into the same store.

    Args:
        suite: ``incoming`` (nightly uploads) or ``training``, or a path to a suite JSON.
        reference: a drift reference profile (URI or dict, see ``crack_model.quality.drift``); None skips drift.
        holdout_hashes: SHA-256 of the holdout images (training suite); None: not checked.
        report_uri: also write the HTML report to this file or ``s3://`` object.

    Returns:
        The outcome; ``outcome.passed`` says whether the batch may be scored.
    """
    layout.validate_batch_id(batch_id)
    store = open_store(store_uri)
    resolved = _resolve_reference(reference)
    keys = batch_keys(store, batch_id)
    log.info("profiling %d object(s) of %s", len(keys), store.url(layout.incoming_prefix(batch_id)))
    profile = profile_objects(store, keys, profile_config)
    outcome, result, objects = validate_profile(
        profile, batch_id=batch_id, suite=suite, thresholds=thresholds, holdout_hashes=holdout_hashes,
        reference=resolved, drift_config=drift_config,
    )  # fmt: skip
    outcome.source = store.url(layout.incoming_prefix(batch_id))
    write_outputs(store, store, outcome, result, objects,
                  relative=lambda key: layout.relative_to_batch(key, batch_id), report_uri=report_uri)  # fmt: skip
    return outcome


def validate_labeled(
    source_uri: str,
    prefix: str = "labeled",
    *,
    name: str | None = None,
    output_uri: str | None = None,
    thresholds: ValidationThresholds | None = None,
    holdout_hashes: Collection[str] | None = None,
    reference: str | Mapping[str, Any] | None = None,
    report_uri: str | None = None,
    write_reference_uri: str | None = None,
    profile_config: ProfileConfig | None = None,
    drift_config: drift.DriftConfig | None = None,
) -> ValidationOutcome:
    """Validate a labeled pool ``<source>/<prefix>/<class>/...`` with the training suite.

    A local folder tree is ``source_uri=<folder>, prefix=""``. The files go to
    ``<output>/validation/<name>/`` and ``<output>/quarantine/<name>/`` (output: the source store by
    default, which must then hold the pool under a prefix so the files stay out of the class folders).

    Args:
        name: the pool's id in the validation and quarantine folders (default: the prefix, or "labeled").
        holdout_hashes: SHA-256 of the holdout images (see ``load_hashes``); None: not checked.
        write_reference_uri: if the pool passes, save its drift reference profile here.
    """
    prefix = prefix.strip("/")
    name = layout.validate_batch_id(name or prefix.replace("/", "-") or "labeled")
    if output_uri is None and not prefix:
        msg = (
            f"validating the labeled folder {source_uri} itself needs an output store for the validation and "
            "quarantine files (they must not land among the class folders): pass output_uri / --output"
        )
        raise CrackModelError(msg)
    source = open_store(source_uri)
    output = open_store(output_uri) if output_uri else source
    thresholds = thresholds or ValidationThresholds()
    resolved = _resolve_reference(reference)
    keys = labeled_keys(source, prefix)
    log.info("profiling %d labeled image(s) under %s", len(keys), source.url(prefix) if prefix else source.uri)
    profile = profile_objects(source, keys, profile_config, labels=lambda key: label_of(key, prefix))
    outcome, result, objects = validate_profile(
        profile, batch_id=name, suite="training", thresholds=thresholds, holdout_hashes=holdout_hashes,
        reference=resolved, drift_config=drift_config,
    )  # fmt: skip
    outcome.source = source.url(prefix) if prefix else source.uri

    def relative(key: str) -> str:
        return key.removeprefix(prefix + "/") if prefix else key

    if write_reference_uri and outcome.passed:
        kept = profile[~profile["key"].isin(outcome.quarantined_keys)]
        drift.save_reference(drift.build_reference(kept, drift_config, source=outcome.source), write_reference_uri)
        outcome.files["drift_reference"] = write_reference_uri
    write_outputs(source, output, outcome, result, objects, relative=relative, report_uri=report_uri)
    return outcome


def write_outputs(
    source: ObjectStore,
    output: ObjectStore,
    outcome: ValidationOutcome,
    result: Any,
    objects: pd.DataFrame,
    *,
    relative: Callable[[str], str],
    report_uri: str | None = None,
) -> None:
    """Copy quarantined objects, then write result.json, profile.csv, report.html and outcome.json (last)."""
    batch_id = outcome.batch_id
    manifest_key = layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST)
    # An earlier run's manifest is replaced (by an empty one if need be) so that scoring never skips stale keys.
    if outcome.quarantined or output.exists(manifest_key):
        quarantine_objects(source, output, batch_id, outcome.quarantined, relative, outcome=outcome.outcome)
        outcome.files["quarantine"] = output.url(manifest_key)
    result_json = result.to_json_dict()
    files = {
        "result": layout.validation_key(batch_id, RESULT_NAME),
        "profile": layout.validation_key(batch_id, PROFILE_NAME),
        "report": layout.validation_key(batch_id, REPORT_NAME),
        "outcome": layout.validation_key(batch_id, layout.OUTCOME),
    }
    outcome.files.update({name: output.url(key) for name, key in files.items()})
    if report_uri:
        outcome.files["report_copy"] = report_uri
    output.write(files["result"], _json_bytes(result_json), content_type="application/json")
    output.write(files["profile"], objects.to_csv(index=False).encode("utf-8"), content_type="text/csv")
    page = render_report(outcome, objects).encode("utf-8")
    output.write(files["report"], page, content_type="text/html; charset=utf-8")
    if report_uri:
        report_store, report_key = split_uri(report_uri)
        report_store.write(report_key, page, content_type="text/html; charset=utf-8")
    output.write(files["outcome"], _json_bytes(outcome.to_dict()), content_type="application/json")
    log.info("validation files of %s written to %s", batch_id, output.url(layout.validation_key(batch_id)))


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=_plain) + "\n").encode("utf-8")


def quarantine_objects(
    source: ObjectStore,
    output: ObjectStore,
    batch_id: str,
    quarantined: list[dict[str, Any]],
    relative: Callable[[str], str],
    *,
    outcome: str = PASSED_WITH_QUARANTINE,
    workers: int = 8,
) -> None:
    """Copy each object's bytes to ``quarantine/<batch_id>/<relative key>`` and write ``quarantine.json``.

    Copies of earlier runs stay (nothing is deleted); the manifest lists this run's objects only.
    """

    def copy(item: dict[str, Any]) -> None:
        target = layout.quarantine_key(batch_id, relative(item["key"]))
        output.write(target, source.read(item["key"]))
        item["quarantine_key"] = target

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quarantine") as pool:
        list(pool.map(copy, quarantined))
    manifest = {"batch_id": batch_id, "outcome": outcome, "quarantined_at": utc_now(), "objects": quarantined}
    output.write(layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST), _json_bytes(manifest),
                 content_type="application/json")  # fmt: skip
    if quarantined:
        log.warning("quarantined %d object(s) of %s", len(quarantined), batch_id)


def load_hashes(uri: str, *, workers: int = 8) -> set[str]:
    """SHA-256 of every object under a folder or prefix (e.g. ``s3://bucket/holdout``), or of a CSV's ``sha256``
    column (e.g. a model's ``split.csv``)."""
    import csv
    import hashlib
    import io

    if uri.lower().endswith(".csv"):
        rows = csv.DictReader(io.StringIO(read_uri(uri).decode("utf-8")))
        if not rows.fieldnames or "sha256" not in rows.fieldnames:
            raise CrackModelError(f"{uri} has no sha256 column: pass a folder of images or a CSV with sha256")
        return {row["sha256"] for row in rows if row["sha256"]}
    store = open_store(uri)
    keys = [info.key for info in store.list("") if not layout.is_marker(info.key)]
    if not keys and not (uri.startswith("s3://") or Path(uri).is_dir()):
        raise CrackModelError(f"holdout {uri} is neither a folder, a prefix with objects, nor a .csv")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        return set(pool.map(lambda key: hashlib.sha256(store.read(key)).hexdigest(), keys))


# ---------------------------------------------------------------- the HTML report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
.badge{display:inline-block;padding:.2em .6em;border-radius:.3em;color:#fff;font-weight:600}
.passed{background:#2e7d32}.passed_with_quarantine{background:#ef6c00}.failed{background:#c62828}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}
code{font-size:.95em}
"""


def _cell(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value, default=str))
    return html.escape("" if value is None else str(value))


def render_report(outcome: ValidationOutcome, objects: pd.DataFrame) -> str:
    """A self-contained HTML page: the outcome, each failing expectation and the objects that broke it."""
    escape = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Validation of {escape(outcome.batch_id)}: {escape(outcome.outcome)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Validation of batch <code>{escape(outcome.batch_id)}</code> "
        f"<span class='badge {escape(outcome.outcome)}'>{escape(outcome.outcome)}</span></h1>",
        f"<p>Suite <b>{escape(outcome.suite)}</b>, source <code>{escape(outcome.source)}</code>, "
        f"validated {escape(outcome.validated_at)}.</p>",
        "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in outcome.counts.items()),
        "</table>",
    ]
    if outcome.reasons:
        parts.append("<h2>Why the batch failed</h2><ul>")
        parts += [f"<li>{escape(reason)}</li>" for reason in outcome.reasons]
        parts.append("</ul>")
    if outcome.quarantined:
        parts.append(f"<h2>Quarantined objects ({len(outcome.quarantined)})</h2>")
        parts.append("<p>Copies kept under <code>quarantine/</code>; scoring skips them.</p>")
        parts.append("<table><tr><th>object</th><th>reasons</th></tr>")
        parts += [
            f"<tr><td><code>{escape(item['key'])}</code></td><td>{escape('; '.join(item['reasons']))}</td></tr>"
            for item in outcome.quarantined
        ]
        parts.append("</table>")
    parts.append("<h2>Checks</h2><table><tr><th>check</th><th>status</th><th>what it checks</th>"
                 "<th>parameters</th><th>unexpected</th><th>observed</th></tr>")  # fmt: skip
    for check in outcome.checks:
        status = "<span class='ok'>passed</span>" if check["success"] else "<span class='bad'>FAILED</span>"
        unexpected = "" if check["unexpected_count"] is None else f"{check['unexpected_count']}"
        if check["unexpected_percent"] is not None and check["unexpected_count"]:
            unexpected += f" ({check['unexpected_percent']:.1f}%)"
        parts.append(
            f"<tr><td><b>{escape(check['name'])}</b><br><small>{escape(check['expectation'])}</small></td>"
            f"<td>{status}</td><td>{escape(check['description'])}</td><td>{_cell(check['kwargs'])}</td>"
            f"<td>{escape(unexpected)}</td><td>{_cell(check['observed_value'])}</td></tr>"
        )
    parts.append("</table>")
    rows = objects.set_index("key", drop=False)
    for check in outcome.checks:
        if not check["offenders"] or check["name"] == "bad_objects_within_tolerance":
            continue
        if not check["success"]:
            verdict, text = "failed", check["reason"]
        elif outcome.outcome == PASSED_WITH_QUARANTINE:
            verdict, text = "within its tolerance: these objects are quarantined", check["description"]
        else:
            verdict, text = "within its tolerance, but the batch failed for other reasons", check["description"]
        parts.append(f"<h2>{escape(check['name'])}: {len(check['offenders'])} offending ({verdict})</h2>")
        row_name = {"objects": "object", "classes": "class"}.get(check["table"], check["table"])
        parts.append(f"<p>{escape(text)}</p><table><tr><th>{escape(row_name)}</th>")
        column = check["column"]
        extra = [name for name in (column, "decode_error") if name and name in rows.columns]
        parts.append("".join(f"<th>{escape(name)}</th>" for name in extra) + "</tr>")
        for key in check["offenders"][:REPORT_ROWS]:
            cells = "".join(f"<td>{_cell(rows.at[key, name])}</td>" for name in extra) if key in rows.index else ""
            parts.append(f"<tr><td><code>{escape(str(key))}</code></td>{cells}</tr>")
        if len(check["offenders"]) > REPORT_ROWS:
            parts.append(f"<tr><td>... and {len(check['offenders']) - REPORT_ROWS} more (see result.json)</td></tr>")
        parts.append("</table>")
    if outcome.drift is not None:
        report = outcome.drift
        parts.append(f"<h2>Drift</h2><p>{escape(str(report.get('note', '')))}</p>")
        if report.get("psi"):
            parts.append("<table><tr><th>feature</th><th>PSI (best class mix)</th><th>PSI (training mix)</th></tr>")
            for name, value in report["psi"].items():
                css = "bad" if value > report["threshold"] else "ok"
                parts.append(f"<tr><td>{escape(name)}</td><td class='{css}'>{value:.3f}</td>"
                             f"<td>{_cell(report['psi_unadjusted'].get(name))}</td></tr>")  # fmt: skip
            parts.append(f"</table><p>Class mix fitted: {_cell(report.get('class_mix'))}</p>")
    parts.append("<h2>Files</h2><ul>")
    parts += [f"<li>{escape(name)}: <code>{escape(uri)}</code></li>" for name, uri in outcome.files.items()]
    parts.append("</ul></body></html>")
    return "\n".join(parts)
