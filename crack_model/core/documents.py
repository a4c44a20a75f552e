"""The JSON documents the workflow stores: one typed definition each, shared by writers and readers.

Every document carries ``format_version``. A reader accepts its own version and older ones
(fields it does not know are ignored, missing ones take their defaults) and refuses a newer
version with a message that says to upgrade, so an old worker never half-reads a new file.

Which key each document lives at is ``layout``'s business; this module only says what is in it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectNotFoundError, ObjectStore
from crack_model.core.storage import open_store

FORMAT_VERSION = 1


def check_format_version(values: Mapping[str, Any], kind: str, source: str = "") -> int:
    """The document's format version (1 if unstamped); an error if it is newer than this code reads."""
    version = int(values.get("format_version", 1))
    if version > FORMAT_VERSION:
        where = f" ({source})" if source else ""
        msg = (
            f"{kind}{where} has format version {version}, newer than this crack-model understands "
            f"({FORMAT_VERSION}): upgrade crack-model on this worker"
        )
        raise CrackModelError(msg)
    return version


@dataclass
class StoredDocument:
    """Base of every stored document: ``to_json`` / ``from_json`` with the format version checked."""

    KIND: ClassVar[str] = "document"
    format_version: int = field(default=FORMAT_VERSION, kw_only=True)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return (json.dumps(self.as_dict(), indent=2, default=str) + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "") -> Self:
        check_format_version(values, cls.KIND, source)
        where = f" ({source})" if source else ""
        known = {item.name for item in dataclasses.fields(cls)}
        try:
            return cls(**{name: value for name, value in values.items() if name in known})
        except TypeError as error:
            raise CrackModelError(f"{cls.KIND}{where} is missing fields: {error}") from None

    @classmethod
    def from_json(cls, data: bytes, *, source: str = "") -> Self:
        try:
            values = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CrackModelError(f"{cls.KIND} {source} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise CrackModelError(f"{cls.KIND} {source} is not a JSON object")
        return cls.from_dict(values, source=source)

    def write(self, store: ObjectStore, key: str) -> None:
        store.write(key, self.to_json(), content_type="application/json")

    @classmethod
    def read(cls, store: ObjectStore, key: str) -> Self | None:
        """The document at ``key``, or None if there is none."""
        data = read_if_present(store, key)
        return None if data is None else cls.from_json(data, source=store.url(key))


def read_if_present(store: ObjectStore, key: str) -> bytes | None:
    """The object's bytes, or None if there is none: one GET, not a HEAD first, which doubled the requests of
    what reads a document of every batch or run on S3 (each sensor poke and the alerts read every ``_SUCCESS``:
    800 requests a poke for 400 batches). A folder or a link where the object goes is none, as ``exists`` says."""
    try:
        return store.read(key)
    except ObjectNotFoundError:
        return None
    except CrackModelError:
        if not store.exists(key):
            return None
        raise


@dataclass
class PartStats(StoredDocument):
    """Beside each part of a shard's results: how many rows it holds and how long they took."""

    KIND: ClassVar[str] = "part stats"
    images: int
    seconds: float


@dataclass
class ShardStats(StoredDocument):
    """A finished shard's ``_DONE`` marker: what all its attempts scored (every part) and how long it took."""

    KIND: ClassVar[str] = "shard marker"
    images: int
    seconds: float
    finished_at: str
    runtime: str | None = None
    crack_class: str | None = None
    threshold: float | None = None
    # Digest of the validated manifest the shard scored against (None: the batch had no manifest).
    validated_manifest: str | None = None
    # Its rows that do not score what validation saw (``changed``, unreadable): the next run scores them again
    # even against the same manifest (the bytes validated may be back). None: a marker from before the count,
    # whose parts the next run reads once to know.
    unsettled: int | None = None
    # The tile budget its photos were tiled within (``score --max-tiles``); None: a marker from before it was
    # an option, scored within 512.
    max_tiles: int | None = None


@dataclass
class BatchSummary(StoredDocument):
    """``results/<batch>/summary.json`` (and ``_SUCCESS``): counts, crack rate, model, throughput."""

    KIND: ClassVar[str] = "batch summary"
    batch_id: str
    model_version: str
    runtime: str | None
    threshold: float | None
    objects: int
    status_counts: dict[str, int]
    label_counts: dict[str, int]
    crack_class: str | None
    cracks: int
    crack_rate: float | None
    shards: int
    scoring_seconds: float
    throughput_images_per_second: float | None
    finished_at: str
    # Uploads that arrived after validation: they get their rows when the batch is validated again.
    late_objects: int = 0
    validated_manifest: str | None = None
    # The tile budget every shard scored within (the merge refuses shards that differ); None: from before it was
    # an option, 512.
    max_tiles: int | None = None
    # Scored again whole by another model version or tile budget than the rows it replaced (a promotion, or a new
    # budget, before a night that reopened the batch): the replaced rows' version, their budget if it was another
    # (None: the same), how many of their ``ok`` rows were scored again, how many labels flipped.
    rescored_from: str | None = None
    rescored_from_max_tiles: int | None = None
    rows_rescored: int = 0
    labels_flipped: int = 0

    @property
    def objects_scored(self) -> int:
        return objects_scored(self.status_counts or {})  # null in a hand-edited summary: none counted

    @property
    def awaits_revalidation(self) -> bool:
        """Uploads came after validation, were replaced after it (``changed``) or were gone when scored
        (``missing``): the batch is validated and scored again, and is not complete until a run settles them. A
        photo deleted for good reopens it once: that validation no longer lists it, and its row goes."""
        return bool(unsettled_objects(self.as_dict()))


# Row statuses of uploads tonight's scoring could not settle: the next night validates the batch again and scores them.
UNSETTLED_STATUSES = ("changed", "missing")


def unsettled_objects(summary: Mapping[str, Any]) -> dict[str, int]:
    """What brings a merged batch back the next night, by kind (``late``, or a row status), only those counted."""
    counts = summary.get("status_counts") or {}  # null in a hand-edited summary: none counted
    found = {"late": summary.get("late_objects"), **{status: counts.get(status) for status in UNSETTLED_STATUSES}}
    return {kind: int(count) for kind, count in found.items() if count}


def unsettled_reason(summary: Mapping[str, Any]) -> str | None:
    """Why the batch is validated and scored again the next night, in words (None: it is settled)."""
    unsettled = unsettled_objects(summary)
    if not unsettled:
        return None
    counted = ", ".join(f"{count} {kind}" for kind, count in unsettled.items())
    return f"uploads not settled ({counted}): the next night validates the batch again and scores them"


def objects_scored(status_counts: Mapping[str, int]) -> int:
    """Objects that went through the scoring engine (quarantined ones have rows but were not read)."""
    return sum(int(count) for status, count in status_counts.items() if status != "quarantined")


@dataclass
class QuarantinedObject:
    key: str
    reasons: list[str]
    quarantine_key: str | None = None


@dataclass
class QuarantineManifest(StoredDocument):
    """``quarantine/<batch>/quarantine.json``: the objects validation held back, with reasons."""

    KIND: ClassVar[str] = "quarantine manifest"
    batch_id: str
    outcome: str
    quarantined_at: str
    objects: list[dict[str, Any]]

    @property
    def entries(self) -> list[QuarantinedObject]:
        return [QuarantinedObject(str(item["key"]), list(item.get("reasons") or []), item.get("quarantine_key"))
                for item in self.objects]  # fmt: skip


@dataclass
class BatchValidation:
    """One batch's line in a run summary."""

    batch_id: str
    outcome: str
    reasons: list[str]
    quarantined: int
    objects: int
    drifted: bool


@dataclass
class RunSummary(StoredDocument):
    """``runs/<run_id>.json``: what one nightly run validated, skipped and scored."""

    KIND: ClassVar[str] = "run summary"
    run_id: str
    finished_at: str
    batches_validated: int
    batches_failed_validation: list[str]
    batches_with_quarantine: list[str]
    batches_scored: list[str]
    objects_scored: int
    cracks: int
    validations: list[dict[str, Any]]
    # Failed batches an operator released (``release_batches``): scored anyway, with rows for every object.
    batches_released: list[str] = field(default_factory=list)
    # Every batch of the run that did not end scored, with the step that stopped it and why.
    failed_batches: dict[str, str] = field(default_factory=dict)
    # The failed batches whose step did not finish (a task failed), as opposed to a batch that failed its checks.
    incomplete_batches: list[str] = field(default_factory=list)
    # Batches merged tonight that the next night validates and scores again (late, replaced or gone uploads), with why.
    batches_reopened: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SuccessMarker:
    """A batch's ``_SUCCESS``; ``summary`` is None for an empty or foreign marker, which still means "done"."""

    summary: BatchSummary | None


def read_success_marker(store: ObjectStore, batch_id: str) -> SuccessMarker | None:
    """The batch's ``_SUCCESS`` marker, or None while the batch is not complete."""
    key = layout.results_key(batch_id, layout.SUCCESS)
    if (data := read_if_present(store, key)) is None:
        return None
    try:
        return SuccessMarker(BatchSummary.from_json(data, source=store.url(key)))
    except CrackModelError:
        return SuccessMarker(None)


def quarantined_objects(store: ObjectStore | str, batch_id: str) -> list[dict[str, Any]]:
    """The objects validation held back from a batch, each with ``key`` and ``reasons``."""
    store = open_store(store) if isinstance(store, str) else store
    manifest = QuarantineManifest.read(store, layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST))
    return [] if manifest is None else list(manifest.objects)


def quarantined_keys(store: ObjectStore | str, batch_id: str) -> set[str]:
    """Keys validation held back from a batch (empty if it quarantined none): scoring skips them."""
    return {item["key"] for item in quarantined_objects(store, batch_id)}


def read_outcome(store: ObjectStore | str, batch_id: str) -> dict[str, Any] | None:
    """The ``outcome.json`` of a batch's last validation, or None if it was never validated."""
    store = open_store(store) if isinstance(store, str) else store
    key = layout.validation_key(batch_id, layout.OUTCOME)
    return json.loads(store.read(key)) if store.exists(key) else None
