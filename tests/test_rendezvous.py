"""The start-up rendezvous on the coordinator's port + 1: it survives a port taken for a moment and
a worker's connection that met itself, the two ways a localhost job lost its start-up in CI."""
from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest
from ports import free_port_pair

from t5x_sbs.trainer import distributed


def _group(port: int, process_id: int) -> distributed.ProcessGroup:
    return distributed.ProcessGroup(source="flags", coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                    process_id=process_id, timeout_s=10)


def _rendezvous_in_thread(group: distributed.ProcessGroup, errors: dict) -> threading.Thread:
    def run():
        try:
            distributed.rendezvous(group)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            errors[group.process_id] = e
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_coordinator_waits_while_its_port_is_taken_for_a_moment():
    port, errors = free_port_pair(), {}
    blocker = socket.socket()  # bound, not listening: the worker's connects are refused meanwhile
    blocker.bind(("127.0.0.1", port + 1))
    threads = [_rendezvous_in_thread(_group(port, i), errors) for i in (0, 1)]
    time.sleep(1.0)
    assert all(t.is_alive() for t in threads) and not errors
    blocker.close()
    for thread in threads:
        thread.join(timeout=15)
    assert not errors and not any(t.is_alive() for t in threads)


def test_a_connection_that_met_itself_is_recognised_and_frees_its_port():
    port = free_port_pair()
    conn = socket.socket()  # bind, then connect to the same address: TCP simultaneous open
    conn.bind(("127.0.0.1", port))
    conn.connect(("127.0.0.1", port))
    assert distributed.is_self_connected(conn)
    distributed.reset(conn)
    with socket.create_server(("127.0.0.1", port)) as server:  # a plain close would hold it in TIME_WAIT
        with socket.create_connection(("127.0.0.1", port)) as other:
            assert not distributed.is_self_connected(other)
            server.accept()[0].close()


def test_a_port_that_stays_taken_fails_at_the_deadline_naming_it():
    port = free_port_pair()
    group = dataclasses.replace(_group(port, 0), timeout_s=1)
    with socket.create_server(("127.0.0.1", port + 1)):
        started = time.monotonic()
        with pytest.raises(distributed.JoinError, match=f"rendezvous port 127.0.0.1:{port + 1} .* stayed in use"):
            distributed.rendezvous(group)
    assert 1 <= time.monotonic() - started < 5
