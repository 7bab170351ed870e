"""Tests for causaljax.discovery: edge probabilities against data simulated from known DAGs,
DAG sampling against an independent topological sort / longest-path check."""

import itertools

import jax
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, norm

from causaljax.data.table import CATEGORICAL, NUMERIC, Column, Table
from causaljax.discovery import (
    DAGs,
    ci_test_for,
    direction_weights,
    edge_probabilities,
    sample_dags,
)
from causaljax.discovery.structure import MixedLinearCI

FAST = dict(n_bootstrap=6, n_jobs=1)


# ----- helpers ---------------------------------------------------------------------------
def make_table(values, categorical=()) -> Table:
    """A Table straight from a matrix (any column may be the numeric 'target' here)."""
    values = np.asarray(values, np.float32)
    d = values.shape[1]
    columns = []
    for j in range(d):
        if j in categorical:
            levels = tuple(range(int(values[:, j].max()) + 1))
            columns.append(Column(f"x{j}", CATEGORICAL, levels, "int64"))
        else:
            columns.append(Column(f"x{j}", NUMERIC))
    return Table(values, np.zeros_like(values, bool), tuple(columns), f"x{d - 1}")


def linear_gaussian(edges, d, n=2000, seed=0):
    """Rows of a linear-Gaussian SCM with the given edges (i, j), |weights| in [0.6, 1.2],
    columns listed in a topological order (edges go from lower to higher index)."""
    rng = np.random.default_rng(seed)
    W = np.zeros((d, d))
    for i, j in edges:
        assert i < j
        W[i, j] = rng.uniform(0.6, 1.2) * rng.choice([-1, 1])
    X = np.zeros((n, d))
    for j in range(d):
        X[:, j] = X @ W[:, j] + rng.normal(size=n)
        X[:, j] /= X[:, j].std()  # keep signal-to-noise comparable down the graph
    return X


def random_edges(d, p, seed):
    rng = np.random.default_rng(seed)
    return [(i, j) for i in range(d) for j in range(i + 1, d) if rng.random() < p]


def skeleton_scores(P, edges):
    """(mean adjacency share over true edges, mean over absent pairs)."""
    d = P.shape[0]
    A = P + P.T
    true = np.zeros((d, d), bool)
    for i, j in edges:
        true[i, j] = true[j, i] = True
    upper = np.triu(np.ones((d, d), bool), 1)
    return A[true & upper].mean(), A[~true & upper].mean()


def kahn_is_acyclic(adjacency) -> bool:
    """Independent acyclicity check: Kahn's algorithm in plain numpy."""
    adj = np.array(adjacency, bool)
    indeg = adj.sum(0)
    ready = list(np.flatnonzero(indeg == 0))
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for j in np.flatnonzero(adj[i]):
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    return seen == adj.shape[0]


# ----- edge counting rule -----------------------------------------------------------------
def test_direction_weights_follow_the_documented_rule():
    T, A, C = -1, 1, 2
    # 0->1 directed, 1—2 undirected, 2 o-o 3, 3 o-> 4, 4 <-> 0, 1 —o 3 (tail at 1)
    G = np.zeros((5, 5), int)
    def edge(i, j, at_i, at_j):
        G[i, j], G[j, i] = at_i, at_j
    edge(0, 1, T, A)
    edge(1, 2, T, T)
    edge(2, 3, C, C)
    edge(3, 4, C, A)
    edge(4, 0, A, A)
    edge(1, 3, T, C)
    W = direction_weights(G)
    expected = np.zeros((5, 5))
    expected[0, 1] = 1
    expected[1, 2] = expected[2, 1] = 0.5
    expected[2, 3] = expected[3, 2] = 0.5
    expected[3, 4], expected[4, 3] = 0.75, 0.25  # o->: mean of -> (1, 0) and <-> (1/2, 1/2)
    expected[4, 0] = expected[0, 4] = 0.5  # <->: the dependence is kept, split evenly
    expected[1, 3] = 1
    np.testing.assert_array_equal(W, expected)
    adjacent = (G != 0) & (G.T != 0)
    np.testing.assert_array_equal(W + W.T, adjacent.astype(float))  # every edge: one unit
    # the rule before issue 23: <-> dropped, o-> half a unit
    legacy = expected.copy()
    legacy[3, 4], legacy[4, 3] = 0.5, 0.0
    legacy[4, 0] = legacy[0, 4] = 0.0
    np.testing.assert_array_equal(direction_weights(G, "legacy"), legacy)
    with pytest.raises(ValueError, match="edge_rule"):
        direction_weights(G, "nope")


