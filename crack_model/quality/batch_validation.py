"""Validating a stored batch or labeled pool: read and profile it, judge it, write the files.

Every run writes ``validation/<batch_id>/result.json`` (the GX validation result), ``outcome.json``
(small: outcome, reasons, quarantined keys, counts, drift), ``profile.csv``, ``report.html`` and the GX
Data Docs (``data_docs/``, see ``data_docs``). The
objects of a ``passed_with_quarantine`` batch are copied to ``quarantine/<batch_id>/uploads/<relative key>``
(beside an earlier run's copy of other bytes, under the name with its digest) and listed with reasons in
``quarantine/<batch_id>/quarantine.json``; scoring skips them. Nothing is ever deleted: uploads stay where
they are, quarantine holds copies.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crack_model.core import layout
from crack_model.core.csv_text import STORED_DIALECT
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import CARD_NAME, MODEL_NAME
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import (
    file_uri_path,
    is_remote,
    open_store,
    read_uri,
    refuse_an_empty_store,
    split_uri,
)
from crack_model.core.uploads import (
    ManifestEntry,
    UnservableObjectError,
    list_uploads,
    read_upload,
    within_size_limit,
    write_manifest,
)
from crack_model.data.image_names import is_image_name
from crack_model.quality import drift
from crack_model.quality.data_docs import write_data_docs
from crack_model.quality.expectations import load_suite
from crack_model.quality.judging import validate_profile
from crack_model.quality.outcome import ValidationOutcome
from crack_model.quality.profile import GONE_WHEN_READ, ProfileConfig, label_of, labeled_objects, profile_listed
from crack_model.quality.quarantine import quarantine_objects
from crack_model.quality.report import render_report
from crack_model.quality.tables import plain
from crack_model.quality.thresholds import ValidationThresholds
from crack_model.registry.naming import registered_version_problem

if TYPE_CHECKING:
    import pandas as pd

log = module_logger(__name__)

RESULT_NAME = "result.json"
REPORT_NAME = "report.html"
PROFILE_NAME = "profile.csv"


def _resolve_reference(
    reference: str | Mapping[str, Any] | None, thresholds: ValidationThresholds | None
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The reference profile, or None and why it cannot be used: drift is advisory, so a damaged reference
    (the champion's, shared by every batch of a night) leaves drift unmeasured rather than failing every
    batch's validation, unless drift fails batches (``fail_on_drift``)."""
    if reference is None or isinstance(reference, Mapping):
        return reference, None
    try:
        return drift.load_reference(reference), None
    except drift.DamagedReferenceError as error:
        if (thresholds or ValidationThresholds()).fail_on_drift:
            raise
        log.warning("drift not measured: %s", error)
        return None, f"not judged: {error}"


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
    load_suite(suite, (thresholds or ValidationThresholds()).parameters())  # a broken suite: refused before profiling
    store = open_store(store_uri)
    if report_uri:
        refuse_a_report_over_an_input(report_uri, [store.url(layout.INCOMING)])
    resolved, unusable = _resolve_reference(reference, thresholds)
    uploads = list_uploads(store, batch_id)
    if not uploads:
        refuse_an_empty_store(store)
    log.info("profiling %d object(s) of %s", len(uploads), store.url(layout.incoming_prefix(batch_id)))
    profile, gone = _set_aside_gone(profile_listed(store, uploads, profile_config), UPLOAD_GONE)
    outcome, result, objects = validate_profile(
        profile, batch_id=batch_id, suite=suite, thresholds=thresholds, holdout_hashes=holdout_hashes,
        reference=resolved, drift_config=drift_config,
    )  # fmt: skip
    if unusable:
        outcome.drift = drift.not_judged(unusable, drift_config, images=int(profile["decodable"].astype(bool).sum()))
    outcome.source = store.url(layout.incoming_prefix(batch_id))
    outcome.left_out = gone
    versions = {info.key: info.version for info in uploads}
    gone_entries = [ManifestEntry(key, None, None, versions.get(key), gone=True) for key in gone]
    write_manifest(store, batch_id, [*_manifest_entries(profile, versions), *gone_entries])
    write_outputs(store, store, outcome, result, objects,
                  relative=lambda key: layout.relative_to_batch(key, batch_id), report_uri=report_uri)  # fmt: skip
    return outcome


UPLOAD_GONE = (
    "listed, then gone when read (deleted or moved away meanwhile): not judged, and not scored tonight "
    "(status missing); the next nightly run validates the batch again and scores it if it is back"
)
LABELED_GONE = (
    "listed, then gone when read (deleted or moved away meanwhile): not judged, and not trained on; "
    "the next validation of the pool judges it if it is back"
)


