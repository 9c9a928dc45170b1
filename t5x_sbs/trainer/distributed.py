"""Multi-process start-up: one call that runs `jax.distributed.initialize()` when needed.

The trainer calls `maybe_initialize()` before any other JAX call. Where the settings come from,
first match wins:

1. explicit arguments (the `--coordinator_address/--num_processes/--process_id` flags);
2. `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (what `launch/*.sh` export);
3. a SLURM job step with more than one task (`SLURM_NTASKS`, `SLURM_PROCID`): JAX's own SLURM
   detection picks the coordinator (first node of the step) and the local GPU;
4. a multi-host Cloud TPU slice (`TPU_WORKER_HOSTNAMES` lists more than one host): JAX's own
   TPU detection.

With none of these (a laptop, one GPU node run as one process) it does nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import socket
import struct
import time
from typing import Mapping

import jax  # importing JAX starts no backend: `detect` stays usable before initialize

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "JAX_LOCAL_DEVICE_IDS"
ENV_TIMEOUT = "JAX_INITIALIZATION_TIMEOUT"
DEFAULT_TIMEOUT_S = 300  # JAX's own default; launch/local.sh passes a short one


class JoinError(RuntimeError):
    """A process of the job did not join in time (the message names which)."""


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """How this process joins the job. `None` fields are left to JAX's cluster detection."""

    source: str  # "flags" | "env" | "slurm" | "tpu"
    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    local_device_ids: tuple[int, ...] | None = None
    cluster_detection_method: str | None = None
    timeout_s: int = DEFAULT_TIMEOUT_S


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def _checked(group: ProcessGroup) -> ProcessGroup:
    """Explicit settings must be complete and consistent; say which one is wrong."""
    if group.cluster_detection_method is not None:
        return group
    missing = [f for f in ("coordinator_address", "num_processes", "process_id")
               if getattr(group, f) is None]
    if missing:
        raise ValueError(f"multi-process settings from {group.source} lack {', '.join(missing)}")
    if not 0 <= group.process_id < group.num_processes:
        raise ValueError(f"process_id {group.process_id} not in [0, {group.num_processes}) "
                         f"(from {group.source})")
    if ":" not in group.coordinator_address:
        raise ValueError(f"coordinator address {group.coordinator_address!r} needs host:port "
                         f"(from {group.source})")
    return group


def detect(environ: Mapping[str, str] | None = None, *, coordinator_address: str | None = None,
           num_processes: int | None = None, process_id: int | None = None,
           timeout_s: int | None = None) -> ProcessGroup | None:
    """The process group this process belongs to, or None for a single-process run."""
    env = os.environ if environ is None else environ
    timeout = timeout_s or _int(env.get(ENV_TIMEOUT), ENV_TIMEOUT) or DEFAULT_TIMEOUT_S
    if timeout <= 0:
        raise ValueError(f"initialization timeout must be positive, got {timeout}")
    group = _detect(env, coordinator_address, num_processes, process_id)
    return None if group is None else dataclasses.replace(group, timeout_s=timeout)


def _detect(env: Mapping[str, str], coordinator_address: str | None, num_processes: int | None,
            process_id: int | None) -> ProcessGroup | None:
    if num_processes is not None:
        if num_processes <= 1:
            return None
        return _checked(ProcessGroup("flags", coordinator_address, num_processes, process_id))
    env_count = _int(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
    if env_count is not None:
        if env_count <= 1:
            return None
        local = env.get(ENV_LOCAL_DEVICE_IDS)
        return _checked(ProcessGroup(
            "env", coordinator_address or env.get(ENV_COORDINATOR), env_count,
            process_id if process_id is not None else _int(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID),
            tuple(int(i) for i in local.split(",")) if local else None))
    slurm_tasks = _int(env.get("SLURM_NTASKS"), "SLURM_NTASKS")
    if slurm_tasks is not None and slurm_tasks > 1 and "SLURM_PROCID" in env:
        return ProcessGroup("slurm", coordinator_address, slurm_tasks,
                            _int(env["SLURM_PROCID"], "SLURM_PROCID"),
                            cluster_detection_method="slurm")
    tpu_hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if len(tpu_hosts) > 1:
        return ProcessGroup("tpu", coordinator_address, None, None,
                            cluster_detection_method="gketpu"
                            if "TPU_WORKER_ID" in env else "gcetpu")
    return None


def maybe_initialize(*, coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, timeout_s: int | None = None,
                     environ: Mapping[str, str] | None = None) -> ProcessGroup | None:
    """Join the multi-process job if the flags or the environment describe one; else do nothing.

    With an explicit coordinator (flags, JAX_* environment) every process first meets process 0 on
    the coordinator's port + 1 (`rendezvous`), so a missing peer fails within the timeout with a
    message naming it; JAX's coordinator then binds only the address given. Safe to call twice.
    """
    group = detect(environ, coordinator_address=coordinator_address, num_processes=num_processes,
                   process_id=process_id, timeout_s=timeout_s)
    if group is None:
        return None
    if jax.distributed.is_initialized():
        return group
    logging.info("jax.distributed.initialize from %s: %s", group.source, group)
    explicit = group.cluster_detection_method is None
    if explicit:
        rendezvous(group)
    jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
        local_device_ids=list(group.local_device_ids) if group.local_device_ids else None,
        cluster_detection_method=group.cluster_detection_method,
        initialization_timeout=group.timeout_s,
        coordinator_bind_address=group.coordinator_address if explicit and group.process_id == 0 else None,
    )
    return group


