"""Garbage left by failed scoring must not hang a thread join (run by test_inference_batches.py in a fresh process).

CPython 3.11's ``Thread._stop`` (run by every ``join`` of a finished thread) builds a list while it holds
``threading._shutdown_locks_lock``, a plain lock. A garbage collection that runs there and finalizes a
suspended generator whose thread pool joins its threads calls ``_stop`` again: that thread waits for
itself forever. Failed scoring used to leave such generators (held by the failure's traceback), and a
CI run hung. Here, after each failed run, a collection is made to happen at the Nth allocation from
then on, for N from 0 to 39, while this thread joins a finished thread. Prints "no hang" at the end;
a hang dumps every thread's stack and exits 1 after 300 s.
"""

from __future__ import annotations

import faulthandler
import gc
import inspect
import threading
import time
import types

import numpy as np

from crack_model.core import concurrency
from crack_model.serving import inference
from tests import imagefiles


class ModelFailedError(Exception):
    pass


class FailingRuntime:
    name, fixed_batch, preferred_batch = "failing", False, 4

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        raise ModelFailedError


def failed_scoring() -> None:
    card = types.SimpleNamespace(image_size=64, tile_size=64, photo_confirm_threshold=None,
                                 patch_confirm_threshold=None, threshold=0.5, crack_index=0)  # fmt: skip
    scorer = types.SimpleNamespace(card=card, runtime=FailingRuntime())
    jpeg = imagefiles.jpeg(64, 64)
    try:
        for _ in inference.score_images([f"{index}.jpg" for index in range(40)], lambda key: jpeg, scorer,
                                        workers=1, decode_threads=1, inference_copies=2):  # fmt: skip
            pass
    except ModelFailedError:
        pass


def suspended_stages(other_than: list | None = None) -> list:
    """map_bounded generators alive mid-way, but those in ``other_than`` (say, held by an earlier test's failure
    in ``sys.last_traceback``): each holds a thread pool that a garbage collection would close."""
    code = concurrency.map_bounded.__code__
    earlier = {id(item) for item in other_than or []}
    stages = [item for item in gc.get_objects() if inspect.isgenerator(item) and item.gi_code is code]
    return [item for item in stages if item.gi_frame is not None and id(item) not in earlier]


def main() -> None:
    faulthandler.dump_traceback_later(300, exit=True)
    # Two copies of the model: scoring runs them in a thread pool, as it does LiteRT's on a multi-core machine.
    inference.copies = lambda runtime, count: [FailingRuntime(), FailingRuntime()]
    default = gc.get_threshold()
    for allocations in range(40):
        finished = threading.Thread(target=lambda: None)
        finished.start()
        while finished._tstate_lock.locked():  # wait until it has ended (is_alive() would run Thread._stop itself)
            time.sleep(0.001)
        gc.collect()
        gc.disable()
        failed_scoring()
        gc.set_threshold(gc.get_count()[0] + allocations, *default[1:])
        gc.enable()
        finished.join()
        gc.set_threshold(*default)
    print("no hang", flush=True)


if __name__ == "__main__":
    main()
