"""A thread-pool map that never runs far ahead of its consumer."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_bounded(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
    max_in_flight: int | None = None,
    thread_name_prefix: str = "",
) -> Iterator[Result]:
    """Like ``Executor.map``, in order, but with at most ``max_in_flight`` items submitted ahead.

    ``Executor.map`` submits every item at once: over 100,000 objects it would hold them all in
    memory. Here memory stays bounded whatever the number of items.
    """
    limit = max_in_flight or 2 * workers
    pending: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix) as pool:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
