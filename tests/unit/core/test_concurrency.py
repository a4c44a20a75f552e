"""map_bounded: results in order, never more than max_in_flight items ahead, and never more bytes than the budget."""

from __future__ import annotations

import threading
import time

import pytest

from crack_model.core.concurrency import map_bounded


def test_results_come_in_order_even_when_work_finishes_out_of_order():
    """Slow early items do not reorder the results."""
    out = list(map_bounded(lambda n: (time.sleep(0.01 * (5 - n)), n)[1], range(5), workers=4))
    assert out == [0, 1, 2, 3, 4]


def test_at_most_max_in_flight_items_are_taken_ahead_of_the_consumer():
    """The producer is pulled lazily: memory stays bounded whatever the number of items."""
    taken = []
    lock = threading.Lock()

    def items():
        for n in range(1000):
            with lock:
                taken.append(n)
            yield n

    results = map_bounded(lambda n: n, items(), workers=2, max_in_flight=5)
    first = next(results)
    assert first == 0
    assert len(taken) <= 6
    assert sum(results) == sum(range(1, 1000))


class LiveBytes:
    """Bytes of items started and not yet handed back by the consumer, and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live = 0
        self.peak = 0

    def start(self, size: int) -> None:
        with self.lock:
            self.live += size
            self.peak = max(self.peak, self.live)

    def done(self, size: int) -> None:
        with self.lock:
            self.live -= size


def test_bytes_in_flight_stay_within_the_budget():
    """Items of mixed sizes: what is being worked on or waits for the consumer never exceeds the byte budget."""
    sizes = [30, 5, 60, 10, 10, 45, 5, 5, 70, 20] * 5
    tracker = LiveBytes()

    def work(size: int) -> int:
        tracker.start(size)
        time.sleep(0.001)
        return size

    consumed = []
    for size in map_bounded(work, sizes, workers=4, max_in_flight=50, max_in_flight_bytes=100, size_of=lambda n: n):
        consumed.append(size)
        tracker.done(size)  # the consumer is done with it when it asks for the next one
    assert consumed == sizes
    assert 0 < tracker.peak <= 100


def test_an_item_larger_than_the_budget_runs_alone():
    """A giant is not refused: it waits until nothing else is in flight, and nothing starts beside it."""
    sizes = [10, 10, 500, 10, 10]
    tracker = LiveBytes()
    seen_with_giant = []

    def work(size: int) -> int:
        tracker.start(size)
        with tracker.lock:
            seen_with_giant.append(tracker.live if size == 500 else 0)
        return size

    for size in map_bounded(work, sizes, workers=4, max_in_flight_bytes=100, size_of=lambda n: n):
        with tracker.lock:
            if size != 500 and tracker.live > 500:
                raise AssertionError("an item ran beside the giant")
        tracker.done(size)
    assert max(seen_with_giant) == 500


def test_a_byte_budget_needs_a_size_function():
    """max_in_flight_bytes without size_of is a programming error, reported at once."""
    with pytest.raises(ValueError, match="size_of"):
        list(map_bounded(lambda n: n, [1], workers=1, max_in_flight_bytes=10))


def test_stopping_early_does_not_wait_for_work_still_running():
    """A consumer that stops (or a collector closing a forgotten generator) is not held until running items end.

    Joining the pool's threads from a garbage collector's finalizer can deadlock (Python 3.11's Thread._stop
    collects garbage under a lock that Thread.join takes again), so an early close must not join.
    """
    release = threading.Event()

    def work(n: int) -> int:
        if n:
            release.wait()  # still running when the consumer stops
        return n

    results = map_bounded(work, range(4), workers=2)
    assert next(results) == 0
    closer = threading.Thread(target=results.close)
    closer.start()
    closer.join(timeout=30)  # a deadlock detector, not a speed bound: a close that waits never returns here
    held = closer.is_alive()
    release.set()
    closer.join()
    assert not held


def test_a_run_to_the_end_leaves_no_thread_behind():
    """Consumed to the end, the pool is shut down and its threads joined before the last result's caller goes on."""
    assert list(map_bounded(lambda n: n * 2, range(20), workers=3, thread_name_prefix="to-the-end")) == list(
        range(0, 40, 2)
    )
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("to-the-end")] == []


def numbers_until_closed(closed: threading.Event):
    """0 to 99, setting ``closed`` when the generator ends, finished or closed."""
    try:
        yield from range(100)
    finally:
        closed.set()


def test_stopping_early_closes_the_stage_upstream():
    """A chain of stages stopped at its end stops all the way up (a fetching stage feeding a decoding one), in the
    thread that stopped it, instead of waiting for a garbage collection."""
    upstream_closed = threading.Event()
    fetched = map_bounded(lambda n: n, numbers_until_closed(upstream_closed), workers=2)
    decoded = map_bounded(lambda n: n * 2, fetched, workers=2)
    assert next(decoded) == 0
    decoded.close()
    assert upstream_closed.is_set()
    assert fetched.gi_frame is None  # the middle stage finished, its pool shut down


def test_a_failing_stage_closes_the_stage_upstream():
    upstream_closed = threading.Event()

    def fails_on_three(n: int) -> int:
        if n == 3:
            raise RuntimeError("three")
        return n

    fetched = map_bounded(lambda n: n, numbers_until_closed(upstream_closed), workers=2)
    with pytest.raises(RuntimeError, match="three"):
        list(map_bounded(fails_on_three, fetched, workers=2))
    assert upstream_closed.is_set() and fetched.gi_frame is None


def test_a_stage_upstream_failing_to_close_does_not_hide_the_error_that_stopped_the_work(caplog):
    def fails_when_closed():
        try:
            yield from range(100)
        finally:
            raise OSError("connection reset while closing")

    def fails_on_three(n: int) -> int:
        if n == 3:
            raise RuntimeError("three")
        return n

    with pytest.raises(RuntimeError, match="three"):
        list(map_bounded(fails_on_three, fails_when_closed(), workers=2))
    assert "connection reset while closing" in caplog.text  # logged, not lost