def test_ci_test_choice_follows_column_kinds():
    assert ci_test_for([0, 0, 0]) == "fisherz"
    assert ci_test_for([2, 3, 2]) == "gsq"
    assert ci_test_for([0, 3, 0]) == "causaljax_mixed"


# ----- edge probabilities on known DAGs ---------------------------------------------------
@pytest.mark.parametrize("name,edges", [
    ("chain", [(0, 1), (1, 2), (2, 3)]),
    ("fork", [(0, 1), (0, 2), (0, 3)]),
    ("collider", [(0, 2), (1, 2), (2, 3)]),
])
def test_small_graphs_recover_the_skeleton(name, edges):
    X = linear_gaussian(edges, 4, seed=1)
    P = edge_probabilities(make_table(X), **FAST)
    assert P.shape == (4, 4) and P.dtype == np.float32
    assert (P >= 0).all() and (P <= 1).all() and (np.diag(P) == 0).all()
    assert ((P + P.T) <= 1 + 1e-6).all()
    on, off = skeleton_scores(P, edges)
    assert on > 0.9, (name, P)  # every kept edge (<-> included) is one unit of adjacency
    assert off < 0.25, (name, P)  # bootstrap duplicates inflate false positives (docstring)


def test_collider_is_oriented():
    X = linear_gaussian([(0, 2), (1, 2), (2, 3)], 4, seed=2)
    table = make_table(X)
    P_pc = edge_probabilities(table, algorithms=("pc",), **FAST)
    assert P_pc[0, 2] > 0.9 and P_pc[1, 2] > 0.9
    assert P_pc[2, 0] < 0.05 and P_pc[2, 1] < 0.05
    assert P_pc[2, 3] > 0.9  # Meek rule 1 orients away from the collider
    # FCI: a o-> c <-o b (¾ / ¼ each), c -> d definite
    P_fci = edge_probabilities(table, algorithms=("fci",), **FAST)
    assert P_fci[0, 2] == pytest.approx(0.75, abs=0.1) and P_fci[2, 0] == pytest.approx(
        0.25, abs=0.1)
    assert P_fci[0, 2] + P_fci[2, 0] > 0.95  # the collider's edges keep their adjacency
    assert P_fci[2, 3] > 0.9 and P_fci[3, 2] < 0.05
    P = edge_probabilities(table, **FAST)
    np.testing.assert_allclose(P, (P_pc + P_fci) / 2, atol=1e-6)


@pytest.mark.parametrize("d,seed", [(10, 3), (16, 4)])
def test_random_linear_gaussian_dags(d, seed):
    edges = random_edges(d, 2.0 / d, seed)
    X = linear_gaussian(edges, d, seed=seed)
    P = edge_probabilities(make_table(X), n_bootstrap=4, n_jobs=1)
    on, off = skeleton_scores(P, edges)
    assert on > 0.8, on
    assert off < 0.1, off


@pytest.mark.slow  # starts worker processes (imports causal-learn there): ~10 s on 2 cores
def test_seed_reproduces_and_parallel_matches_sequential():
    X = linear_gaussian(random_edges(6, 0.3, 5), 6, n=300, seed=5)
    table = make_table(X)
    P1 = edge_probabilities(table, n_bootstrap=4, seed=7, n_jobs=1)
    P2 = edge_probabilities(table, n_bootstrap=4, seed=7, n_jobs=1)
    P3 = edge_probabilities(table, n_bootstrap=4, seed=7, n_jobs=2)
    np.testing.assert_array_equal(P1, P2)
    np.testing.assert_array_equal(P1, P3)
    P4 = edge_probabilities(table, n_bootstrap=4, seed=8, n_jobs=1)
    assert not np.array_equal(P1, P4)  # other resamples


