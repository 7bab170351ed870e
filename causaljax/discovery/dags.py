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

`dags_from_runs(runs, k, key=...)` is the other sampler (the default of the SCM generator since
issue 23): DAG s is one discovery run's graph (runs[r], r drawn uniformly), extended to a DAG
*consistently*. Per-pair draws orient each edge on its own, which breaks the joint structure
of the runs: a chain a -> b -> c can come out as the collider a -> b <- c, whose SCM makes a and
c independent and so misstates the correlations of both true edges (on simulated DAGs with the
true skeleton and random directions, the worst adjacent-pair correlation error was 0.3-0.46
against 0.05 for the true DAG). Here a run's directed edges (weight i -> j above j -> i) are
kept and its undirected ones (equal weights: PC's —, FCI's o-o and ↔) are oriented by Dor and
Tarsi's (1992) consistent extension of a partially directed graph: repeatedly take a node x
with no directed edge out to the nodes left whose undirected neighbours are adjacent to all
of x's other neighbours, orient its undirected edges into x and remove it (ties broken at
random). For a CPDAG this yields a member of its Markov equivalence class (no v-structure
added or lost). When no node qualifies (a PAG, or conflicting orientations), the node with the
fewest directed edges out, then the fewest violations, is taken; directed edges that point out
of it to the nodes left are reversed, so the result is always acyclic and keeps the run's
skeleton.

`threshold_probabilities(P, t)` is the optional edge threshold applied before step 1: a pair
found adjacent in at least a share t of the runs (P[i, j] + P[j, i] >= t) is adjacent in every
DAG, directed i -> j with probability P[i, j] / (P[i, j] + P[j, i]); a pair below t gets no
edge. The DAGs then share one skeleton and differ only in directions.

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


def dags_from_runs(runs, k: int, *, key) -> DAGs:
    """k DAGs, each the consistent extension of a randomly drawn run (module docstring).
    runs f32[R, d, d]: per-run direction weights (``edge_probabilities(return_runs=True)``)."""
    runs = np.asarray(runs, np.float32)
    if runs.ndim != 3 or runs.shape[1] != runs.shape[2] or runs.shape[0] < 1:
        raise ValueError(f"runs must be [R, d, d] with R >= 1, got shape {runs.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, runs.shape[0], int(k))
    out = [consistent_extension(runs[r], rng) for r in picks]
    adjacency = np.stack([a for a, _ in out])
    order = np.stack([o for _, o in out]).astype(np.int32)
    depth = np.array([_depth(a, o) for a, o in out], np.int32)
    return DAGs(adjacency=jnp.asarray(adjacency), order=jnp.asarray(order),
                depth=jnp.asarray(depth))


def consistent_extension(W, rng: np.random.Generator):
    """(adjacency bool[d, d], order int[d]): a DAG from one run's weights W[d, d] by Dor and
    Tarsi's extension with random ties (module docstring)."""
    W = np.asarray(W, np.float64).copy()
    np.fill_diagonal(W, 0.0)
    d = W.shape[0]
    directed = W > W.T + 1e-9  # i -> j
    undirected = (np.abs(W - W.T) <= 1e-9) & (W > 0)
    adjacent = directed | directed.T | undirected
    left = np.ones(d, bool)
    adjacency = np.zeros((d, d), bool)
    reverse_order = []
    for _ in range(d):
        nodes = np.flatnonzero(left)
        out_edges = (directed[nodes][:, left]).sum(1)  # directed edges x -> remaining
        violations = np.zeros(len(nodes), np.int64)
        for a, x in enumerate(nodes):
            nbrs = np.flatnonzero(adjacent[x] & left)
            for y in np.flatnonzero(undirected[x] & left):
                others = nbrs[nbrs != y]
                violations[a] += int((~adjacent[y, others]).sum())
        score = out_edges * (d * d + 1) + violations + rng.random(len(nodes)) * 0.5
        x = nodes[np.argmin(score)]
        rest = left.copy()
        rest[x] = False
        parents = adjacent[:, x] & rest  # every remaining neighbour becomes a parent of x
        adjacency[parents, x] = True
        left[x] = False
        reverse_order.append(x)
    return adjacency, np.array(reverse_order[::-1], np.int64)


def _depth(adjacency, order) -> int:
    level = np.zeros(len(order), np.int64)
    for j in order:
        parents = np.flatnonzero(adjacency[:, j])
        level[j] = level[parents].max() + 1 if parents.size else 0
    return int(level.max())


def threshold_probabilities(P, threshold: float) -> np.ndarray:
    """P f32[d, d] with every pair of adjacency share >= ``threshold`` made certain (its
    direction split in proportion to P) and every other pair dropped (module docstring)."""
    P = check_probabilities(P)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    a = P + P.T
    keep = a >= np.float32(threshold) - 1e-6
    return np.where(keep, P / np.where(keep, a, 1.0), 0.0).astype(np.float32)


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
