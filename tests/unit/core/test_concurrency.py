"""map_bounded: results in order, and never more than max_in_flight items submitted ahead."""

from __future__ import annotations

import threading
import time

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