def test_half_subsamples_keep_false_positives_near_alpha():
    """Chain a -> b -> c over 12 data sets: a - c is absent. Independent answer: a calibrated
    test finds it in ≈ alpha = 5 % of runs; bootstrap resamples in ≈ 13-17 %."""
    boot, half = [], []
    for s in range(12):
        X = linear_gaussian([(0, 1), (1, 2)], 3, n=500, seed=100 + s)
        kw = dict(algorithms=("pc",), n_bootstrap=10, n_jobs=1, seed=s)
        P = edge_probabilities(make_table(X), subsample=None, **kw)  # bootstrap
        boot.append(P[0, 2] + P[2, 0])
        P = edge_probabilities(make_table(X), subsample=0.5, **kw)
        half.append(P[0, 2] + P[2, 0])
        assert P[0, 1] + P[1, 0] == 1 and P[1, 2] + P[2, 1] == 1
    assert np.mean(half) < 0.1
    assert np.mean(half) < np.mean(boot)


def test_capped_possible_dsep_matches_causal_learn_when_the_cap_is_not_binding():
    """Independent answer: causal-learn's own (unlimited) possible-D-SEP step. With a cap of
    d - 1 nodes nothing is cut, so FCI must give the same P (this data set, seed 3, has edges
    removed in that step)."""
    X = linear_gaussian(random_edges(8, 0.35, 3), 8, n=300, seed=3)
    kw = dict(algorithms=("fci",), n_bootstrap=3, n_jobs=1, seed=3)
    unlimited = edge_probabilities(make_table(X), max_depth=None, **kw)
    capped = edge_probabilities(make_table(X), max_depth=7, **kw)
    np.testing.assert_array_equal(unlimited, capped)


# ----- mixed and discrete data ------------------------------------------------------------
def test_mixed_test_sees_non_monotone_categorical_effects():
    """c (3 levels) -> x with means (-1, 2, -1): zero linear correlation with the level codes,
    so fisherz on codes would miss it; the one-hot test must not. Graph: x <- c -> y, x -> z,
    every mechanism linear in the one-hot encoding (the test's assumption)."""
    scores = []
    for seed in range(3):
        rng = np.random.default_rng(60 + seed)
        n = 2000
        c = rng.integers(0, 3, n)
        x = np.array([-1.0, 2.0, -1.0])[c] + rng.normal(size=n)
        z = x + rng.normal(size=n)
        y = (rng.random(n) < np.array([0.2, 0.8, 0.5])[c]).astype(float)  # binary target
        values = np.stack([c, x, z, y], 1)
        assert abs(np.corrcoef(c, x)[0, 1]) < 0.05
        # half-subsamples: bootstrap duplicates inflate multi-dof tests badly (docstring)
        P = edge_probabilities(make_table(values, categorical=(0, 3)), subsample=0.5, **FAST)
        assert P[0, 1] + P[1, 0] > 0.9, P  # c - x found every time
        scores.append(skeleton_scores(P, [(0, 1), (1, 2), (0, 3)]))
    on, off = np.mean(scores, 0)
    assert on > 0.9 and off < 0.15, scores


def test_mixed_ci_statistic_matches_pearson_chi_square_and_fisher():
    """Independent answers: unconditional, Wilks/Bartlett ≈ n·Σρ² ≈ Pearson's chi-square for
    two categoricals; for numeric pairs it tracks the Fisher-z p-value."""
    rng = np.random.default_rng(7)
    n = 3000
    a = rng.integers(0, 3, n)
    b = np.where(rng.random(n) < 0.9, rng.integers(0, 4, n), a)  # weak dependence
    test = MixedLinearCI(np.stack([a, b], 1).astype(float), n_levels=[3, 4])
    table = pd.crosstab(a, b).to_numpy()
    p_pearson = chi2_contingency(table, correction=False)[1]
    assert test(0, 1) == pytest.approx(p_pearson, rel=0.3)

    x = rng.normal(size=n)
    w = rng.normal(size=n)
    yv = 0.05 * x + w + rng.normal(size=n)
    data = np.stack([x, yv, w], 1)
    mixed = MixedLinearCI(data, n_levels=[0, 0, 0])
    basis = np.c_[np.ones(n), w]
    resid = np.c_[x, yv] - basis @ np.linalg.lstsq(basis, np.c_[x, yv], rcond=None)[0]
    r = np.corrcoef(resid.T)[0, 1]  # partial correlation of x and yv given w
    p_fisher = 2 * norm.sf(np.sqrt(n - 1 - 3) * abs(np.arctanh(r)))
    assert mixed(0, 1, (2,)) == pytest.approx(p_fisher, rel=0.1)


