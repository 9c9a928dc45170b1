"""Host batches built ahead on a background thread while the device runs the current step."""
from __future__ import annotations

import queue
import threading
from typing import Iterator


class Prefetcher(Iterator):
    """Calls `produce` (e.g. the next host batch with the input state after it: numpy only, no JAX
    calls) on a background thread, `depth` items ahead; an exception there is raised by `next`."""

    def __init__(self, produce, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(produce,), daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                return self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue

    def _fill(self, produce) -> None:
        try:
            while not self._stop.is_set():
                self._put(produce())
        except BaseException as e:  # noqa: BLE001  re-raised on the consumer's thread
            self._put(e)

    def __next__(self):
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stops the thread and waits for it, so nothing it runs outlives the loop that used it."""
        self._stop.set()
        self._thread.join(timeout=60)
