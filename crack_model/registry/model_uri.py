"""``models:/<name>@<alias>`` and ``models:/<name>/<version>``: registry model URIs.

A URI is resolved against a registry store (the ``registry`` argument, else the
``CRACK_MODEL_REGISTRY`` environment variable) to one exact version, whose serving files are
fetched into a local cache once (versions are immutable) and checked against the hashes
recorded at registration.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crack_model.core.cache import cache_root
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import CARD_NAME, RUNTIME_FILES
from crack_model.core.storage import file_uri_path, is_remote
from crack_model.registry.audit_log import validate_alias
from crack_model.registry.naming import VERSION_MARKER, file_sha256, validate_name, validate_version
from crack_model.registry.versions import Registry

log = module_logger(__name__)

SCHEME = "models:/"
REGISTRY_ENV = "CRACK_MODEL_REGISTRY"
SERVING_FILES = (CARD_NAME, *RUNTIME_FILES.values())
# A copy or download killed midway leaves its ``.tmp-*`` file or folder in the cache. One this old is no
# live copy's (a copy takes seconds to minutes), so the next fetch removes it.
STALE_PARTIAL_SECONDS = 24 * 3600
VERSION_FOLDER = re.compile(r"^(?P<root>.*?)/?models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")


@dataclass(frozen=True)
class ModelReference:
    name: str
    version: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class ResolvedModel:
    """One exact registered version, fetched to a local folder."""

    uri: str
    registry_uri: str
    name: str
    version: str
    alias: str | None
    model_dir: Path
    # The gate's approved runtimes (None: the version was never gated; use the card's list).
    approved_runtimes: list[str] | None


def is_model_uri(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith(SCHEME)


def parse_model_uri(uri: str) -> ModelReference:
    """``models:/crack@champion`` -> (crack, alias champion); ``models:/crack/<version>`` -> (crack, version)."""
    if not is_model_uri(uri):
        raise CrackModelError(
            f"{uri!r} is not a registry model URI: use {SCHEME}<name>@<alias> or {SCHEME}<name>/<version>"
        )
    rest = uri[len(SCHEME) :].strip("/")
    usage = f"use {SCHEME}<name>@champion or {SCHEME}<name>/<version>, e.g. {SCHEME}crack@champion"
    try:
        if "@" in rest:
            name, _, alias = rest.partition("@")
            if "/" in name or not alias:
                raise CrackModelError("expected one name and one alias")
            return ModelReference(validate_name(name), alias=validate_alias(alias))
        name, _, version = rest.partition("/")
        if not name or not version or "/" in version:
            raise CrackModelError("expected a name and a version, or a name@alias")
        return ModelReference(validate_name(name), version=validate_version(version))
    except CrackModelError as error:
        raise CrackModelError(f"invalid model URI {uri!r} ({error}): {usage}") from None


def registered_folder(uri: str) -> tuple[str, str] | None:
    """For a registry version's folder given as a path or ``s3://`` URI (``<store>/models/<name>/versions/<v>``):
    its ``models:/<name>/<v>`` URI and the registry store, else None.

    Loaded as a plain folder it would run with its card's runtimes, not the gate's, and unchecked against its
    registered hashes: an export that failed the gate's agreement check would score nights.
    """
    text = str(uri)
    if not is_remote(text):  # det-1/., det-1/../det-1, a link to it, its model.keras: the same folder
        path = Path(file_uri_path(text) if text.startswith("file://") else text).expanduser()
        text = os.path.realpath(path.parent if path.is_file() else path)
    match = VERSION_FOLDER.match(text.rstrip("/"))
    if match is None:
        return None
    root = match["root"] or ("/" if text.startswith("/") else ".")
    try:
        registered = Registry(root).exists(match["name"], match["version"])
    except CrackModelError:  # not a store (a path that cannot be one): the folder is loaded as it is
        return None
    return (f"{SCHEME}{match['name']}/{match['version']}", root) if registered else None


def registry_uri_from(registry: str | os.PathLike[str] | None) -> str:
    if registry is not None:
        return os.fspath(registry)
    from_env = os.environ.get(REGISTRY_ENV, "").strip()
    if not from_env:
        msg = (
            f"a {SCHEME} model URI needs a registry: pass the registry store (s3://bucket or a folder) "
            f"or set {REGISTRY_ENV}"
        )
        raise CrackModelError(msg)
    return from_env


def resolve_model_uri(uri: str, registry: str | os.PathLike[str] | Registry | None = None) -> ResolvedModel:
    """Resolve an alias to its version now, and fetch that version's serving files."""
    reference = parse_model_uri(uri)
    opened = registry if isinstance(registry, Registry) else Registry(registry_uri_from(registry))
    version = reference.version or opened.resolve(reference.name, reference.alias or "")
    model_dir = fetch_version(opened, reference.name, version)
    approved = opened.approved_runtimes(reference.name, version)
    if approved == []:
        # Gated and rejected, yet promoted (a forced promotion is in the audit log): serve with the
        # reference runtime rather than refuse to score at all.
        log.warning("the gate approved no runtime for %s %s; serving with keras", reference.name, version)
        approved = ["keras"]
    log.info(
        "%s -> version %s from %s (runtimes approved by the gate: %s)",
        uri,
        version,
        opened.uri,
        approved if approved is not None else "not gated, using the card's list",
    )
    return ResolvedModel(uri, opened.uri, reference.name, version, reference.alias, model_dir, approved)


