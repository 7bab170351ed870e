"""Sample DAGs from a matrix of edge probabilities (acyclic by construction).

Given P f32[d, d] (P[i, j]: evidence for i -> j, as from `edge_probabilities`), each DAG is
drawn in two steps:

1. An order. Pairwise votes q[i, j] = ½ + (P[i, j] - P[j, i]) / 2 say how likely i comes
   before j (a pair never oriented, or never adjacent, is a coin flip; q[i, j] + q[j, i] = 1).
   The order is built front to back: among the nodes still left, the next one is i with
   probability ∝ Π_{j left} q[i, j], the chance that i precedes every remaining node under
   independent pairwise votes (Gumbel-max on the log-scores; q is floored at 1e-9 so
   contradictory P, e.g. a directed cycle of certain edges, still yields an order).
2. Edges. For i before j, the edge i -> j is kept with probability A[i, j] = min(1, P[i, j] +
   P[j, i]), the adjacency share. Only forward edges exist, so the graph is acyclic; the
   skeleton frequencies are A exactly and orientations follow the order.

A pair oriented with certainty (P[i, j] = 1) is always ordered i before j. Everything is one
jitted, vmapped JAX function of the key: the same key gives the same DAGs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_Q_FLOOR = 1e-9


@struct.dataclass
class DAGs:
    adjacency: jax.Array  # bool[k, d, d]: adjacency[s, i, j] -> edge i -> j in DAG s
    order: jax.Array  # int32[k, d]: a topological order of each DAG
    depth: jax.Array  # int32[k]: longest directed path, in edges

    @property
    def k(self) -> int:
        return self.adjacency.shape[0]

    @property
    def d(self) -> int:
        return self.adjacency.shape[1]


def sample_dags(P, k: int, *, key) -> DAGs:
    """k DAGs over the d columns of P (see the module docstring)."""
    P = check_probabilities(P)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    keys = jax.random.split(key, int(k))
    adjacency, order, depth = _sample(keys, jnp.asarray(P))
    return DAGs(adjacency=adjacency, order=order, depth=depth)


def check_probabilities(P) -> np.ndarray:
    """P as f32[d, d] with a zero diagonal; ValueError if not square, empty, NaN or
    outside [0, 1]."""
    P = np.asarray(P, np.float32)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"P must be a square [d, d] matrix, got shape {P.shape}")
    if P.shape[0] == 0:
        raise ValueError("P has no columns (d = 0)")
    if np.isnan(P).any():
        raise ValueError("P contains NaN")
    if (P < 0).any() or (P > 1).any():
        raise ValueError(f"P must lie in [0, 1], got range [{P.min()}, {P.max()}]")
    P = P.copy()
    np.fill_diagonal(P, 0.0)
    return P


@jax.jit
def _sample(keys, P):
    return jax.vmap(_sample_one, in_axes=(0, None))(keys, P)


def _sample_one(key, P):
    """One DAG: (adjacency bool[d, d], order int32[d], depth int32[])."""
    d = P.shape[0]
    q = jnp.clip(0.5 + (P - P.T) / 2, 0.0, 1.0)  # f32[d, d]: Pr(i before j)
    log_q = jnp.log(jnp.maximum(q, _Q_FLOOR)) * (1 - jnp.eye(d))
    adjacent = jnp.minimum(P + P.T, 1.0)  # f32[d, d]
    key_order, key_edges = jax.random.split(key)
    gumbel = jax.random.gumbel(key_order, (d, d))  # one row of noise per step

    def pick(left, g):  # left bool[d]: nodes not yet placed
        score = log_q @ left.astype(jnp.float32)  # Σ_{j left} log q[i, j]
        i = jnp.argmax(jnp.where(left, score + g, -jnp.inf))
        return left.at[i].set(False), i.astype(jnp.int32)

    _, order = jax.lax.scan(pick, jnp.ones(d, bool), gumbel)  # int32[d]
    position = jnp.zeros(d, jnp.int32).at[order].set(jnp.arange(d, dtype=jnp.int32))
    forward = position[:, None] < position[None, :]
    adjacency = forward & (jax.random.uniform(key_edges, (d, d)) < adjacent)

    def level_of(level, j):  # longest path ending at j, parents already done
        new = jnp.max(jnp.where(adjacency[:, j], level + 1, 0))
        return level.at[j].set(new), None

    level, _ = jax.lax.scan(level_of, jnp.zeros(d, jnp.int32), order)
    return adjacency, order, level.max()
