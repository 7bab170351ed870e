"""Several processes, one mesh: ``jax.distributed`` set-up and the array moves it needs.

JAX runs one Python process per host (or per GPU); after ``initialize`` every process sees
all processes' devices in ``jax.devices()`` and a jitted program over a global mesh runs on
all of them at once, each process holding the shards of its own devices. This module keeps
the few places where that differs from one process in one spot:

- ``initialize``: ``jax.distributed.initialize`` with checked arguments, a bounded wait for the
  coordinator (a clear ``DistributedError``, never a hang) and CPU collectives (gloo) when the
  backend is the CPU, so the same code is tested with local CPU processes.
- ``global_array``: a host value that every process holds whole (a fitted SCM, a key, the
  parameters) placed on a global ``NamedSharding`` (``jax.make_array_from_callback``);
  ``shard_rows`` / ``replicate`` do it for a pytree.
- ``to_host`` (every row, on every process: ``process_allgather``) and ``local_blocks`` (this
  process's blocks only) read a global array back, where ``np.asarray`` would fail.

On a cluster the arguments come from the environment (SLURM, TPU pods, ``JAX_COORDINATOR_ADDRESS``
and friends: ``jax.distributed.initialize()`` with no argument reads them); see the README.
"""

from __future__ import annotations

import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class DistributedError(RuntimeError):
    """The processes could not form one JAX runtime (bad arguments, no coordinator)."""


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: int = 60,
               local_device_ids=None) -> None:
    """Join this process to the others: ``jax.distributed.initialize`` with the same
    arguments (all None: read from the cluster's environment). Call it before any other JAX
    call. A process other than 0 waits at most ``timeout_s`` seconds for the coordinator to
    listen, then raises ``DistributedError``; once connected, JAX's client ends the process
    itself (a fatal ``DEADLINE_EXCEEDED`` log, exit by SIGABRT) when the other processes have
    not all registered within ``timeout_s`` (e.g. a ``num_processes`` larger than the processes
    started). Never a hang. On the CPU backend it selects gloo collectives."""
    given = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in given) and any(v is None for v in given):
        raise DistributedError("give all of coordinator_address, num_processes and process_id "
                               "(or none, to read them from the cluster's environment)")
    if num_processes is not None:
        if not isinstance(num_processes, int) or num_processes < 1:
            raise DistributedError(f"num_processes must be an int >= 1, got {num_processes!r}")
        if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise DistributedError(f"process_id must be in 0..{num_processes - 1}, "
                                   f"got {process_id!r}")
        host, _, port = str(coordinator_address).rpartition(":")
        if not host or not port.isdigit():
            raise DistributedError("coordinator_address must be HOST:PORT, got "
                                   f"{coordinator_address!r}")
    if timeout_s < 1:
        raise DistributedError(f"timeout_s must be >= 1, got {timeout_s}")
    if process_id:  # not the coordinator: nobody listening is a clear error, not an abort
        _wait_for_coordinator(coordinator_address, timeout_s)
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   local_device_ids=local_device_ids,
                                   initialization_timeout=int(timeout_s))
    except Exception as e:  # jax raises RuntimeError / XlaRuntimeError / ValueError
        raise DistributedError(
            f"jax.distributed.initialize failed (coordinator {coordinator_address}, "
            f"process {process_id} of {num_processes}, waited up to {timeout_s} s): "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Return once something accepts TCP connections at ``address`` (HOST:PORT); raise
    ``DistributedError`` after ``timeout_s`` seconds. (Once connected, JAX's own client ends
    the process with a fatal log when the others do not register within the timeout.)"""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"jax.distributed.initialize failed: no coordinator at {address} after "
                    f"{timeout_s} s ({e.strerror or e}); start process 0 first, on that "
                    "host and port") from None
            time.sleep(0.2)


def global_mesh(axis: str = "dev") -> Mesh:
    """A 1-d mesh over every device of every process."""
    return Mesh(np.asarray(jax.devices()), (axis,))


def global_array(value, sharding: NamedSharding) -> jax.Array:
    """``value`` (a host array every process holds whole, equal on all) as one global array
    with ``sharding``: each process places only the slices of its own devices."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree, mesh: Mesh):
    """Every array leaf of ``tree`` replicated on every device of ``mesh``."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda a: global_array(_host(a), sharding), tree)


def shard_rows(tree, mesh: Mesh, axis: int = 0):
    """Every array leaf of ``tree`` split along ``axis`` over ``mesh``'s devices (its length
    must be a multiple of the device count)."""
    def place(a):
        a = _host(a)
        spec = [None] * a.ndim
        spec[axis] = mesh.axis_names[0]
        return global_array(a, NamedSharding(mesh, PartitionSpec(*spec)))

    return jax.tree.map(place, tree)


def to_host(array) -> np.ndarray:
    """The whole value of a (possibly global, multi-process) array on this host."""
    if not isinstance(array, jax.Array) or array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def local_copy(tree):
    """Every leaf of ``tree`` as an array of this process alone: a replicated global array's
    copy on this process's first device (no communication); other leaves as they are."""
    def local(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            if not a.is_fully_replicated:
                raise ValueError("local_copy needs replicated arrays; use to_host to gather")
            return a.addressable_data(0)
        return a

    return jax.tree.map(local, tree)


def local_blocks(array) -> list[tuple[tuple, np.ndarray]]:
    """This process's blocks of ``array``: [(index, a tuple of ``slice`` per axis, values)],
    each block once (replicated copies count once), in index order. One block spanning the
    whole array when it is fully addressable."""
    if not isinstance(array, jax.Array) or array.is_fully_addressable:
        value = np.asarray(array)
        return [(tuple(slice(0, n) for n in value.shape), value)]
    blocks: dict[tuple, tuple] = {}
    for shard in array.addressable_shards:
        index = tuple(slice(s.start or 0, n if s.stop is None else s.stop)
                      for s, n in zip(shard.index, array.shape))
        key = tuple((s.start, s.stop) for s in index)
        if key not in blocks:
            blocks[key] = (index, np.asarray(shard.data))
    return [blocks[key] for key in sorted(blocks)]


def _host(a):
    """A host copy of a leaf that this process can read whole (typed PRNG keys: pass
    ``jax.random.key_data(key)`` and wrap it again inside the program)."""
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        raise TypeError("global_array takes raw key data: jax.random.key_data(key)")
    return to_host(a)
