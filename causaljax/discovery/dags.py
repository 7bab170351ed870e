"""Sample DAGs from a matrix of edge probabilities (acyclic by construction).

Given P f32[d, d] (P[i, j]: share of runs with i -> j, as from `edge_probabilities`, so
P[i, j] + P[j, i] <= 1), each DAG is drawn in three steps:

1. Edges, independently per pair: i -> j with probability P[i, j], j -> i with P[j, i], no
   edge otherwise (one uniform per pair; if P[i, j] + P[j, i] > 1 the second direction only
   gets the remainder 1 - P[i, j]).
2. An order, by Kahn's algorithm on the drawn graph: the next node is one with no parent
   among the nodes left; if a cycle leaves none, one with the fewest such parents. Ties are
   broken uniformly at random.
3. Edges that point backwards in the order (only ever those closing a cycle) are reversed,
   so the skeleton is kept and the graph is acyclic.

When the drawn graph is acyclic (always, if P is supported on a DAG) nothing is reversed and
Pr(i -> j) = P[i, j] exactly; in any case the pair i, j is adjacent with probability
min(1, P[i, j] + P[j, i]). Undirected evidence (½ each way) becomes a fair coin per sample,
which can create v-structures the data did not support; that is accepted, not corrected.

Everything is one jitted, vmapped JAX function of the key: the same key gives the same DAGs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


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
    key_edges, key_ties = jax.random.split(key)
    u = jnp.triu(jax.random.uniform(key_edges, (d, d)), 1)
    u = u + u.T  # one uniform per pair
    upper = jnp.triu(jnp.ones((d, d), bool), 1)
    drawn = jnp.where(upper, u < P, (u >= P.T) & (u < P.T + P))  # bool[d, d]: i -> j

    ties = jax.random.uniform(key_ties, (d, d), maxval=0.5)  # < 1: never beats a parent count

    def pick(left, tie):  # left bool[d]: nodes not yet placed
        parents_left = (drawn & left[:, None]).sum(0)  # int[d]
        score = jnp.where(left, tie - parents_left, -jnp.inf)
        i = jnp.argmax(score)
        return left.at[i].set(False), i.astype(jnp.int32)

    _, order = jax.lax.scan(pick, jnp.ones(d, bool), ties)  # int32[d]
    position = jnp.zeros(d, jnp.int32).at[order].set(jnp.arange(d, dtype=jnp.int32))
    forward = position[:, None] < position[None, :]
    adjacency = forward & (drawn | drawn.T)

    def level_of(level, j):  # longest path ending at j; its parents come earlier
        new = jnp.max(jnp.where(adjacency[:, j], level + 1, 0))
        return level.at[j].set(new), None

    level, _ = jax.lax.scan(level_of, jnp.zeros(d, jnp.int32), order)
    return adjacency, order, level.max()
