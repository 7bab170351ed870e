"""Shared test setup: strict JAX rank promotion, a network guard, and one persistent
compilation cache for the whole test run.

The cache: a fresh temporary directory per run (``JAX_COMPILATION_CACHE_DIR``, created by the
first process that loads this file, inherited by the xdist workers and by every subprocess a
test starts; removed when that process ends), so that a program the suite compiles in several
tests or subprocesses (the fine-tuning step of the shipped model, the pretraining step, the
scripts' programs) is compiled once. Tests stay hermetic: nothing is read from or written to
``~/.cache`` (``CAUSALJAX_COMPILE_CACHE=none`` keeps the scripts off their default directory).
"""

import atexit
import os
import shutil
import socket
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first process of this test run
    _OWN_CACHE = tempfile.mkdtemp(prefix="causaljax-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
    atexit.register(shutil.rmtree, _OWN_CACHE, ignore_errors=True)

import jax  # noqa: E402  (after the cache settings: JAX reads them at import)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")))
os.environ.setdefault("CAUSALJAX_COMPILE_CACHE", "none")


class NetworkBlocked(RuntimeError):
    """Raised on any socket connection attempt inside a `no_network` test."""


@pytest.fixture
def no_network(monkeypatch):
    """Make every outgoing socket connection raise NetworkBlocked."""

    def refuse(*args, **kwargs):
        raise NetworkBlocked("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
