"""The shape the ops pages expect of each JSON document they read, and fitting a document to it.

A document edited by hand, written by another release or damaged in a way that still parses can
hold a field of the wrong type: a count as a string, an object as a list. The pages read each
document through ``StoreReader.json(key, shape)`` with a shape declared here, and ``conform``
fits it: a field of the wrong type is treated as absent (None, or an empty list or object for a
container, which every page already reads as "not recorded"), a list item or object entry of the
wrong type is left out, and each is one line in the page's ``problems`` naming the document and
the field. The rest of the document, and of the page, is shown.

JSON ``null`` always fits: it is how a writer says "not recorded" (an object entry that is null is
left out, as the pages skip it anyway). Fields a shape does not name are
kept as they are (the pages do not read them). The documents with a typed definition
(``BatchSummary``, ``RunSummary``, the ``ModelCard``) take their shape from it, so it cannot drift from the writer's.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crack_model.core.documents import BatchSummary, RunSummary
from crack_model.core.model_card import ModelCard

MAX_PROBLEMS_PER_DOCUMENT = 5  # a list of ten thousand bad items is one document's problem, not ten thousand


@dataclass(frozen=True)
class Value:
    """A JSON scalar of one of ``types``; ``name`` says what was expected, in the problem line."""

    types: tuple[type, ...]
    name: str

    def fits(self, value: Any) -> bool:
        if isinstance(value, bool):  # Python counts a bool as an int; JSON does not count true as 1
            return bool in self.types or object in self.types
        if object not in self.types and isinstance(value, int | float) and not _showable(value):
            return False
        return isinstance(value, self.types)


def _showable(number: int | float) -> bool:
    """A number the pages can format: Infinity or an integer of 400 digits (JSON allows both) raised OverflowError
    in the page's filters and took the whole page down. NaN formats (as "nan") and is kept."""
    return abs(number) <= 2**63 if isinstance(number, int) else not math.isinf(number)