def _set_aside_gone(profile: pd.DataFrame, why: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The profile without the objects gone when read (listed, then deleted or moved away), and ``why`` each was
    left out. Not bad photos: quarantined, one was held back for good and counted against its batch or pool (all
    of a small batch's failed it, and a relabeling move looked like a damaged photo). An upload is kept in the
    manifest as ``gone``, gets a ``missing`` row and its batch is validated again the next night, which scores it if
    it is back (``uploads.validated_fetch``); a labeled photo is absent from ``profile.csv``, which training takes
    its photos from (``pool_copy.judged_photos``)."""
    is_gone = profile["decode_error"].astype(str).str.startswith(GONE_WHEN_READ)
    gone = dict.fromkeys(map(str, profile.loc[is_gone, "key"]), why)
    if gone:
        log.warning("%d object(s) were gone when read, left out of this validation: %s", len(gone),
                    ", ".join(sorted(gone)[:5]))  # fmt: skip
    return profile[~is_gone].reset_index(drop=True), gone


def _manifest_entries(profile: pd.DataFrame, versions: Mapping[str, str | None] | None = None) -> list[ManifestEntry]:
    """``versions``: each key's listing version (ETag or modification time), kept so that scoring can tell an
    upload written again since, although it never reads the bytes of one it scored before."""
    import pandas as pd  # imported here: pandas stays out of DAG parsing and `--help`

    entries = []
    for key, size, sha256 in profile[["key", "size_bytes", "sha256"]].itertuples(index=False):
        known_size = None if pd.isna(size) else int(size)  # <NA>: the object was never read
        known_sha256 = sha256 if isinstance(sha256, str) and sha256 else None
        entries.append(ManifestEntry(str(key), known_size, known_sha256, (versions or {}).get(str(key))))
    return entries


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
    source = open_store(source_uri)
    output = open_store(output_uri) if output_uri else source
    pool = _location(source.url(prefix) if prefix else source.uri)
    if (output_uri is None and not prefix) or (_location(output.uri) + "/").startswith(pool + "/"):
        msg = (
            f"validating the labeled folder {pool} needs an output store outside it for the validation and "
            "quarantine files (they must not land among the class folders): pass another output_uri / --output"
        )
        raise CrackModelError(msg)
    if report_uri:
        refuse_a_report_over_an_input(report_uri, [pool, source.url(layout.INCOMING)])
    refuse_an_empty_store(source)
    thresholds = thresholds or ValidationThresholds()
    resolved, unusable = _resolve_reference(reference, thresholds)
    left_out: dict[str, str] = {}
    labeled = labeled_objects(source, prefix, left_out)
    log.info("profiling %d labeled image(s) under %s", len(labeled), source.url(prefix) if prefix else source.uri)
    profile, gone = _set_aside_gone(
        profile_listed(source, labeled, profile_config, labels=lambda key: label_of(key, prefix)), LABELED_GONE
    )
    outcome, result, objects = validate_profile(
        profile, batch_id=name, suite="training", thresholds=thresholds, holdout_hashes=holdout_hashes,
        reference=resolved, drift_config=drift_config,
    )  # fmt: skip
    if unusable:
        outcome.drift = drift.not_judged(unusable, drift_config, images=int(profile["decodable"].astype(bool).sum()))
    outcome.source = source.url(prefix) if prefix else source.uri
    outcome.left_out = {**left_out, **gone}

    def relative(key: str) -> str:
        return key.removeprefix(prefix + "/") if prefix else key

    if write_reference_uri and outcome.passed:
        kept = profile[~profile["key"].isin(outcome.quarantined_keys)]
        drift.save_reference(drift.build_reference(kept, drift_config, source=outcome.source), write_reference_uri)
        outcome.files["drift_reference"] = write_reference_uri
    write_outputs(source, output, outcome, result, objects, relative=relative, report_uri=report_uri)
    return outcome


def _location(uri: str) -> str:
    """A store's place, comparable: a local path with its links resolved, an ``s3://`` URI without a last slash."""
    return uri.rstrip("/") if is_remote(uri) else os.path.realpath(uri)


def refuse_a_report_over_an_input(report_uri: str, inputs: Collection[str]) -> None:
    """A report path inside a batch wrote the HTML over a customer's photo, or into the batch as a new upload:
    refuse, before anything is read, an image's name, a place inside ``inputs`` (the folders or prefixes
    validation reads), a folder, an existing file not named .html, and a model's folder."""
    if why := _report_problem(report_uri, inputs):
        raise CrackModelError(f"--report {report_uri} {why}: give a new .html file outside the store's uploads "
                              "and model folders, e.g. --report build/report.html")  # fmt: skip


def _report_problem(report_uri: str, inputs: Collection[str]) -> str | None:
    report_store, name = split_uri(report_uri)
    local = file_uri_path(report_uri) if report_uri.startswith("file://") else report_uri
    place = _location(local)
    if is_image_name(name):
        return "is an image's name (the report's file name forgotten?)"
    if within := next((uri for uri in inputs if (place + "/").startswith(_location(uri) + "/")), None):
        return f"is inside {within}, which validation reads"
    if not is_remote(local):
        folder = os.path.dirname(place)
        if registered_version_problem(folder) or any(os.path.isfile(os.path.join(folder, model_file))
                                                     for model_file in (CARD_NAME, MODEL_NAME)):  # fmt: skip
            return "is in a model's folder"
        if os.path.isdir(place):
            return "is a folder"
    if not name.lower().endswith((".html", ".htm")) and report_store.exists(name):
        return "is an existing file not named .html"
    return None


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
    """Copy quarantined objects, then write result.json, profile.csv, report.html, the GX Data Docs
    (``data_docs/``; a failure there is recorded, never raised) and outcome.json (last)."""
    batch_id = outcome.batch_id
    manifest_key = layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST)
    # An earlier run's manifest is replaced (by an empty one if need be) so that scoring never skips stale keys.
    if outcome.quarantined or output.exists(manifest_key):
        judged = {entry.key: entry for entry in _manifest_entries(objects)}
        quarantine_objects(source, output, batch_id, outcome.quarantined, relative, outcome=outcome.outcome,
                           judged=judged, unread=_unread(objects))  # fmt: skip
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
    # Every field quoted, as in every CSV the workflow stores (csv_text.py: a key may hold "\r").
    profile = objects.to_csv(index=False, quoting=STORED_DIALECT.quoting, lineterminator=STORED_DIALECT.lineterminator)
    output.write(files["profile"], profile.encode("utf-8"), content_type="text/csv")
    page = render_report(outcome, objects).encode("utf-8")
    output.write(files["report"], page, content_type="text/html; charset=utf-8")
    if report_uri:
        report_store, report_key = split_uri(report_uri)
        report_store.write(report_key, page, content_type="text/html; charset=utf-8")
    outcome.data_docs = write_data_docs(output, batch_id, result, outcome.suite, outcome.validated_at)
    if outcome.data_docs["index"]:
        outcome.files["data_docs"] = output.url(outcome.data_docs["index"])
    output.write(files["outcome"], _json_bytes(outcome.to_dict()), content_type="application/json")
    log.info("validation files of %s written to %s", batch_id, output.url(layout.validation_key(batch_id)))


def _unread(profile: pd.DataFrame) -> dict[str, str]:
    """Why each object the profile could not read was not read (its listing's problem, the store's error)."""
    unread = profile[profile["sha256"].isna() | (profile["sha256"] == "")]
    rows = unread[["key", "decode_error"]].itertuples(index=False)
    return {str(key): str(error).removeprefix("cannot read: ") for key, error in rows}


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=plain) + "\n").encode("utf-8")


