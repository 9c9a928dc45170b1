"""Ports for multi-process tests, outside the kernel's ephemeral range.

A port picked by binding port 0 comes from the ephemeral range, where any outgoing connection
(another test's, or a worker retrying its connect) may take it, or the rendezvous port after it,
before the coordinator binds them.
"""
from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20000, 32000  # below Linux's default ephemeral range (32768-60999)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair() -> int:
    """A free coordinator port whose successor (the start-up rendezvous) is free too."""
    for _ in range(200):
        port = random.randrange(_LOW, _HIGH - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError(f"no free pair of ports in {_LOW}-{_HIGH}")