@dataclass(frozen=True)
class ListOf:
    """A JSON array of items of one shape; with ``length``, exactly that many (an interval is a pair)."""

    item: Shape
    length: int | None = None


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose keys are data (feature -> PSI, label -> count), each value of one shape."""

    value: Shape


@dataclass(frozen=True)
class Record:
    """A JSON object with named fields, each of its own shape."""

    fields: Mapping[str, Shape]


Shape = Value | ListOf | MapOf | Record

TEXT = Value((str,), "text")
COUNT = Value((int,), "a whole number")
NUMBER = Value((int, float), "a number")
FLAG = Value((bool,), "true or false")
ANY = Value((object,), "any value")
# Whatever the pages only show as it is (a nested record of the training run, say) still has to be an object.
OBJECT = MapOf(ANY)


def conform(document: dict[str, Any], shape: Record, key: str) -> tuple[dict[str, Any], list[str]]:
    """``document`` with every field that does not fit ``shape`` treated as absent, and one problem line each.

    Args:
        document: a parsed JSON object (it is not changed).
        shape: what the page expects of it.
        key: the document's store key, which each problem line names.

    Returns:
        The fitted document and the problems (at most ``MAX_PROBLEMS_PER_DOCUMENT`` lines, then a count).
    """
    misfits: list[str] = []
    fitted = _conform(document, shape, "", misfits)
    problems = [f"{key}: {misfit}" for misfit in misfits[:MAX_PROBLEMS_PER_DOCUMENT]]
    if len(misfits) > MAX_PROBLEMS_PER_DOCUMENT:
        problems.append(f"{key}: ... and {len(misfits) - MAX_PROBLEMS_PER_DOCUMENT} more fields of the wrong type")
    return (fitted if isinstance(fitted, dict) else {}), problems


class _Misfit:
    """Marks a value that does not fit its shape (None cannot: null always fits)."""


_MISFIT = _Misfit()


def _conform(value: Any, shape: Shape, path: str, misfits: list[str]) -> Any:
    """``value`` fitted to ``shape`` (parts that do not fit left out or absent), or ``_MISFIT``."""
    if value is None:
        return None
    if isinstance(shape, Value):
        return value if shape.fits(value) else _MISFIT
    if isinstance(shape, ListOf):
        if not isinstance(value, list) or (shape.length is not None and len(value) != shape.length):
            return _MISFIT
        items = []
        for index, item in enumerate(value):
            fitted = _conform(item, shape.item, f"{path}[{index}]", misfits)
            if item is None and shape.length is None and shape.item is not ANY:
                fitted = _MISFIT  # a null among batch ids or reasons is no item (sorting or showing it fails)
            if fitted is _MISFIT:
                if shape.length is not None:  # a pair with one bad half is no pair
                    return _MISFIT
                misfits.append(_describe(f"{path}[{index}]", item, shape.item, "left out"))
                continue
            items.append(fitted)
        return items
    if not isinstance(value, dict):
        return _MISFIT
    if isinstance(shape, MapOf):
        entries = {}
        for name, item in value.items():
            if item is None:  # an entry without a value is no entry (a feature whose PSI was not computed)
                continue
            fitted = _conform(item, shape.value, _join(path, name), misfits)
            if fitted is _MISFIT:
                misfits.append(_describe(_join(path, name), item, shape.value, "left out"))
                continue
            entries[name] = fitted
        return entries
    record = dict(value)
    for name, field_shape in shape.fields.items():
        if name not in value:
            continue
        if value[name] is None and isinstance(field_shape, ListOf | MapOf):
            record[name] = _absent(field_shape)  # null: not recorded, read as an empty list or map (iterated)
            continue
        fitted = _conform(value[name], field_shape, _join(path, name), misfits)
        if fitted is _MISFIT:
            misfits.append(_describe(_join(path, name), value[name], field_shape, "shown as absent"))
            fitted = _absent(field_shape)
        record[name] = fitted
    return record


def _absent(shape: Shape) -> Any:
    """What a field of this shape holds when it is not recorded: the pages read None, [] and {} alike."""
    if isinstance(shape, ListOf):
        return []
    return {} if isinstance(shape, MapOf | Record) else None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else str(name)


def _expected(shape: Shape) -> str:
    if isinstance(shape, Value):
        return shape.name
    if isinstance(shape, ListOf):
        return "a list" if shape.length is None else f"a list of {shape.length}"
    return "an object"


def _describe(path: str, value: Any, shape: Shape, consequence: str) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{path} is {shown}, not {_expected(shape)}; {consequence}"


def typed_shape(document_class: type, **overrides: Shape) -> Record:
    """The shape of a typed document (a dataclass such as ``BatchSummary``), from its field annotations.

    ``overrides`` refine fields the definition leaves open (``list[dict[str, Any]]``) where the pages
    read inside them.
    """
    hints = typing.get_type_hints(document_class)
    # format_version is left to from_dict, which checks it and says what to do about a newer one.
    fields = {
        item.name: _shape_of(hints[item.name])
        for item in dataclasses.fields(document_class)
        if item.name != "format_version"
    }
    return Record({**fields, **overrides})


def _shape_of(annotation: Any) -> Shape:
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):  # X | None: null fits anyway
        (annotation,) = [argument for argument in arguments if argument is not type(None)]
        return _shape_of(annotation)
    if origin is list:
        return ListOf(_shape_of(arguments[0]))
    if origin is dict:
        return MapOf(_shape_of(arguments[1]))
    scalars = {str: TEXT, int: COUNT, float: NUMBER, bool: FLAG}
    return scalars.get(annotation, ANY)


# validation/<batch>/outcome.json (crack_model.quality.outcome.ValidationOutcome.to_dict): the parts pages read.
DRIFT = Record(
    {
        "checked": FLAG,
        "drifted": FLAG,
        "psi": MapOf(NUMBER),
        "drifted_features": ListOf(TEXT),
        "threshold": NUMBER,
        "note": TEXT,
    }
)
CHECK = Record(
    {
        "name": TEXT,
        "reason": TEXT,
        "success": FLAG,
        "report_only": FLAG,
        "unexpected_count": COUNT,
        "element_count": COUNT,
        "offenders": ListOf(ANY),
        "offenders_total": COUNT,
    }
)
VALIDATION_OUTCOME = Record(
    {
        "suite": TEXT,
        "outcome": TEXT,
        "validated_at": TEXT,
        "reasons": ListOf(TEXT),
        "counts": MapOf(COUNT),
        "checks": ListOf(CHECK),
        "drift": DRIFT,
        "data_docs": Record({"index": TEXT, "error": TEXT}),
    }
)

# results/<batch>/summary.json and runs/<run_id>.json, whose validations are each batch's line of the run.
BATCH_SUMMARY = typed_shape(BatchSummary)
RUN_VALIDATION = Record(
    {
        "batch_id": TEXT,
        "outcome": TEXT,
        "objects": COUNT,
        "quarantined": COUNT,
        "drifted": FLAG,
        "reasons": ListOf(TEXT),
    }
)
RUN_SUMMARY = typed_shape(RunSummary, validations=ListOf(RUN_VALIDATION))

# models/<name>/versions/<version>/version.json (crack_model.registry): lineage, card, files.
TRAINING_FIGURES = ("crack_recall", "crack_precision", "accuracy", "roc_auc")
PHOTO_CALIBRATION = Record(
    {"runtimes": ListOf(TEXT), "clean_mosaics": COUNT, "crack_mosaics": COUNT, "labeled_photos": COUNT}
)
CARD = typed_shape(ModelCard, photo_calibration=PHOTO_CALIBRATION)
DATA_MANIFEST = Record(
    {
        "file": TEXT,
        "images": COUNT,
        "per_label": MapOf(COUNT),
        "per_split": OBJECT,
        "per_slice": MapOf(COUNT),
        "sha256": TEXT,
        "content_digest": TEXT,
    }
)
TRAINING_METRICS = Record({"split": TEXT, "images": COUNT, **dict.fromkeys(TRAINING_FIGURES, NUMBER)})
STARTED_FROM = Record(
    {"version": TEXT, "model": TEXT, "used": FLAG, "reason": TEXT, "anchor_weight": NUMBER, "kept_in_train": COUNT}
)
MODEL_VERSION = Record(
    {
        "created_at": TEXT,
        "registered_at": TEXT,
        "registered_by": TEXT,
        "run_id": TEXT,
        "git_commit": TEXT,
        "library_version": TEXT,
        "card": CARD,
        "data_manifest": DATA_MANIFEST,
        "metrics": TRAINING_METRICS,
        "started_from": STARTED_FROM,
        "drift_reference": ANY,
        "files": MapOf(Record({"sha256": TEXT, "size": COUNT})),
    }
)

# models/<name>/versions/<version>/gate_report.json (crack_model.evaluation.gate): decision, holdout, figures.
INTERVAL = ListOf(NUMBER, length=2)
GATE_MODEL = Record(
    {
        "runtime": TEXT,
        "metrics": MapOf(NUMBER),
        "intervals": MapOf(INTERVAL),
        "exact_intervals": MapOf(INTERVAL),
    }
)
GATE_REPORT = Record(
    {
        "decision": TEXT,
        "failed_checks": ListOf(TEXT),
        "reasons": ListOf(TEXT),
        "approved_runtimes": ListOf(TEXT),
        "champion_version": TEXT,
        "finished_at": TEXT,
        "gated_by": TEXT,
        "run_id": TEXT,
        "holdout": Record({"uri": TEXT, "images": COUNT, "per_class": MapOf(COUNT), "listing_digest": TEXT}),
        "policy": Record({"policy_version": ANY, "digest": TEXT, "bootstrap": Record({"confidence": NUMBER})}),
        "candidate": GATE_MODEL,
    }
)
