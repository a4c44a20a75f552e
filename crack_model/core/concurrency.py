"""A thread-pool map that never runs far ahead of its consumer, by count and by bytes."""

from __future__ import annotations

import inspect
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from crack_model.core.log_lines import module_logger

Item = TypeVar("Item")
Result = TypeVar("Result")

log = module_logger(__name__)


def map_bounded(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
    max_in_flight: int | None = None,
    max_in_flight_bytes: int | None = None,
    size_of: Callable[[Item], int] | None = None,
    thread_name_prefix: str = "",
) -> Generator[Result, None, None]:
    """Like ``Executor.map``, in order, but with at most ``max_in_flight`` items submitted ahead.

    ``Executor.map`` submits every item at once: over 100,000 objects it would hold them all in
    memory. Here memory stays bounded whatever the number of items.

    A count does not bound memory when items differ in size (a phone photo decodes to 36 MB, a
    panorama to 300 MB). With ``max_in_flight_bytes``, ``size_of(item)`` (say, the decoded size
    read from an image's header) is counted too: an item is submitted only while the sizes of
    the items submitted and not yet consumed, its own included, fit. An item counts until the
    consumer asks for the next result, so what the consumer does with a result is inside the
    budget. An item larger than the whole budget runs alone.

    Consumed to the end, the threads are joined before the iteration ends. Closed early, or
    failing, queued items are cancelled and the ones running are left to finish unwaited: what
    ``function`` uses must stay usable after the caller has moved on. ``items``, if a generator (say,
    another stage), is then closed too.

    Raises:
        ValueError: ``max_in_flight_bytes`` without ``size_of``.
    """
    if max_in_flight_bytes is not None and size_of is None:
        raise ValueError("max_in_flight_bytes needs size_of, the size of each item in bytes")
    limit = max_in_flight or 2 * workers
    byte_limit = max_in_flight_bytes
    pending: deque[tuple[Future[Result], int]] = deque()
    in_flight_bytes = 0
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix)
    consumed = False
    try:
        while True:
            # Full: hand results back before taking another item, so a producer upstream (say, a fetching
            # stage) is not asked for more while there is no room for it.
            while pending and (len(pending) >= limit or (byte_limit is not None and in_flight_bytes >= byte_limit)):
                held = pending[0][1]
                yield _take(pending)
                in_flight_bytes -= held
            try:
                item = next(iterator)
            except StopIteration:
                break
            size = size_of(item) if byte_limit is not None and size_of is not None else 0
            while pending and byte_limit is not None and in_flight_bytes + size > byte_limit:
                held = pending[0][1]
                yield _take(pending)
                in_flight_bytes -= held
            pending.append((pool.submit(function, item), size))
            in_flight_bytes += size
            del item  # the pool holds it until it has run; this frame must not keep it alive
        while pending:
            yield _take(pending)
        consumed = True
    finally:
        # Stopped early (the consumer failed or stopped, or a function raised): queued items are cancelled, and
        # items already running finish in the background, not waited for. A generator left suspended is closed
        # by the garbage collector, in whatever thread it runs and under whatever lock that thread holds; joining
        # threads there can deadlock (Python 3.11's Thread._stop collects garbage holding a lock that
        # Thread.join takes again: a CI run hung on it).
        pool.shutdown(wait=consumed, cancel_futures=True)
        if not consumed and inspect.isgenerator(iterator):
            _close_upstream(iterator)  # an upstream stage stops here too, not when a collector finds it


def _close_upstream(stage: Generator[object, Any, object]) -> None:
    """Close the stage feeding this one. If it fails to close while an error is already stopping this stage, that
    failure is logged, not raised over the error: the caller must see what stopped the work."""
    stopping = sys.exc_info()[1]
    try:
        stage.close()
    except Exception:
        if stopping is None or isinstance(stopping, GeneratorExit):
            raise
        log.warning("the stage upstream failed to close while stopping on %r", stopping, exc_info=True)


def _take(pending: deque[tuple[Future[Result], int]]) -> Result:
    """The oldest result, leaving no reference to it behind: once the consumer drops it, its memory is free."""
    return pending.popleft()[0].result()


def consecutive_runs(
    items: Iterable[Item], size_of: Callable[[Item], int], limit: int, most: int | None = None
) -> Iterator[list[Item]]:
    """The items in order, in runs of at most ``most`` whose sizes add up to at most ``limit``; an item
    larger than ``limit`` is a run of its own."""
    run: list[Item] = []
    held = 0
    for item in items:
        size = size_of(item)
        if run and ((most is not None and len(run) >= most) or held + size > limit):
            yield run
            run, held = [], 0
        run.append(item)
        held += size
    if run:
        yield run
