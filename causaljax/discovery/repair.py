"""Markov repair: add the parents a sampled DAG needs for its SCM to keep the data's dependences.

A DAG drawn from one discovery run (``dags_from_runs``) or from per-pair draws
(``sample_dags``) misses edges: a half-subsample run lacks the power to keep weak true edges,
and a misoriented edge can turn a chain into a collider whose SCM makes two dependent columns
independent. An SCM fitted to a DAG reproduces the data's joint distribution only if the DAG's
local Markov conditions hold in the data: every column independent of its non-descendant
non-parents given its parents. With a topological order fixed, it suffices that each column j is
independent of its *predecessors* given its parents.

``markov_repair`` enforces that condition on the training rows, DAG by DAG, in the DAG's own
order (so the result stays acyclic and every existing edge is kept): for each column j, while
some predecessor i outside pa(j) fails the test x_j ⟂ x_i | pa(j) at level ``alpha``, the one
with the smallest p-value becomes a parent of j (forward selection); then each added parent
that is independent of x_j given the other parents is dropped again (the grow and shrink
phases of grow-shrink Markov-blanket search, over predecessors only). The test is discovery's
mixed linear test (``structure.MixedLinearCI``: categorical columns one-hot encoded, Wilks'
likelihood ratio; for numeric columns the partial-correlation test), on all the training rows
rather than a resample, for every column kind: its log p-value stays finite where p
underflows, so strong dependences are ranked correctly. A column that is constant, or an
exact linear function of the others, is left as it is (``structure.usable_columns``). Each
addition is one more regression input of the mechanism: the repaired DAG is denser but never
loses an edge of the run.

With the true distribution linear-Gaussian and alpha -> 0 as n grows, a repaired DAG is an
I-map in its order, so its fitted SCM reproduces the covariance of every pair; with a finite
sample, pairs whose dependence the test cannot detect stay as the run left them.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import jax.numpy as jnp
import numpy as np

from causaljax.discovery.dags import DAGs, _depth
from causaljax.discovery.structure import MixedLinearCI, usable_columns


def markov_repair(dags: DAGs, values, n_levels, *, alpha: float = 0.05,
                  max_parents: int | None = None) -> DAGs:
    """``dags`` with parents added until every column passes its local Markov test on
    ``values`` f[n, d] (n_levels int[d]: 0 numeric, else the level count); see the module
    docstring. ``max_parents`` caps a column's in-degree after repair (None = no cap)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    values = np.asarray(values, np.float64)
    n_levels = np.asarray(n_levels, np.int64)
    if values.ndim != 2 or values.shape[1] != dags.d or n_levels.shape != (dags.d,):
        raise ValueError(f"values f[n, {dags.d}] and n_levels int[{dags.d}] expected, got "
                         f"{values.shape} and {n_levels.shape}")
    keep, _, _ = usable_columns(values, n_levels, "causaljax_mixed")
    if len(keep) < 2:
        return dags
    with _quiet():
        test = MixedLinearCI(values[:, keep], n_levels=n_levels[keep])
    log_alpha = float(np.log(alpha))
    local = {j: a for a, j in enumerate(keep)}  # column -> index in the test's data
    adjacency = np.array(dags.adjacency, bool)
    order = np.asarray(dags.order)
    for s in range(dags.k):
        adjacency[s] = _repair_one(adjacency[s], order[s], test, local, log_alpha,
                                    max_parents)
    depth = np.array([_depth(a, o) for a, o in zip(adjacency, order)], np.int32)
    return DAGs(adjacency=jnp.asarray(adjacency), order=dags.order, depth=jnp.asarray(depth))


def _repair_one(adjacency, order, test, local: dict, log_alpha: float, max_parents):
    """One DAG's adjacency bool[d, d] with the missing parents added (in place): grow, then
    shrink the added parents that later additions made redundant (the run's own are kept)."""
    for position, j in enumerate(order):
        if j not in local:
            continue
        earlier = [i for i in order[:position] if i in local]
        added = []
        while max_parents is None or adjacency[:, j].sum() < max_parents:
            candidates = [i for i in earlier if not adjacency[i, j]]
            if not candidates:
                break
            parents = _parents(adjacency, j, local)
            log_p = [_log_pvalue(test, local[j], local[i], parents) for i in candidates]
            best = int(np.argmin(log_p))
            if log_p[best] >= log_alpha:
                break
            adjacency[candidates[best], j] = True
            added.append(candidates[best])
        for i in added[:-1]:  # the last one was tested given all the others
            adjacency[i, j] = False
            if _log_pvalue(test, local[j], local[i], _parents(adjacency, j, local)) < log_alpha:
                adjacency[i, j] = True
    return adjacency


def _parents(adjacency, j: int, local: dict) -> list:
    """j's parents as indices into the test's data."""
    return [local[i] for i in np.flatnonzero(adjacency[:, j]) if i in local]


def _log_pvalue(test, x: int, y: int, condition: list) -> float:
    """log p of x ⟂ y | condition; 0 (no evidence) where the test's matrix is singular."""
    try:
        return test.log_pvalue(x, y, condition)
    except (ValueError, np.linalg.LinAlgError):
        return 0.0


@contextlib.contextmanager
def _quiet():
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