def test_all_categorical_uses_gsq_and_finds_chain():
    scores = []
    for seed in range(4):
        rng = np.random.default_rng(80 + seed)
        n = 2000
        a = rng.integers(0, 3, n)
        b = np.where(rng.random(n) < 0.7, a, rng.integers(0, 3, n))
        c = np.where(rng.random(n) < 0.7, b % 2, rng.integers(0, 2, n))
        values = np.stack([a, b, c], 1)
        table = make_table(values, categorical=(0, 1, 2))
        P = edge_probabilities(table, subsample=0.5, **FAST)
        scores.append(skeleton_scores(P, [(0, 1), (1, 2)]))
    on, off = np.mean(scores, 0)
    assert on > 0.9 and off < 0.15, scores


def test_table_from_pandas_runs():
    rng = np.random.default_rng(9)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n) + (colour == "red")
    label = np.where(size + rng.normal(size=n) > 0.5, "yes", "no")
    df = pd.DataFrame({"colour": colour, "size": size, "label": label})
    table = Table.from_pandas(df, target="label")
    P = edge_probabilities(table, n_bootstrap=3, n_jobs=1)
    assert P.shape == (3, 3) and np.isfinite(P).all()
    assert P[1, 2] + P[2, 1] > 0.5  # size - label


# ----- bad input --------------------------------------------------------------------------
def test_too_few_rows_and_nan_raise():
    X = linear_gaussian([(0, 1)], 2, n=19)
    with pytest.raises(ValueError, match="at least 20 rows"):
        edge_probabilities(make_table(X), **FAST)
    X = linear_gaussian([(0, 1)], 2, n=100)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        edge_probabilities(make_table(X), **FAST)


@pytest.mark.parametrize("kwargs", [
    dict(algorithms=("ges",)), dict(algorithms=()), dict(algorithms="pc"),
    dict(n_bootstrap=0), dict(alpha=0.0), dict(alpha=1.5), dict(max_depth=-1),
    dict(n_jobs=0), dict(subsample=1.0),
])
def test_bad_arguments_raise(kwargs):
    X = linear_gaussian([(0, 1)], 2, n=100)
    with pytest.raises(ValueError):
        edge_probabilities(make_table(X), **{**FAST, **kwargs})


def test_constant_column_is_left_out_with_a_warning():
    X = linear_gaussian([(0, 1), (1, 2)], 3, n=1000, seed=10)
    X = np.insert(X, 1, 5.0, axis=1)  # x1 constant; chain is now 0 -> 2 -> 3
    with pytest.warns(UserWarning, match="constant columns.*x1"):
        P = edge_probabilities(make_table(X), **FAST)
    assert (P[1] == 0).all() and (P[:, 1] == 0).all()
    on, off = skeleton_scores(P[np.ix_([0, 2, 3], [0, 2, 3])], [(0, 1), (1, 2)])
    assert on > 0.9 and off < 0.25


@pytest.mark.parametrize("kind", ["duplicate", "sum"])
def test_collinear_column_is_left_out_with_a_warning(kind):
    X = linear_gaussian([(0, 1), (1, 2)], 3, n=1000, seed=11)
    extra = X[:, 0] if kind == "duplicate" else X[:, 0] + 2 * X[:, 2]
    X = np.column_stack([X, extra])  # x3 is a linear function of earlier columns; x3 target
    with pytest.warns(UserWarning, match="linear functions"):
        P = edge_probabilities(make_table(X), **FAST)
    # the target (x3) is scanned first, so the earlier column x0 (duplicate) or x2 (sum) goes
    dropped = 0 if kind == "duplicate" else 2
    assert (P[dropped] == 0).all() and (P[:, dropped] == 0).all()
    assert np.isfinite(P).all()


