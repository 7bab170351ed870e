"""Shared test setup: strict JAX rank promotion, no persistent compilation cache (tests stay
hermetic: the study scripts would otherwise write to ~/.cache), and a network guard."""

import os
import socket

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
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
