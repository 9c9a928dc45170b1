"""SIGTERM (a preemption) becomes a flag the train loop checks, so it saves and exits cleanly."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class PreemptionGuard:
    """Within the block, SIGTERM (and SIGINT if asked) sets `.requested` instead of killing the
    process, so the train loop can save and exit cleanly; previous handlers come back on exit.

    Multi-host: call `should_stop(step)` every step on every host. It all-gathers the flag so all
    hosts stop at the same step; with `use_jax_sync_point=True` it defers instead to JAX's
    preemption service (`multihost_utils.reached_preemption_sync_point`, which catches SIGTERM
    itself when `jax.distributed.initialize` runs with the preemption service enabled).
    """

    def __init__(self, signals=(signal.SIGTERM,), *, use_jax_sync_point: bool = False):
        self.signals = tuple(signals)
        self.use_jax_sync_point = use_jax_sync_point
        self.requested = False
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        log.warning("received signal %d: will checkpoint and stop", signum)
        self.requested, self.received = True, signum

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            log.warning("PreemptionGuard outside the main thread: no signal handlers installed")
            return self
        if not self.use_jax_sync_point:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def should_stop(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.requested
        if self.use_jax_sync_point:
            return bool(multihost_utils.reached_preemption_sync_point(int(step)))
        flags = multihost_utils.process_allgather(np.int32(self.requested))
        return bool(np.asarray(flags).any())
