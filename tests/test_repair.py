"""discovery.markov_repair: parents added until each column passes its local Markov test."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from causaljax.discovery import DAGs, markov_repair


def _dags(adjacency, order):
    adjacency = np.asarray(adjacency, bool)[None]
    return DAGs(adjacency=jnp.asarray(adjacency), order=jnp.asarray(np.asarray(order)[None]),
                depth=jnp.zeros(1, jnp.int32))


def _chain(n=2000, seed=0):
    """x0 -> x1 -> x2, linear Gaussian (x0 and x2 dependent, independent given x1)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    x1 = 0.8 * x0 + rng.normal(size=n)
    x2 = 0.8 * x1 + rng.normal(size=n)
    return np.stack([x0, x1, x2], 1)


def test_an_empty_dag_gets_exactly_the_chains_edges():
    empty = _dags(np.zeros((3, 3)), [0, 1, 2])
    out = markov_repair(empty, _chain(), np.zeros(3, int), alpha=1e-3)
    expected = np.zeros((3, 3), bool)
    expected[0, 1] = expected[1, 2] = True  # x2 ⟂ x0 | x1: no shortcut edge
    np.testing.assert_array_equal(np.asarray(out.adjacency[0]), expected)
    assert int(out.depth[0]) == 2


def test_a_wrong_collider_gets_the_edge_its_parents_need():
    # the chain's skeleton oriented x0 -> x1 <- x2 (order 0, 2, 1): x2 after x0 with no parent,
    # but x2 and x0 are dependent, so x0 -> x2 must be added; the run's edges are kept
    A = np.zeros((3, 3), bool)
    A[0, 1] = A[2, 1] = True
    out = np.asarray(markov_repair(_dags(A, [0, 2, 1]), _chain(), np.zeros(3, int),
                                   alpha=1e-3).adjacency[0])
    assert out[0, 2] and out[0, 1] and out[2, 1]
    assert out.sum() == 3


def test_independent_columns_get_no_edges_and_edges_only_point_forward():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(500, 5))
    values[:, 4] = rng.integers(0, 3, 500)  # a categorical column: the mixed test
    n_levels = np.array([0, 0, 0, 0, 3])
    order = [3, 1, 4, 0, 2]
    out = markov_repair(_dags(np.zeros((5, 5)), order), values, n_levels, alpha=1e-3)
    # 10 tests at 1e-3 under independence: a false edge has probability <= 1 %
    assert not np.asarray(out.adjacency).any()
    dependent = values.copy()
    dependent[:, 2] = dependent[:, 4] + 0.3 * rng.normal(size=500)  # x2 from the categorical
    A = np.asarray(markov_repair(_dags(np.zeros((5, 5)), order), dependent, n_levels,
                                 alpha=1e-3).adjacency[0])
    assert A[4, 2] and A.sum() == 1
    position = np.argsort(order)
    assert all(position[i] < position[j] for i, j in zip(*np.nonzero(A)))


def test_repaired_scm_keeps_the_correlation_the_collider_lost():
    """Statistical check against the data itself: with the repair, the fitted SCM's
    correlation of x0 and x2 matches the data's (0.45) within sampling error; without it the
    collider leaves them independent."""
    import jax

    from causaljax import scm
    from causaljax.data import Table
    from causaljax.sampler import sample

    values = _chain(3000, seed=2)
    t = (values[:, 1] > 0).astype(float)  # a binary target, child of x1 (tables classify)
    values = np.column_stack([values, t])
    frame = pd.DataFrame(values[:, :3], columns=["x0", "x1", "x2"]).assign(t=t.astype(int))
    table = Table.from_pandas(frame, target="t")
    A = np.zeros((4, 4), bool)
    A[0, 1] = A[2, 1] = A[1, 3] = True
    broken = _dags(A, [0, 2, 1, 3])
    real = np.corrcoef(values[:, 0], values[:, 2])[0, 1]
    for dags, want in ((broken, 0.0), (markov_repair(broken, values, table.n_levels), real)):
        fitted = scm.fit(table, dags, key=jax.random.key(0), families=("linear",))
        rows = np.asarray(sample(fitted, jax.random.key(1), 20_000))[0]
        got = np.corrcoef(rows[:, 0], rows[:, 2])[0, 1]
        assert abs(got - want) < 0.05, (got, want)  # 20k rows: sd of r ~ 0.007


def test_bad_arguments_raise():
    empty = _dags(np.zeros((3, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="alpha"):
        markov_repair(empty, _chain(100), np.zeros(3, int), alpha=0.0)
    with pytest.raises(ValueError, match="expected"):
        markov_repair(empty, _chain(100)[:, :2], np.zeros(2, int))
