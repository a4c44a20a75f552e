"""Which batches under ``incoming/`` a night picks up, read batch by batch.

A batch whose state cannot be read (a bucket policy that denies ``results/<batch>/``, a store that keeps
answering 503 for its ``_SUCCESS``) is set aside with the key and the error: it used to raise out of the
sensor, so no batch was scored that night and the log named neither the batch nor the key. The sensor leaves
it out with an error; the run's alerts name it (``unreadable_batch_states``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

from crack_model.core import layout
from crack_model.core.concurrency import map_bounded
from crack_model.core.documents import read_success_marker
from crack_model.core.errors import CrackModelError, described
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.core.uploads import list_uploads

log = module_logger(__name__)

# The validation outcome of a merged batch whose uploads are all gone: settled with no rows, neither validated nor
# scored (``nightly.validate_incoming``), and alerted (``alerts``: ``batch_settled``).
SETTLED = "settled"

Result = TypeVar("Result")
STATE_READERS = 16  # small documents: a store answers many at once


@dataclass(frozen=True)
class UnreadableState:
    """A batch left out of tonight's night: ``key`` could not be read, with ``error``."""

    batch_id: str
    key: str
    url: str
    error: str

    def __str__(self) -> str:
        return (f"batch {self.batch_id} is left out tonight: could not read {self.url} ({self.error}); check that "
                "the store's credentials and bucket policy allow reading it and that the store answers")  # fmt: skip


def new_batches(store: ObjectStore, batch_ids: Iterable[str]) -> tuple[list[str], list[UnreadableState]]:
    """The batches of ``batch_ids`` a night scores (``is_new``), and those whose ``_SUCCESS`` cannot be read."""

    def state(batch_id: str) -> bool | UnreadableState:
        try:
            return is_new(store, batch_id)
        except Exception as error:  # whatever stops this batch's state must not stop the other batches' night
            return _unreadable(store, batch_id, layout.results_key(batch_id, layout.SUCCESS), error)

    return _sorted_out(state, batch_ids)


def validated_before(store: ObjectStore, batch_ids: Iterable[str]) -> tuple[set[str], list[UnreadableState]]:
    """The batches of ``batch_ids`` with an ``outcome.json``, and those whose ``outcome.json`` cannot be read."""

    def state(batch_id: str) -> bool | UnreadableState:
        key = layout.validation_key(batch_id, layout.OUTCOME)
        try:
            return store.exists(key)
        except Exception as error:  # as in new_batches
            return _unreadable(store, batch_id, key, error)

    seen, unreadable = _sorted_out(state, batch_ids)
    return set(seen), unreadable


def _sorted_out(
    state: Callable[[str], bool | UnreadableState], batch_ids: Iterable[str]
) -> tuple[list[str], list[UnreadableState]]:
    """The batches whose ``state`` is true, in order, and those whose state could not be read."""
    listed = list(batch_ids)
    chosen: list[str] = []
    unreadable: list[UnreadableState] = []
    for batch_id, found in zip(listed, _each(state, listed), strict=True):
        if isinstance(found, UnreadableState):
            unreadable.append(found)
        elif found:
            chosen.append(batch_id)
    return chosen, unreadable


def _each(read: Callable[[str], Result], batch_ids: list[str]) -> list[Result]:
    """``read`` of every batch, in order, on threads: every batch ever uploaded is read (each sensor poke, the alerts),
    and one request after another took 12 s a poke for 400 batches on S3, growing night after night."""
    return list(map_bounded(read, batch_ids, workers=STATE_READERS, thread_name_prefix="batch-state"))


def unreadable_batch_states(
    store: ObjectStore, batch_ids: Iterable[str], validated: Collection[str] = ()
) -> list[UnreadableState]:
    """The batches of ``batch_ids`` whose ``_SUCCESS`` cannot be read, and the new ones the night did not validate
    (``validated``: those it did) whose ``outcome.json`` cannot be read: beyond ``max_batches`` the sensor reads it
    and leaves such a batch out (``find_new_batches``). No night picks them up until it can."""
    new, unreadable = new_batches(store, batch_ids)
    return unreadable + validated_before(store, [batch_id for batch_id in new if batch_id not in validated])[1]


def emptied_batches(store: ObjectStore, incoming_folders: Collection[str]) -> list[str]:
    """Batches under ``results/`` with no folder under ``incoming/`` whose merge awaits revalidation (a ``missing``
    row): on S3 a folder goes with its last object, so a batch whose uploads were all deleted was found no more and
    kept those rows for good. The night settles them (``settle_emptied_batch``). One read per such batch a night."""
    try:
        merged = store.folders(layout.RESULTS)
    except Exception as error:  # the batches under incoming/ are tonight's work all the same
        log.error("could not list %s for batches whose uploads are gone: %s", store.url(layout.RESULTS),
                  described(error))  # fmt: skip
        return []

    def awaits(batch_id: str) -> bool:
        try:
            marker = read_success_marker(store, batch_id)
        except Exception as error:  # a foreign folder, an unreadable marker: not this night's to settle
            log.warning("not checking results/%s for a batch whose uploads are gone: %s", batch_id, described(error))
            return False
        return marker is not None and marker.summary is not None and marker.summary.awaits_revalidation

    gone = [batch_id for batch_id in merged if batch_id not in incoming_folders and _is_batch_id(batch_id)]
    return [batch_id for batch_id, settle in zip(gone, _each(awaits, gone), strict=True) if settle]


def is_new(store: ObjectStore, batch_id: str) -> bool:
    """No ``_SUCCESS`` yet, or one whose summary counted uploads that came after validation, were replaced after
    it (``changed``) or were gone when scored or validated (``missing``): the batch is validated again, and those
    are scored (a ``missing`` one not back has its row dropped). A batch settled with no rows (its uploads were all
    gone, ``settle_emptied_batch``) is new again once uploads are back in its folder: a folder moved away to be
    checked and put back a night late lost every row, and its photos were never scored again."""
    marker = read_success_marker(store, batch_id)
    if marker is None:
        return True
    if marker.summary is None:
        return False
    if marker.summary.objects == 0:  # only settling writes a summary of no rows: scoring refuses an empty batch
        return bool(list_uploads(store, batch_id))
    return marker.summary.awaits_revalidation


def _is_batch_id(name: str) -> bool:
    try:
        layout.validate_batch_id(name)
    except CrackModelError:
        return False
    return True


def _unreadable(store: ObjectStore, batch_id: str, key: str, error: Exception) -> UnreadableState:
    state = UnreadableState(batch_id, key, store.url(key), described(error))
    log.error("%s", state)
    return state