def test_collinear_with_categorical_does_not_crash():
    rng = np.random.default_rng(12)
    n = 500
    c = rng.integers(0, 3, n).astype(float)
    x = np.array([0.0, 1.0, 3.0])[c.astype(int)]  # x is a function of c (exactly collinear)
    y = (x + rng.normal(size=n) > 1).astype(float)
    with pytest.warns(UserWarning, match="linear functions"):
        P = edge_probabilities(make_table(np.stack([c, x, y], 1), categorical=(0, 2)), **FAST)
    assert np.isfinite(P).all()


# ----- DAG sampling -----------------------------------------------------------------------
K = 64  # few distinct (k, d) shapes keep JIT compilation short


def longest_path(adjacency) -> int:
    return nx.dag_longest_path_length(nx.DiGraph(np.array(adjacency, int)))


def kahn_orders(E, left):
    """Every (order, probability) of Kahn's algorithm with uniform tie-breaking, where a
    cycle is broken at the nodes with the fewest parents left (the documented rule)."""
    if not left:
        yield (), 1.0
        return
    count = {i: sum(E[j, i] for j in left) for i in left}
    best = [i for i in sorted(left) if count[i] == min(count.values())]
    for i in best:
        for rest, p in kahn_orders(E, left - {i}):
            yield (i,) + rest, p / len(best)


def exact_edge_frequencies(P) -> np.ndarray:
    """Independent answer for the documented sampler by enumerating every drawn graph (3 states
    per pair) and every Kahn order; backward edges reversed."""
    d = P.shape[0]
    pairs = list(itertools.combinations(range(d), 2))
    freq = np.zeros((d, d))
    for states in itertools.product(range(3), repeat=len(pairs)):
        prob, E = 1.0, np.zeros((d, d), bool)
        for (i, j), state in zip(pairs, states):
            p_ij = P[i, j]
            p_ji = min(P[j, i], 1 - p_ij)
            prob *= (p_ij, p_ji, 1 - p_ij - p_ji)[state]
            if state < 2:
                E[(i, j) if state == 0 else (j, i)] = True
        if prob == 0:
            continue
        for order, p_order in kahn_orders(E, set(range(d))):
            pos = np.argsort(order)
            freq += prob * p_order * ((pos[:, None] < pos[None, :]) & (E | E.T))
    return freq


@pytest.mark.parametrize("d", [1, 2, 7, 15])
def test_sampled_dags_are_acyclic_with_consistent_order_and_depth(d):
    rng = np.random.default_rng(d)
    P = rng.random((d, d)) * (rng.random((d, d)) < 0.5)
    P = P / np.maximum(1, P + P.T)  # a valid bootstrap-like matrix
    dags = sample_dags(P, K, key=jax.random.key(d))
    assert isinstance(dags, DAGs)
    assert dags.adjacency.shape == (K, d, d) and dags.adjacency.dtype == bool
    assert dags.order.shape == (K, d) and dags.order.dtype == np.int32
    assert dags.depth.shape == (K,) and dags.depth.dtype == np.int32
    for s in range(K):
        adj = np.asarray(dags.adjacency[s])
        order = np.asarray(dags.order[s])
        assert kahn_is_acyclic(adj)
        assert sorted(order.tolist()) == list(range(d))
        pos = np.argsort(order)
        src, dst = np.nonzero(adj)
        assert (pos[src] < pos[dst]).all()
        assert int(dags.depth[s]) == longest_path(adj)


def test_sample_dags_extremes():
    d = 7
    chain = np.zeros((d, d))
    chain[np.arange(d - 1), np.arange(1, d)] = 1.0  # certain chain 0 -> 1 -> ... -> 6
    dags = sample_dags(chain, K, key=jax.random.key(0))
    assert (np.asarray(dags.adjacency) == chain.astype(bool)).all()
    assert (np.asarray(dags.depth) == d - 1).all()
    empty = sample_dags(np.zeros((d, d)), K, key=jax.random.key(0))
    assert not np.asarray(empty.adjacency).any() and (np.asarray(empty.depth) == 0).all()
    full = sample_dags(np.full((d, d), 0.5), K, key=jax.random.key(0))
    assert (np.asarray(full.adjacency).sum((1, 2)) == d * (d - 1) / 2).all()  # complete DAGs
    assert (np.asarray(full.depth) == d - 1).all()


