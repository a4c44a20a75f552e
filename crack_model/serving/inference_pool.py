"""Batches of tiles through the model: on one runtime, or on single-threaded copies of it side by side.

One LiteRT interpreter spread over every core splits each layer between its threads and waits at
the end of each for the slowest. While decoding threads take a core now and then, that wait is
paid at every layer. Copies of the model each on one thread, each on its own batch, lose no time
that way: a copy slowed by a decoder delays its batch, not the others (see ``runtimes.copies``).
Results come back in the order the batches went in.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue
from types import TracebackType

import numpy as np

from crack_model.serving.runtimes import Runtime


class InferencePool:
    """Class probabilities of each submitted batch, in order; at most ``capacity`` batches held at once."""

    def __init__(self, runtimes: list[Runtime]) -> None:
        if not runtimes:
            raise ValueError("an inference pool needs at least one runtime")
        self._idle: SimpleQueue[Runtime] = SimpleQueue()
        for runtime in runtimes:
            self._idle.put(runtime)
        self._runtime = runtimes[0]
        self._executor = ThreadPoolExecutor(len(runtimes), "infer") if len(runtimes) > 1 else None
        # One batch waits besides those running, so a copy that finishes takes the next one at once.
        self.capacity = len(runtimes) + 1 if self._executor else 1
        self._pending: deque[Future[np.ndarray] | np.ndarray] = deque()

    def _predict(self, pixels: np.ndarray) -> np.ndarray:
        runtime = self._idle.get()
        try:
            return runtime.predict(pixels)
        finally:
            self._idle.put(runtime)

    def submit(self, pixels: np.ndarray) -> None:
        """Start scoring a batch (on a single runtime: score it now)."""
        if self._executor is None:
            self._pending.append(self._runtime.predict(pixels))
        else:
            self._pending.append(self._executor.submit(self._predict, pixels))

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.capacity

    def take(self) -> np.ndarray:
        """The oldest batch's class probabilities (waits for them)."""
        oldest = self._pending.popleft()
        try:
            return oldest.result() if isinstance(oldest, Future) else oldest
        finally:
            del oldest  # a failed future holds its traceback, which holds this frame: no cycle for the collector

    def close(self, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> InferencePool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        # Left by an error, or closed by the garbage collector with its generator: no join (concurrency.map_bounded).
        self.close(wait=kind is None)