def _rendezvous_address(group: ProcessGroup) -> tuple[str, int]:
    host, _, port = group.coordinator_address.rpartition(":")
    return host.strip("[]"), int(port) + 1


def rendezvous(group: ProcessGroup) -> None:
    """Process 0 waits up to the timeout for every other process to say hello on the coordinator's
    port + 1, then tells them all to go on (or which processes are missing); raises JoinError."""
    host, port = _rendezvous_address(group)
    deadline = time.monotonic() + group.timeout_s
    if group.process_id == 0:
        return _host_rendezvous(group, host, port, deadline)
    while True:
        try:
            with _connect(host, port, deadline) as conn:
                conn.sendall(f"{group.process_id}\n".encode())
                conn.settimeout(max(1.0, deadline - time.monotonic() + 5))
                reply = conn.makefile().readline().strip()
            break
        except OSError as e:
            if time.monotonic() > deadline:
                raise JoinError(f"process {group.process_id} of {group.num_processes} could not reach the coordinator "
                                f"(process 0) at {host}:{port} within {group.timeout_s} s: {e}") from None
            time.sleep(0.2)
    if reply != "go":
        raise JoinError(f"process {group.process_id} of {group.num_processes}: {reply or 'coordinator gave up'}")


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    conn = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
    if is_self_connected(conn):
        reset(conn)
        raise ConnectionRefusedError(f"{host}:{port} has no listener yet (the connection met itself)")
    return conn


def is_self_connected(conn: socket.socket) -> bool:
    """A TCP connect to a local port nobody listens on can pick that same port as its source and
    connect to itself (simultaneous open); it would then hold the port process 0 needs."""
    return conn.getsockname() == conn.getpeername()


def reset(conn: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): no TIME_WAIT is left to hold the port for a minute."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _listen(host: str, port: int, deadline: float) -> socket.socket:
    """Bind the rendezvous port, retrying while it is briefly taken (a closing connection, a peer's
    self-connection) until the deadline."""
    while True:
        try:
            return socket.create_server((host, port), reuse_port=False)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            if time.monotonic() > deadline:
                raise JoinError(f"process 0: the rendezvous port {host}:{port} (the coordinator's port + 1) "
                                "stayed in use until the timeout; is another job on it? pick another port") from e
            time.sleep(0.2)


def _host_rendezvous(group: ProcessGroup, host: str, port: int, deadline: float) -> None:
    joined: dict[int, socket.socket] = {}
    with _listen(host, port, deadline) as server:
        while len(joined) < group.num_processes - 1 and time.monotonic() < deadline:
            server.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                conn, _ = server.accept()
                conn.settimeout(5)
                joined[int(conn.makefile().readline())] = conn
            except (OSError, ValueError):
                continue
        missing = sorted(set(range(1, group.num_processes)) - set(joined))
        message = ("go" if not missing else
                   f"processes {missing} of {group.num_processes} did not join the coordinator at "
                   f"{group.coordinator_address} within {group.timeout_s} s")
        for conn in joined.values():
            with conn:
                conn.sendall(f"{message}\n".encode())
    if missing:
        raise JoinError(f"process 0: {message}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The three flags main.py exposes (all optional: the environment usually has them)."""
    group = parser.add_argument_group("multi-process (default: from JAX_*/SLURM/TPU environment)")
    group.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    group.add_argument("--num_processes", type=int, default=None)
    group.add_argument("--process_id", type=int, default=None)
    group.add_argument("--initialization_timeout", type=int, default=None,
                       help=f"seconds to wait for every process (default ${ENV_TIMEOUT} or {DEFAULT_TIMEOUT_S})")


def maybe_initialize_from_args(args: argparse.Namespace) -> ProcessGroup | None:
    return maybe_initialize(coordinator_address=getattr(args, "coordinator_address", None),
                            num_processes=getattr(args, "num_processes", None),
                            process_id=getattr(args, "process_id", None),
                            timeout_s=getattr(args, "initialization_timeout", None))
