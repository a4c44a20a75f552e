"""A model registry on the object store: immutable versions, and aliases moved by compare-and-swap.

```
models/<name>/versions/<version>/model.keras, model.json, *.tflite, metrics.json, split.csv, ...
models/<name>/versions/<version>/data_manifest.csv     the training images (uri, label, sha256)
models/<name>/versions/<version>/drift_reference.json  the drift reference profile (if given)
models/<name>/versions/<version>/version.json          written last: the version is complete
models/<name>/versions/<version>/gate_report.json|.html, approved_runtimes.json   write-once gate results
models/<name>/aliases.json                              {"revision": n, "aliases": {...}, "last": {...}}
models/<name>/audit/<revision>-<event>-<alias>-<id>.json   one write-once record per alias change
```

A version folder is never overwritten: ``register`` refuses an existing version. The aliases
live in one small document replaced whole with a conditional write (S3 ``If-Match``, a file
lock locally), so a reader sees the old pointer or the new one, and of two concurrent
promotions from the same champion exactly one wins. Each change is also a write-once audit
record, written before the conditional write commits it; aliases.py explains how readers tell
committed records from orphans.

A gate result is claimed by its JSON report (created only if absent, so of two gates racing on
one version the loser writes nothing); the page and the runtime list are derived from it, and
``restore_gate_files`` writes them again if a crash left only the JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crack_model import __version__
from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.concurrency import map_bounded
from crack_model.core.documents import FORMAT_VERSION, read_if_present
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import MODEL_NAME, SPLIT_NAME, ModelCard
from crack_model.core.object_keys import ObjectStore, PreconditionFailedError, join_key
from crack_model.core.storage import open_store
from crack_model.data.labeled import LabeledImage
from crack_model.data.manifest import DATA_MANIFEST, build_data_manifest, read_data_manifest, with_split_slices
from crack_model.registry.aliases import READ_WORKERS, AliasOperations
from crack_model.registry.claims import claim_version
from crack_model.registry.naming import (
    APPROVED_RUNTIMES,
    CLAIM,
    DEFAULT_NAME,
    DRIFT_REFERENCE,
    GATE_HTML,
    GATE_REPORT,
    MODEL_ARTIFACTS,
    RESERVED_NAMES,
    VERSION_MARKER,
    VERSIONS,
    GateReportExistsError,
    VersionExistsError,
    VersionNotFoundError,
    default_actor,
    file_sha256,
    metrics_summary,
    validate_name,
    validate_version,
    version_document_problem,
)
from crack_model.registry.serving_files import serving_file_problems

log = module_logger(__name__)
DocumentCheck = Callable[[dict[str, Any]], str | None]  # what makes a document unusable, or None


class Registry(AliasOperations):
    """Model versions and their aliases under ``models/`` of one store (a folder or ``s3://``)."""

    def __init__(self, store: ObjectStore | str | os.PathLike[str]) -> None:
        self.store: ObjectStore = open_store(store) if isinstance(store, str | os.PathLike) else store

    @property
    def uri(self) -> str:
        return self.store.uri

    # Keys -----------------------------------------------------------------------------------

    def model_prefix(self, name: str) -> str:
        return join_key(layout.MODELS, validate_name(name))

    def version_prefix(self, name: str, version: str) -> str:
        return join_key(self.model_prefix(name), VERSIONS, validate_version(version))

    def version_key(self, name: str, version: str, file_name: str) -> str:
        return join_key(self.version_prefix(name, version), file_name)

    def version_url(self, name: str, version: str, file_name: str = "") -> str:
        key = self.version_key(name, version, file_name) if file_name else self.version_prefix(name, version)
        return self.store.url(key)

    # Versions -------------------------------------------------------------------------------

    def register(
        self,
        model_dir: str | Path,
        name: str = DEFAULT_NAME,
        *,
        data_manifest: str | Path | Sequence[LabeledImage] | None = None,
        drift_reference: str | Path | None = None,
        extra_files: Iterable[str | Path] = (),
        actor: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Upload a trained model folder as a new, immutable version and return its version.

        Args:
            model_dir: a folder written by ``train`` (model.keras, model.json, exports, metrics...).
            data_manifest: the training images: a ``uri,label,sha256`` CSV or LabeledImages;
                default: the model folder's ``split.csv`` (every image the run split).
            drift_reference: a drift reference profile (JSON) stored as ``drift_reference.json``.
            extra_files: more files to keep with the version, stored under their file names.
        """
        model_dir = Path(model_dir)
        card = ModelCard.load(model_dir)
        version = validate_version(card.version)
        if not (model_dir / MODEL_NAME).is_file():
            raise CrackModelError(f"{model_dir} has no {MODEL_NAME}: register a folder written by training")
        marker = self.version_key(name, version, VERSION_MARKER)
        if self.store.exists(marker):
            raise VersionExistsError(self._exists_message(name, version))

        files = {file_name: model_dir / file_name for file_name in MODEL_ARTIFACTS if (model_dir / file_name).is_file()}
        files.update({path.name: path for path in sorted(model_dir.glob("*.png"))})
        for extra in extra_files:
            path = Path(extra)
            if not path.is_file():
                raise CrackModelError(f"extra file {path} does not exist")
            if path.name in RESERVED_NAMES or path.name in files:
                raise CrackModelError(f"extra file {path} would replace the version's own {path.name}: rename it")
            files[path.name] = path
        if drift_reference is not None:
            reference = Path(drift_reference)
            if not reference.is_file():
                raise CrackModelError(f"drift reference {reference} does not exist: pass the profile's JSON file")
            files[DRIFT_REFERENCE] = reference

        manifest_bytes, manifest_summary = build_data_manifest(data_manifest, model_dir)
        recorded = {file_name: {"sha256": file_sha256(path), "size": path.stat().st_size}
                    for file_name, path in sorted(files.items())}  # fmt: skip
        if manifest_bytes is not None:
            digest = hashlib.sha256(manifest_bytes).hexdigest()
            recorded[DATA_MANIFEST] = {"sha256": digest, "size": len(manifest_bytes)}
        claim_version(self.store, self.version_key(name, version, CLAIM), recorded)
        for file_name, path in sorted(files.items()):
            self.store.upload(path, self.version_key(name, version, file_name))
        if manifest_bytes is not None:
            self.store.write(self.version_key(name, version, DATA_MANIFEST), manifest_bytes, content_type="text/csv")

        metrics_file = model_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
        document = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "version": version,
            "registered_at": utc_now(),
            "registered_by": actor or default_actor(),
            "run_id": run_id,
            "created_at": card.created_at,
            "library_version": card.library_version,
            "git_commit": card.git_commit,
            "registry_library_version": __version__,
            "card": asdict(card),
            "files": recorded,
            "data_manifest": manifest_summary,
            "drift_reference": DRIFT_REFERENCE if DRIFT_REFERENCE in files else None,
            "metrics": metrics_summary(metrics),
            "started_from": (metrics or {}).get("started_from"),  # the model whose head training started from
        }
        try:
            self.store.write_if_match(marker, _json_bytes(document), None)
        except PreconditionFailedError:
            raise VersionExistsError(self._exists_message(name, version)) from None
        log.info("registered %s version %s at %s", name, version, self.version_url(name, version))
        return version

    def _exists_message(self, name: str, version: str) -> str:
        return (
            f"model {name} version {version} is already registered at {self.version_url(name, version)}; "
            "versions are immutable: train again (a new version) instead of overwriting"
        )

    def exists(self, name: str, version: str) -> bool:
        return self.store.exists(self.version_key(name, version, VERSION_MARKER))

    def read_version(self, name: str, version: str) -> dict[str, Any]:
        """The version's ``version.json`` (only complete versions have one)."""
        key = self.version_key(name, version, VERSION_MARKER)
        data = read_if_present(self.store, key)  # one GET, no HEAD first
        if data is None:
            known = ", ".join(self.version_names(name)[-5:]) or "none"
            msg = f"model {name} has no registered version {version} in {self.uri} (latest: {known})"
            raise VersionNotFoundError(msg)
        return self._document(key, data, version_document_problem)

    def _document(self, key: str, data: bytes, problem_of: DocumentCheck = lambda _: None) -> dict[str, Any]:
        """A registry JSON document read from ``key``; a damaged one (or one ``problem_of`` faults) is named, not a
        traceback."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            document = error
        if not isinstance(document, dict):
            why: object = document if isinstance(document, ValueError) else "not a JSON object"
        elif (why := problem_of(document)) is None:
            return document
        raise CrackModelError(f"{self.store.url(key)} is damaged ({why}): restore it from a backup")

    def check_serving_files(self, name: str, version: str) -> None:
        """Raise unless the card and every runtime file of the version are in the store as registered (size and
        SHA-256, each file read once: ``serving_files``): what a rollback checks before pointing nights at it."""
        files = self.read_version(name, version).get("files", {})
        broken = serving_file_problems(self.store, files, lambda file_name: self.version_key(name, version, file_name))
        if broken:
            msg = (
                f"{self.version_url(name, version)} cannot serve: {'; '.join(broken)}. Restore the files from a "
                "backup, or register and promote another version"
            )
            raise CrackModelError(msg)

    def version_names(self, name: str) -> list[str]:
        """Versions with a ``version.json``, oldest first (training versions sort by time): the version folders
        listed, not every file in them (1,200 keys for 60 versions), and each asked for its ``version.json``."""
        folders = self._version_folders(name)
        found = map_bounded(self.store.exists, folders.values(), workers=READ_WORKERS, thread_name_prefix="versions")
        return [version for version, complete in zip(folders, found, strict=True) if complete]

    def _version_folders(self, name: str) -> dict[str, str]:
        """Each folder under ``versions/`` (sorted; its name not checked) -> the key of its ``version.json``."""
        prefix = join_key(self.model_prefix(name), VERSIONS)
        return {folder: join_key(prefix, folder, VERSION_MARKER) for folder in self.store.folders(prefix)}

    def list_versions(self, name: str = DEFAULT_NAME) -> list[dict[str, Any]]:
        """One summary per version, oldest first: registration, aliases, gate decision, test metrics."""
        state = self.aliases(name)
        pointing: dict[str, list[str]] = {}
        for alias, version in state.aliases.items():
            if version:
                pointing.setdefault(version, []).append(alias)

        def summarize(version: str) -> dict[str, Any] | None:
            summary: dict[str, Any] = {"version": version, "aliases": sorted(pointing.get(version, []))}
            try:  # one damaged version is shown as such, not the end of the listing
                data = read_if_present(self.store, folders[version])
                if data is None:  # an unfinished registration: no version (read once, not asked for first)
                    return None
                key = self.version_key(name, version, VERSION_MARKER)
                document, gate = self._document(key, data, version_document_problem), self.gate_report(name, version)
            except CrackModelError as error:
                return {**summary, "problem": str(error)}
            return {**summary, "registered_at": document.get("registered_at"),
                    "registered_by": document.get("registered_by"),
                    "gate_decision": gate.get("decision") if gate else None,
                    "approved_runtimes": None if gate is None else list(gate.get("approved_runtimes") or []),
                    "metrics": document.get("metrics")}  # fmt: skip

        # Side by side: a HEAD and a GET for each of two files a version, one after another, took 5 s for 60 versions
        # on (moto) S3; now a GET each, and one listing of the version folders.
        folders = self._version_folders(name)
        listed = map_bounded(summarize, folders, workers=READ_WORKERS, thread_name_prefix="versions")
        summaries = [summary for summary in listed if summary is not None]
        missing = sorted(set(pointing) - {summary["version"] for summary in summaries})  # what nights would resolve
        return summaries + [{"version": version, "aliases": sorted(pointing[version]),
                             "problem": f"{'/'.join(pointing[version])} points at it, and it has no version.json: "
                             "restore the version, or roll back"} for version in missing]  # fmt: skip

    def show(self, name: str, version: str) -> dict[str, Any]:
        """Everything known about one version: version.json, its aliases, its gate decision."""
        document = self.read_version(name, version)
        state = self.aliases(name)
        document["aliases"] = sorted(alias for alias, value in state.aliases.items() if value == version)
        gate = self.gate_report(name, version)
        document["gate"] = (
            None
            if gate is None
            else {
                "decision": gate.get("decision"),
                "failed_checks": gate.get("failed_checks", []),
                "champion_version": gate.get("champion_version"),
                "approved_runtimes": gate.get("approved_runtimes"),
                "report": self.version_url(name, version, GATE_HTML),
            }
        )
        document["approved_runtimes"] = self.approved_runtimes(name, version)
        document["url"] = self.version_url(name, version)
        return document

    # Gate results (write-once, next to the immutable artifacts) -------------------------------

    def add_gate_result(
        self,
        name: str,
        version: str,
        *,
        report: Mapping[str, Any],
        html: str,
        approved_runtimes: Sequence[str],
    ) -> str:
        """Store a gate report with a version; refuses if the version already has one. Returns its URL."""
        self.read_version(name, version)
        self.ensure_not_gated(name, version)
        report_key = self.version_key(name, version, GATE_REPORT)
        document = {**report, "approved_runtimes": list(approved_runtimes)}
        # The JSON report first, created only if absent: of two gates racing on one version the
        # loser writes nothing. The page and the runtime list are derived from it; if this process
        # dies before they are written, restore_gate_files writes them from the stored JSON.
        try:
            self.store.write_if_match(report_key, _json_bytes(document), None)
        except PreconditionFailedError:
            raise GateReportExistsError(self._gate_exists_message(name, version)) from None
        self._write_gate_files(name, version, document, html)
        return self.store.url(report_key)

    def restore_gate_files(self, name: str, version: str, render_html: Callable[[Mapping[str, Any]], str]) -> list[str]:
        """Write the gate page and runtime list again if a crash left only the JSON report.

        Args:
            render_html: turns the stored report into the page (the gate's ``render_gate_html``).

        Returns:
            The file names written (empty when nothing was missing or the version has no report).
        """
        report = self.gate_report(name, version)
        if report is None:
            return []
        missing = [
            file_name
            for file_name in (APPROVED_RUNTIMES, GATE_HTML)
            if not self.store.exists(self.version_key(name, version, file_name))
        ]
        if missing:
            html = render_html(report) if GATE_HTML in missing else None
            self._write_gate_files(name, version, report, html, only=missing)
            log.warning("%s %s: wrote the missing %s from its stored %s", name, version, " and ".join(missing),
                        GATE_REPORT)  # fmt: skip
        return missing

    def _write_gate_files(
        self, name: str, version: str, report: Mapping[str, Any], html: str | None, only: Sequence[str] = ()
    ) -> None:
        # Derived from the stored report alone, so a restored file is the file the gate would have written.
        if not only or APPROVED_RUNTIMES in only:
            runtimes = {
                "version": version,
                "approved_runtimes": list(report.get("approved_runtimes") or []),
                "gated_at": report.get("finished_at") or utc_now(),
            }
            self.store.write(self.version_key(name, version, APPROVED_RUNTIMES), _json_bytes(runtimes))
        if html is not None and (not only or GATE_HTML in only):
            self.store.write(self.version_key(name, version, GATE_HTML), html.encode(), content_type="text/html")

    def data_manifest(self, name: str, version: str) -> list[dict[str, str]] | None:
        """The rows (uri, label, sha256, and split and slice where known) of the images the version was trained
        on; None if none was stored.

        A manifest registered before manifests kept slices takes them from the version's ``split.csv`` when
        that lists the same images (``with_split_slices``), so an existing champion's surfaces are known.
        """
        key = self.version_key(name, version, DATA_MANIFEST)
        if not self.store.exists(key):
            return None
        rows = read_data_manifest(self.store.read(key), self.store.url(key))
        split_key = self.version_key(name, version, SPLIT_NAME)
        if any("slice" not in row for row in rows) and self.store.exists(split_key):
            rows = with_split_slices(rows, self.store.read(split_key))
        return rows

    def ensure_not_gated(self, name: str, version: str) -> None:
        """Raise GateReportExistsError if the version already has a gate report."""
        if self.store.exists(self.version_key(name, version, GATE_REPORT)):
            raise GateReportExistsError(self._gate_exists_message(name, version))

    def _gate_exists_message(self, name: str, version: str) -> str:
        return (
            f"model {name} version {version} already has a gate report ({self.version_url(name, version, GATE_HTML)}); "
            "gate results are write-once: read that report, or register a new version to gate again"
        )

    def gate_report(self, name: str, version: str) -> dict[str, Any] | None:
        key = self.version_key(name, version, GATE_REPORT)
        data = read_if_present(self.store, key)  # one GET, no HEAD first
        return None if data is None else self._document(key, data)

    def approved_runtimes(self, name: str, version: str) -> list[str] | None:
        """The runtimes the gate approved for this version, fastest first (None: not gated)."""
        report = self.gate_report(name, version)
        return None if report is None else list(report.get("approved_runtimes") or [])


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")
