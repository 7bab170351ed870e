"""scm.fit against independent answers: least squares, sklearn's logistic regression, held-out
losses, and (through the sampler) the data's own correlations and marginals."""

from types import SimpleNamespace

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from causaljax.data import Table
from causaljax.scm import CATEGORICAL, NUMERIC, ROOT, fit
from causaljax.scm.mechanisms import categorical_probs, encode_slots, masked_params, node_outputs

KEY = jax.random.key(0)


def adjacency(d, edges, k=1):
    adj = np.zeros((k, d, d), bool)
    for s, i, j in edges:
        adj[s, i, j] = True
    return adj


def outputs(scm, s, j, values):
    """Mechanism output of node j of SCM s on encoded rows: f32[n, C] (the contract's maths)."""
    one = masked_params(jax.tree.map(lambda a: a[s], scm))
    z = encode_slots(jax.numpy.asarray(values), one.slot_column, one.slot_level)
    return np.asarray(node_outputs(one, j, z))


def mixed_frame(n, seed):
    """a, b numeric; c categorical (3 levels) child of a; y = linear in a, b, c; t target."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.5 * a + rng.normal(size=n)
    c = np.array(["p", "q", "r"])[(a > -0.5).astype(int) + (a + rng.normal(size=n) > 0.8)]
    y = 1.5 * a - b + np.where(c == "q", 2.0, 0.0) + 0.3 * rng.normal(size=n)
    t = (y + rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame({"a": a, "b": b, "c": c, "y": y, "t": t})


# ----------------------------------------------------------------------------- linear
def test_linear_fit_equals_least_squares():
    table = Table.from_pandas(mixed_frame(300, 0), target="t")  # columns a b c y t
    # two DAGs with different parent sets for y (one has a categorical parent)
    dags = adjacency(5, [(0, 0, 1), (0, 0, 3), (0, 1, 3), (0, 2, 3), (0, 3, 4),
                         (1, 0, 3), (1, 1, 3), (1, 0, 2)], k=2)
    scm = fit(table, dags, key=KEY, families=("linear",), ridge=1e-6)
    x = table.values
    onehot_c = np.eye(3)[x[:, 2].astype(int)]
    design = {  # (DAG, node) -> encoded parent columns
        (0, 1): x[:, [0]], (0, 3): np.c_[x[:, [0, 1]], onehot_c],
        (1, 3): x[:, [0, 1]],
    }
    for (s, j), parents in design.items():
        A = np.c_[parents, np.ones(len(x))].astype(np.float64)
        coef, *_ = np.linalg.lstsq(A, x[:, j], rcond=None)
        expected = A @ coef
        got = outputs(scm, s, j, x)[:, 0]
        np.testing.assert_allclose(got, expected, atol=2e-3 * x[:, j].std())
        # the noise pool holds the training residuals (all rows: m = n here)
        np.testing.assert_allclose(np.sort(np.asarray(scm.noise[s, :, j])),
                                   np.sort(x[:, j] - expected), atol=2e-3 * x[:, j].std())
    assert int(scm.kind[0, 0]) == ROOT and int(scm.kind[1, 1]) == ROOT
    assert int(scm.kind[0, 3]) == NUMERIC and int(scm.kind[1, 2]) == CATEGORICAL
    # a root's pool is the observed column
    np.testing.assert_array_equal(np.sort(np.asarray(scm.noise[0, :, 0])), np.sort(x[:, 0]))


def test_logistic_fit_matches_sklearn():
    rng = np.random.default_rng(1)
    n = 600
    a, b = rng.normal(size=n), rng.normal(size=n)
    logits = np.stack([0 * a, 1.2 * a - b, -a + 0.8 * b + 0.5], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    c = np.array(["u", "v", "w"])[(rng.random(n)[:, None] > p.cumsum(1)).sum(1)]
    t = rng.integers(0, 2, n)
    table = Table.from_pandas(pd.DataFrame({"a": a, "b": b, "c": c, "t": t}), target="t")
    scm = fit(table, adjacency(4, [(0, 0, 2), (0, 1, 2)]), key=KEY, families=("linear",))
    got = np.asarray(categorical_probs(outputs(scm, 0, 2, table.values), 3))[:, :3]
    ref = LogisticRegression(C=1e4, max_iter=2000).fit(table.values[:, :2], table.values[:, 2])
    np.testing.assert_allclose(got, ref.predict_proba(table.values[:, :2]), atol=0.01)


def test_categorical_logits_only_on_valid_levels():
    rng = np.random.default_rng(2)
    n = 400
    a = rng.normal(size=n)
    big = np.array(list("ABCDE"))[rng.integers(0, 5, n)]  # 5 levels: C = 5 channels
    small = np.where(a + rng.normal(size=n) > 0, "yes", "no")  # 2 levels
    table = Table.from_pandas(pd.DataFrame({"a": a, "big": big, "small": small}), target="small")
    scm, info = fit(table, adjacency(3, [(0, 0, 2), (0, 1, 2)]), key=KEY,
                    families=("linear", "mlp", "trees"), mlp_steps=50, tree_max_iter=10,
                    return_info=True)
    assert scm.n_channels == 5
    for name in ("lin_w", "mlp_w2", "tree_value"):  # channel is the last axis
        assert np.all(np.asarray(getattr(scm, name))[0, 2, ..., 2:] == 0), name
    assert np.all(np.asarray(scm.lin_b)[0, 2, 2:] == 0)
    # each family's fit was a proper classifier: better than the marginal log-loss
    prior = np.bincount(table.values[:, 2].astype(int)) / n
    marginal = -np.mean(np.log(prior[table.values[:, 2].astype(int)]))
    for family, loss in info["loss"].items():
        assert loss[0] < marginal, family


# ----------------------------------------------------------------------------- mlp / selection
def step_frame(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    return pd.DataFrame({"x": x, "lin": 2 * x + 0.3 * rng.normal(size=n),
                             "step": 3.0 * (x > 0.3) + 0.1 * rng.normal(size=n),
                             "wave": np.sin(2 * x) + 0.1 * rng.normal(size=n),
                             "t": (x + rng.normal(size=n) > 0).astype(int)})


@pytest.fixture(scope="module")
def selection_fit():
    table = Table.from_pandas(step_frame(600, 3), target="t")
    dags = adjacency(5, [(s, 0, j) for s in range(3) for j in (1, 2, 3)] + [(2, 1, 4)], k=3)
    scm, info = fit(table, dags, key=KEY, mlp_steps=200, tree_max_iter=30, return_info=True)
    return table, dags, scm, info


def test_family_selection_follows_the_data(selection_fit):
    _table, _, _, info = selection_fit
    chosen = dict(zip(info["node"].tolist(), info["family"].tolist()))
    assert chosen[1] == "linear" or info["loss"]["linear"][0] <= 1.02 * min(
        info["loss"][f][0] for f in info["loss"])
    assert chosen[2] in ("trees", "mlp")  # step
    assert chosen[3] in ("trees", "mlp")  # sine
    # one (node, parent set) task per distinct pair: nodes 1, 2, 3 share one parent set
    assert len(info["node"]) == 4
    assert np.all(info["task_of"][:, 1] == info["task_of"][0, 1])


def test_mlp_beats_constant_on_held_out_rows():
    train = Table.from_pandas(step_frame(500, 4), target="t")
    test = Table.from_pandas(step_frame(500, 5), target="t")
    scm = fit(train, adjacency(5, [(0, 0, 3)]), key=KEY, families=("mlp",))
    pred = outputs(scm, 0, 3, test.values)[:, 0]
    y = test.values[:, 3]
    assert np.mean((pred - y) ** 2) < 0.2 * np.mean((y - train.values[:, 3].mean()) ** 2)
    assert np.all(np.asarray(scm.lin_w) == 0)  # a node uses only its family (+ output bias)


def test_shapes_and_reproducibility(selection_fit):
    table, dags, scm, _ = selection_fit
    k, d = dags.shape[:2]
    assert scm.parents.shape == (k, d, d) and scm.noise.shape == (k, 600, d)
    assert scm.lin_w.shape[:2] == (k, d) and scm.tree_feature.shape[:2] == (k, d)
    np.testing.assert_array_equal(np.asarray(scm.parents), dags)
    again = fit(table, SimpleNamespace(adjacency=dags), key=KEY, mlp_steps=200,
                tree_max_iter=30)  # duck-typed DAGs
    for a, b in zip(jax.tree.leaves(scm), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = fit(table, dags, key=jax.random.key(1), families=("linear",), max_noise_rows=100)
    assert other.noise.shape[1] == 100
    assert not np.array_equal(np.asarray(other.noise[0, :, 0]), np.asarray(scm.noise[0, :100, 0]))


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    table = Table.from_pandas(step_frame(100, 6), target="t")
    one = adjacency(5, [(0, 0, 1)])
    with pytest.raises(ValueError, match="k = 0"):
        fit(table, np.zeros((0, 5, 5), bool), key=KEY)
    with pytest.raises(ValueError, match="expected"):
        fit(table, np.zeros((1, 4, 4), bool), key=KEY)
    with pytest.raises(ValueError, match="cycle"):
        fit(table, adjacency(5, [(0, 0, 1), (0, 1, 0)]), key=KEY)
    with pytest.raises(ValueError, match="rows"):
        fit(table.take(np.arange(10)), one, key=KEY)
    nan = SimpleNamespace(values=np.where(np.arange(5) == 2, np.nan, table.values),
                          n_levels=table.n_levels, columns=table.columns)
    with pytest.raises(ValueError, match="NaN"):
        fit(nan, one, key=KEY)
    with pytest.raises(ValueError, match="families"):
        fit(table, one, key=KEY, families=("forest",))


def test_constant_column_becomes_root():
    df = step_frame(100, 7).assign(const=4.0)
    table = Table.from_pandas(df, target="t")
    with pytest.warns(UserWarning, match="const"):
        scm = fit(table, adjacency(6, [(0, 0, 5), (0, 0, 1)]), key=KEY, families=("linear",))
    assert int(scm.kind[0, 5]) == ROOT and not np.asarray(scm.parents)[0, :, 5].any()
    assert np.all(np.asarray(scm.noise[0, :, 5]) == 4.0)


# ----------------------------------------------------------------------------- through the sampler
def test_samples_reproduce_linear_gaussian_data():
    sampler = pytest.importorskip("causaljax.sampler")
    rng = np.random.default_rng(8)
    n = 2000
    a = rng.normal(size=n)
    b = 0.8 * a + 0.6 * rng.normal(size=n)
    c = -0.5 * a + 0.7 * b + 0.5 * rng.normal(size=n)
    e = np.round(2 + c + rng.normal(size=n)).astype(int)  # integer-valued
    g = np.array(["lo", "mid", "hi"])[(b > -0.5).astype(int) + (b > 0.7)]
    t = (c + rng.normal(size=n) > 0).astype(int)
    df = pd.DataFrame({"a": a, "b": b, "c": c, "e": e, "g": g, "t": t})
    table = Table.from_pandas(df, target="t")
    dags = adjacency(6, [(0, 0, 1), (0, 0, 2), (0, 1, 2), (0, 2, 3), (0, 1, 4), (0, 2, 5)])
    scm = fit(table, dags, key=KEY, families=("linear",))
    rows = np.asarray(sampler.sample(scm, jax.random.key(9), n))[0]  # [n, d]
    x = table.values
    np.testing.assert_allclose(np.corrcoef(rows[:, :4].T), np.corrcoef(x[:, :4].T), atol=0.1)
    alpha = 1e-3 / 3  # Bonferroni over the continuous columns a, b, c
    for j in range(3):
        assert stats.ks_2samp(rows[:, j], x[:, j]).pvalue > alpha, table.names[j]
    assert np.all(rows[:, 3] == np.round(rows[:, 3]))  # integer column stays integer
    for j in (4, 5):  # categorical nodes never leave their levels
        assert set(np.unique(rows[:, j])) <= set(range(int(table.n_levels[j])))
    freq = np.bincount(rows[:, 4].astype(int), minlength=3) / n
    np.testing.assert_allclose(freq, np.bincount(x[:, 4].astype(int), minlength=3) / n, atol=0.05)


def test_empty_dag_gives_all_roots():
    table = Table.from_pandas(step_frame(50, 9), target="t")
    scm = fit(table, np.zeros((2, 5, 5), bool), key=KEY)
    assert np.all(np.asarray(scm.kind) == ROOT) and scm.tree_feature.shape[2] == 0
    np.testing.assert_array_equal(np.sort(np.asarray(scm.noise[1]), axis=0),
                                  np.sort(table.values, axis=0))


def test_trees_on_a_categorical_node_with_a_one_row_level():
    """HistGradientBoosting's stratified early-stopping split cannot hold a level seen once
    (credit_g at n_train = 64 crashed a study): the fit must still succeed."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=60)
    c = np.where(a > 0, "hi", "lo").astype(object)
    c[0] = "rare"  # one row
    t = (a + rng.normal(size=60) > 0).astype(int)
    table = Table.from_pandas(pd.DataFrame({"a": a, "c": c, "t": t}), target="t")
    scm = fit(table, adjacency(3, [(0, 0, 1), (0, 0, 2)]), key=KEY, families=("trees",))
    assert int(scm.kind[0, 1]) == CATEGORICAL
    probs = categorical_probs(outputs(scm, 0, 1, table.values), 3)
    assert np.isfinite(np.asarray(probs)).all()
