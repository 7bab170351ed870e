"""scm.fit against independent answers: least squares, sklearn's logistic regression, held-out
losses, and (through the sampler) the data's own correlations and marginals."""

import importlib
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
FIT = importlib.import_module("causaljax.scm.fit")  # the module (causaljax.scm.fit is the function)


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
        np.testing.assert_allclose(np.sort(np.asarray(scm.noise[s, j])),
                                   np.sort(x[:, j] - expected), atol=2e-3 * x[:, j].std())
    assert int(scm.kind[0, 0]) == ROOT and int(scm.kind[1, 1]) == ROOT
    assert int(scm.kind[0, 3]) == NUMERIC and int(scm.kind[1, 2]) == CATEGORICAL
    # a root's pool is the observed column
    np.testing.assert_array_equal(np.sort(np.asarray(scm.noise[0, 0])), np.sort(x[:, 0]))


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
    assert scm.parents.shape == (k, d, d) and scm.noise.shape == (k, d, 600)
    assert scm.lin_w.shape[:2] == (k, d) and scm.tree_feature.shape[:2] == (k, d)
    np.testing.assert_array_equal(np.asarray(scm.parents), dags)
    again = fit(table, SimpleNamespace(adjacency=dags), key=KEY, mlp_steps=200,
                tree_max_iter=30)  # duck-typed DAGs
    for a, b in zip(jax.tree.leaves(scm), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = fit(table, dags, key=jax.random.key(1), families=("linear",), max_noise_rows=100)
    assert other.noise.shape[2] == 100
    assert not np.array_equal(np.asarray(other.noise[0, 0]), np.asarray(scm.noise[0, 0, :100]))


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
    assert np.all(np.asarray(scm.noise[0, 5]) == 4.0)


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
    np.testing.assert_array_equal(np.sort(np.asarray(scm.noise[1]).T, axis=0),
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


# ----------------------------------------------------------------------------- compiled solvers
def chunk_frame(n, seed):
    """Enough distinct (node, parent set) tasks, numeric and categorical, to fill chunks."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    g = np.array(["p", "q", "r"])[(x[:, 0] > -0.4).astype(int) + (x[:, 1] > 0.6)]
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + (g == "q") + 0.2 * rng.normal(size=n)
    t = (y + rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "e": x[:, 3], "g": g, "y": y,
                         "t": t})


def chunk_dags(k, seed):
    """k random DAGs over the 7 columns of ``chunk_frame`` (edges follow the column order)."""
    rng = np.random.default_rng(seed)
    return np.triu(rng.random((k, 7, 7)) < 0.4, 1)


@pytest.mark.parametrize("family", ["linear", "mlp"])
def test_chunk_size_does_not_change_the_fit(monkeypatch, family):
    """Tasks are fitted in fixed-size chunks (the last one padded): one chunk holding every
    task (unchunked) and chunks of 3 give the same parameters, to float tolerance."""
    table = Table.from_pandas(chunk_frame(300, 10), target="t")
    dags = chunk_dags(4, 11)
    fits = {}
    for chunk in (64, 3):
        monkeypatch.setattr(FIT, "CHUNK", chunk)
        fits[chunk] = fit(table, dags, key=KEY, families=(family,), mlp_steps=60)
    U = len(fit(table, dags, key=KEY, families=("linear",), return_info=True)[1]["node"])
    assert U > 3 and U % 3  # several chunks, the last one padded
    for name in ("lin_w", "lin_b", "mlp_w1", "mlp_b1", "mlp_w2", "noise"):
        np.testing.assert_allclose(np.asarray(getattr(fits[3], name)),
                                   np.asarray(getattr(fits[64], name)), rtol=1e-4, atol=1e-4,
                                   err_msg=name)


def test_fit_compiles_each_solver_once_per_table():
    """Task counts do not reach XLA: another key and other DAGs on the same table (other task
    counts, another family choice) compile nothing new; a fit compiles at most the two
    solvers (fewer if an earlier test already compiled them for this table's shapes)."""
    table = Table.from_pandas(chunk_frame(200, 12), target="t")
    compiles = []

    def listen(name, _duration, **_kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    keys = [jax.random.key(s) for s in range(3)]  # created before counting
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fit(table, chunk_dags(6, 13), key=keys[0], families=("linear", "mlp"), mlp_steps=30)
        first = len(compiles)
        fit(table, chunk_dags(3, 14), key=keys[1], families=("linear", "mlp"), mlp_steps=30)
        fit(table, chunk_dags(9, 15), key=keys[2], families=("mlp", "linear"), mlp_steps=30)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert first <= 2
    assert len(compiles) == first


def test_newton_softmax_regression_has_converged():
    """The damped Newton steps of the linear family reach the optimum: more steps change
    nothing, and the categorical node's logits match a long sklearn fit (same L2)."""
    table = Table.from_pandas(chunk_frame(400, 16), target="t")
    dags = adjacency(7, [(0, 0, 4), (0, 1, 4)])  # g <- a, b
    fits = [fit(table, dags, key=KEY, families=("linear",), logistic_steps=steps)
            for steps in (25, 80)]
    for name in ("lin_w", "lin_b"):
        np.testing.assert_allclose(np.asarray(getattr(fits[0], name)),
                                   np.asarray(getattr(fits[1], name)), atol=1e-4)
    x = table.values
    got = np.asarray(categorical_probs(outputs(fits[0], 0, 4, x), 3))[:, :3]
    ref = LogisticRegression(C=1e4, max_iter=5000, tol=1e-10).fit(x[:, :2], x[:, 4])
    np.testing.assert_allclose(got, ref.predict_proba(x[:, :2]), atol=5e-3)


def test_tree_noise_pools_are_residuals_of_the_sampler_mechanism():
    """The NumPy tree evaluation of the fit (held-out losses, noise pools) agrees with the
    sampler's JAX mechanism: pools (m = n) are the residuals of ``node_outputs``."""
    table = Table.from_pandas(step_frame(300, 17), target="t")
    scm = fit(table, adjacency(5, [(0, 0, 2), (0, 0, 3)]), key=KEY, families=("trees",),
              tree_max_iter=20)
    x = table.values
    for j in (2, 3):
        residual = x[:, j] - outputs(scm, 0, j, x)[:, 0]
        np.testing.assert_allclose(np.sort(np.asarray(scm.noise[0, j])), np.sort(residual),
                                   atol=1e-4)


def test_numpy_encoding_matches_encode_slots():
    table = Table.from_pandas(chunk_frame(50, 18), target="t")
    from causaljax.scm.types import slots_for

    slot_column, slot_level = slots_for(np.asarray(table.n_levels))
    want = encode_slots(jax.numpy.asarray(table.values), jax.numpy.asarray(slot_column),
                        jax.numpy.asarray(slot_level))
    np.testing.assert_array_equal(FIT._encode(table.values, slot_column, slot_level),
                                  np.asarray(want))