def load_hashes(uri: str, *, workers: int = 8) -> set[str]:
    """SHA-256 of every object under a folder or prefix (e.g. ``s3://bucket/holdout``), or of a CSV's ``sha256``
    column (e.g. a model's ``split.csv``)."""
    if uri.lower().endswith(".csv"):
        rows = csv.DictReader(io.StringIO(read_uri(uri).decode("utf-8")))
        if not rows.fieldnames or "sha256" not in rows.fieldnames:
            raise CrackModelError(f"{uri} has no sha256 column: pass a folder of images or a CSV with sha256")
        return {row["sha256"] for row in rows if row["sha256"]}
    store = open_store(uri)
    # One over the upload limit is never read: it cannot be in a labeled pool either, where it is quarantined.
    listed = [within_size_limit(info) for info in store.list("") if not layout.is_marker(info.key)]
    for info in listed:
        if info.problem:
            log.warning("not hashing %s: %s", info.key, info.problem)
    keys = [info.key for info in listed if not info.problem]
    if not keys and not (uri.startswith("s3://") or Path(uri).is_dir()):
        raise CrackModelError(f"holdout {uri} is neither a folder, a prefix with objects, nor a .csv")

    def digest(key: str) -> str | None:
        try:
            return hashlib.sha256(read_upload(store, key)).hexdigest()
        except UnservableObjectError as error:  # replaced by a file over the limit since it was listed
            log.warning("not hashing %s: %s", key, error)
            return None

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        return {found for found in pool.map(digest, keys) if found}