def registered_file(uri: str, version: str, file_name: str, registry: str | os.PathLike[str] | None = None) -> Path:
    """``file_name`` (its split.csv, say) of ``version`` of the model a ``models:/`` URI names, fetched and checked
    against its recorded hash. ``version``: the one the URI resolved to when the model was loaded (an alias may
    have moved since)."""
    reference = parse_model_uri(uri)
    return fetch_version(Registry(registry_uri_from(registry)), reference.name, version, also=(file_name,)) / file_name


def fetch_version(registry: Registry, name: str, version: str, also: Sequence[str] = ()) -> Path:
    """A local folder with the version's card and runtime files, each checked against its recorded hash.

    Versions are immutable, so one copy per (registry, version, version.json) serves forever;
    a copy is assembled in a temporary folder and renamed into place whole. ``also`` names other
    registered files wanted beside them (say, split.csv to retrain from the version); one missing
    from a copy made without it is added to it, checked the same way, renamed into place.
    """

    if not registry.exists(name, version):
        registry.read_version(name, version)  # raises, naming the latest versions
    marker_bytes = registry.store.read(registry.version_key(name, version, VERSION_MARKER))
    document = json.loads(marker_bytes)
    identity = f"{registry.uri}|{name}|{version}|{hashlib.sha256(marker_bytes).hexdigest()}"
    local = cache_root() / "registry" / f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    files = document.get("files", {})

    def download(file_name: str, folder: Path) -> None:
        """The registered file into ``folder``, renamed into it once its hash is checked (a kill leaves no part
        of it there: the partial file is beside the folder, where copies are assembled)."""
        partial = folder.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            registry.store.download(registry.version_key(name, version, file_name), partial)
            if file_sha256(partial) != files[file_name]["sha256"]:
                msg = (
                    f"{registry.version_url(name, version, file_name)} does not match the hash recorded at "
                    "registration: the version was altered; restore it or register a new version"
                )
                raise CrackModelError(msg)
            os.replace(partial, folder / file_name)
        finally:
            partial.unlink(missing_ok=True)

    if not (local / CARD_NAME).is_file():
        local.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(local.parent)
        staging = local.with_name(f".tmp-{uuid.uuid4().hex}")
        staging.mkdir()
        try:
            for file_name in (serving for serving in SERVING_FILES if serving in files):
                download(file_name, staging)
            try:
                os.replace(staging, local)
            except OSError:  # another process finished the same copy first
                if not (local / CARD_NAME).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for file_name in also:
        if file_name in files and not (local / file_name).is_file():
            download(file_name, local)
    return local


def remove_stale_partials(folder: Path, older_than: float = STALE_PARTIAL_SECONDS) -> None:
    """Delete the ``.tmp-*`` files and folders that killed copies left in ``folder`` more than ``older_than``
    seconds ago; younger ones may be another process's copy in progress."""
    cutoff = time.time() - older_than
    for partial in folder.glob(".tmp-*"):
        try:
            if partial.lstat().st_mtime >= cutoff:
                continue
            if partial.is_dir() and not partial.is_symlink():
                shutil.rmtree(partial)
            else:
                partial.unlink()
        except OSError as error:  # gone already (another fetch swept it), or not ours to remove
            log.debug("cannot remove %s: %s", partial, error)
            continue
        log.info("removed %s, left by a copy that was killed", partial)
