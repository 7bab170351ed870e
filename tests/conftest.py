"""Shared test setup: strict JAX rank promotion and a network guard."""

import socket

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


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