@pytest.mark.parametrize("case", ["collider", "votes", "cycle"])
def test_sample_dags_frequencies_match_enumeration(case):
    P = np.zeros((4, 4))
    if case == "collider":  # 0 -> 2 <- 1 certain, 2 - 3 in 60 % of runs, direction open
        P[0, 2] = P[1, 2] = 1.0
        P[2, 3] = P[3, 2] = 0.3
    elif case == "votes":  # mixed evidence with possible cycles 0 -> 1 -> 3 -> 0
        P[0, 1], P[1, 0], P[2, 3], P[1, 3], P[3, 0], P[0, 3] = 0.8, 0.1, 0.4, 0.6, 0.5, 0.2
    else:  # contradictory certain cycle 0 -> 1 -> 2 -> 0, node 3 alone
        P[0, 1] = P[1, 2] = P[2, 0] = 1.0
    adj = np.asarray(sample_dags(P, 4000, key=jax.random.key(1)).adjacency)
    for a in adj:
        assert kahn_is_acyclic(a)
    np.testing.assert_allclose(adj.mean(0), exact_edge_frequencies(P), atol=0.03)
    skeleton = (adj | adj.transpose(0, 2, 1)).mean(0)
    np.testing.assert_allclose(skeleton, np.minimum(P + P.T, 1), atol=0.03)
    if case == "collider":
        assert adj[:, 0, 2].all() and adj[:, 1, 2].all()
    if case == "collider":  # no cycle possible: the 2 - 3 coin flip follows P exactly
        assert adj[:, 2, 3].mean() == pytest.approx(0.3, abs=0.03)
        assert adj[:, 3, 2].mean() == pytest.approx(0.3, abs=0.03)
    if case == "cycle":
        assert (adj.sum((1, 2)) == 3).all()  # one edge of the cycle reversed each time


def test_sample_dags_reproducible():
    P = np.random.default_rng(0).random((7, 7)) * 0.5
    a = sample_dags(P, K, key=jax.random.key(5))
    b = sample_dags(P, K, key=jax.random.key(5))
    c = sample_dags(P, K, key=jax.random.key(6))
    for f in ("adjacency", "order", "depth"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.adjacency, c.adjacency)
    assert len(jax.tree.leaves(a)) == 3  # a pytree of three arrays


@pytest.mark.parametrize("P,k", [
    (np.zeros((3, 4)), 5), (np.zeros(3), 5), (np.zeros((0, 0)), 5),
    (np.full((3, 3), 1.5), 5), (np.full((3, 3), -0.1), 5),
    (np.full((3, 3), np.nan), 5), (np.zeros((3, 3)), 0), (np.zeros((3, 3)), -2),
    (np.zeros((3, 3)), 2.5),
])
def test_sample_dags_bad_input(P, k):
    with pytest.raises(ValueError):
        sample_dags(P, k, key=jax.random.key(0))


def test_end_to_end_samples_true_collider():
    X = linear_gaussian([(0, 2), (1, 2), (2, 3)], 4, seed=13)
    P = edge_probabilities(make_table(X), **FAST)
    adj = np.asarray(sample_dags(P, 4000, key=jax.random.key(0)).adjacency)
    assert adj[:, 0, 2].mean() > 0.6 and adj[:, 1, 2].mean() > 0.6  # P[a->c] ≈ 0.75
    assert adj[:, 2, 0].mean() < adj[:, 0, 2].mean() / 4
    assert adj[:, 2, 1].mean() < adj[:, 1, 2].mean() / 4
    np.testing.assert_allclose(adj.mean(0), P, atol=0.06)  # rarely a cycle to break
    assert (adj[:, 0, 1] | adj[:, 1, 0]).mean() < 0.25
