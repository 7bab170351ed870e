import warnings

import jax
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from dowhy import gcm
from threadpoolctl import threadpool_limits

from causaljax import sampler
from causaljax.data import Table
from causaljax.scm.dowhy import dowhy_frame, from_dowhy
from causaljax.scm.mechanisms import (
    compact_outputs,
    all_node_outputs,
    categorical_probs,
    encode_slots,
    masked_params,
    node_outputs,
)
from causaljax.scm.types import CATEGORICAL, NUMERIC, ROOT

EDGES = [("a", "k"), ("c", "k"), ("a", "b"), ("c", "b"), ("g", "b"), ("k", "b"),
         ("b", "t"), ("c", "t"), ("a", "t")]


def _table(n=300, seed=0):
    """Mixed table: a numeric, c 3 str levels, g 8 str levels (parents of b then hold 11
    categories > 7, so DoWhy target-encodes them), k integer, b numeric, t integer classes."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    c = rng.choice(["x", "y", "z"], n)
    g = rng.choice([f"g{i}" for i in range(8)], n)
    k = np.round(2 * a + (c == "y") + rng.normal(size=n)).astype(int)
    geff = {f"g{i}": v for i, v in enumerate(rng.normal(size=8))}
    b = np.sin(a) + 0.3 * k + np.array([geff[v] for v in g]) + (c == "z") + 0.2 * rng.normal(size=n)
    logit = b - 0.5 * (c == "x") + a
    t = (logit + rng.logistic(size=n) > 0.5).astype(int) + (logit > 2)
    df = pd.DataFrame({"a": a, "c": c, "g": g, "k": k, "b": b, "t": t})
    return Table.from_pandas(df, target="t")


def _graph(table):
    g = nx.DiGraph()
    g.add_nodes_from(table.names)
    g.add_edges_from(EDGES)
    return g


def _fit(table, mechanisms=None):
    model = gcm.StructuralCausalModel(_graph(table))
    df = dowhy_frame(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mechanisms is None:
            gcm.auto.assign_causal_mechanisms(model, df, quality=gcm.auto.AssignmentQuality.GOOD)
        else:
            for node in table.names:
                model.set_causal_mechanism(node, mechanisms.get(node, gcm.EmpiricalDistribution()))
        gcm.fit(model, df, return_evaluation_summary=False)
    return model


def _shuffled(table, seed=1):
    """Every column permuted on its own: parent combinations the training rows lack."""
    rng = np.random.default_rng(seed)
    vals = np.stack([rng.permutation(col) for col in table.values.T], axis=1)
    return Table(vals, np.zeros_like(table.missing), table.columns, table.target)


def _check_matches(model, table, scm):
    one = masked_params(jax.tree.map(lambda x: x[0], scm))
    one_compact = jax.tree.map(lambda x: x[0], sampler.as_compact(scm))
    for tab in (table, _shuffled(table)):
        df = dowhy_frame(tab)
        z = encode_slots(jax.numpy.asarray(tab.values), one.slot_column, one.slot_level)
        out = np.asarray(all_node_outputs(one, z))  # [n, d, C]
        # the compact layout (parents only, each family for its own nodes) gives the same
        compact = np.asarray(compact_outputs(one_compact, jax.numpy.asarray(tab.values.T)))
        nonroot = np.asarray(scm.kind[0]) != ROOT
        np.testing.assert_allclose(compact.transpose(2, 0, 1)[:, nonroot], out[:, nonroot],
                                   rtol=1e-5, atol=1e-4)
        for j, node in enumerate(table.names):
            parents = sorted(model.graph.predecessors(node))
            if not parents:
                continue
            X = df[parents].to_numpy()
            mech = model.causal_mechanism(node)
            np.testing.assert_allclose(np.asarray(node_outputs(one, j, z)), out[:, j], rtol=1e-5,
                                       atol=1e-4)
            if isinstance(mech, gcm.ClassifierFCM):
                ref = mech.classifier_model.predict_probabilities(X)
                levels = [str(v) for v in table.columns[j].levels]
                channels = [levels.index(str(c)) for c in mech.classifier_model.classes]
                probs = np.asarray(categorical_probs(out[:, j], table.n_levels[j]))
                np.testing.assert_allclose(probs[:, channels], ref, atol=2e-5, err_msg=node)
            else:
                ref = mech.prediction_model.predict(X)[:, 0]
                np.testing.assert_allclose(out[:, j, 0], ref, rtol=1e-4, atol=1e-4, err_msg=node)


def _check_structure(model, table, scm):
    kinds = np.asarray(scm.kind[0])
    for j, node in enumerate(table.names):
        mech = model.causal_mechanism(node)
        if isinstance(mech, gcm.EmpiricalDistribution):
            assert kinds[j] == ROOT
            labels = np.ravel(mech.data)
            if table.n_levels[j]:
                levels = [str(v) for v in table.columns[j].levels]
                labels = [levels.index(str(v)) for v in labels]
            np.testing.assert_allclose(np.asarray(scm.noise[0, j]), labels, rtol=1e-6)
        elif isinstance(mech, gcm.ClassifierFCM):
            assert kinds[j] == CATEGORICAL
        else:
            assert kinds[j] == NUMERIC
            assert bool(scm.is_integer[0, j]) == isinstance(mech, gcm.DiscreteAdditiveNoiseModel)
            np.testing.assert_allclose(np.asarray(scm.noise[0, j]),
                                       np.ravel(mech.noise_model.data), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """HistGradientBoosting's OpenMP threads crawl on a shared 2-core machine."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def table():
    return _table()


def test_auto_good_assignment(table):
    model = _fit(table)
    scm = from_dowhy(model, table)
    assert scm.k == 1 and scm.d == 6
    _check_structure(model, table, scm)
    _check_matches(model, table, scm)


def test_forced_mechanisms_cover_each_family(table):
    ml = gcm.ml
    forced = {
        "k": gcm.DiscreteAdditiveNoiseModel(ml.create_polynom_regressor(degree=2)),
        "b": gcm.AdditiveNoiseModel(ml.create_hist_gradient_boost_regressor(max_iter=20)),
        "t": gcm.ClassifierFCM(gcm.ml.classification.create_decision_tree_classifier()),
    }
    model = _fit(table, forced)
    # b's parents carry 11 categories: DoWhy target-encodes c and g (lookup splits -> chains)
    assert type(model.causal_mechanism("b").prediction_model._encoders[1]).__name__ == \
        "CatBoostEncoder"
    scm = from_dowhy(model, table)  # trees as lookup tables
    traversed = from_dowhy(model, table, tree_budget=None)  # every tree in traversal arrays
    assert scm.quad_w.shape[2] == scm.n_slots and traversed.tree_feature.shape[2] == 20
    assert scm.tree_tables is not None and traversed.tree_tables is None
    _check_structure(model, table, scm)
    _check_matches(model, table, scm)
    _check_matches(model, table, traversed)


def test_forced_mechanisms_second_set(table):
    ml = gcm.ml
    forced = {
        "k": gcm.AdditiveNoiseModel(ml.create_linear_regressor()),
        "b": gcm.AdditiveNoiseModel(ml.create_polynom_regressor(degree=2)),  # target-encoded
        "t": gcm.ClassifierFCM(ml.create_hist_gradient_boost_classifier(max_iter=10)),
    }
    model = _fit(table, forced)
    scm = from_dowhy(model, table)
    _check_matches(model, table, scm)
    forced = {"t": gcm.ClassifierFCM(ml.create_logistic_regression_classifier(max_iter=2000)),
              "b": gcm.AdditiveNoiseModel(gcm.ml.regression.SklearnRegressionModel(
                  __import__("sklearn.tree", fromlist=["x"]).DecisionTreeRegressor(max_depth=6))),
              "k": gcm.DiscreteAdditiveNoiseModel(ml.create_hist_gradient_boost_regressor(
                  max_iter=10))}
    model = _fit(table, forced)
    scm = from_dowhy(model, table)
    _check_matches(model, table, scm)


def test_degree_3_polynomials(table):
    """DoWhy's degree-3 polynomial regressor / logistic classifier -> cubic monomials; b's
    parents are target-encoded (products of lookups expand into one-hot monomials)."""
    ml = gcm.ml
    forced = {
        "k": gcm.DiscreteAdditiveNoiseModel(ml.create_polynom_regressor(degree=3)),
        "b": gcm.AdditiveNoiseModel(ml.create_polynom_regressor(degree=3)),
        "t": gcm.ClassifierFCM(ml.create_polynom_logistic_regression_classifier(max_iter=10000)),
    }
    model = _fit(table, forced)
    scm = from_dowhy(model, table)
    assert scm.quad_w.shape[2] == scm.n_slots and scm.cube_w.shape[2] > 0
    _check_structure(model, table, scm)
    _check_matches(model, table, scm)


def test_auto_good_picks_cubic_classifier():
    """GOOD picks the degree-3 polynomial logistic regression for a binary node whose logit
    is cubic in its numeric parent; the converted SCM matches DoWhy."""
    rng = np.random.default_rng(0)
    n = 300
    a = rng.normal(size=n)
    c = rng.choice(["p", "q", "r"], n)
    y = np.where(2 * a**2 - a**3 - 1.5 + (c == "q") + rng.logistic(size=n) > 0, "on", "off")
    b = a + 2 * (y == "on") + 0.3 * rng.normal(size=n)
    e = b**2 + 0.3 * rng.normal(size=n)
    table = Table.from_pandas(pd.DataFrame({"a": a, "c": c, "y": y, "b": b, "e": e}), target="y")
    model = gcm.StructuralCausalModel(
        nx.DiGraph([("a", "y"), ("c", "y"), ("a", "b"), ("y", "b"), ("b", "e")]))
    df = dowhy_frame(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gcm.auto.assign_causal_mechanisms(model, df, quality=gcm.auto.AssignmentQuality.GOOD)
        gcm.fit(model, df, return_evaluation_summary=False)
    poly = model.causal_mechanism("y").classifier_model.sklearn_model.steps[0][1]
    assert type(poly).__name__ == "PolynomialFeatures" and poly.degree == 3
    scm = from_dowhy(model, table)
    assert scm.cube_w.shape[2] > 0
    _check_structure(model, table, scm)
    _check_matches(model, table, scm)


def test_binary_classifiers():
    rng = np.random.default_rng(3)
    n = 300
    a = rng.normal(size=n)
    c = rng.choice(["u", "v"], n)
    t = np.where(a + (c == "u") + rng.logistic(size=n) > 0.5, "yes", "no")
    table = Table.from_pandas(pd.DataFrame({"a": a, "c": c, "t": t}), target="t")
    graph = nx.DiGraph([("a", "t"), ("c", "t")])
    for clf in (gcm.ml.create_logistic_regression_classifier(),
                gcm.ml.create_polynom_logistic_regression_classifier(max_iter=10000),
                gcm.ml.create_hist_gradient_boost_classifier(max_iter=10)):
        model = gcm.StructuralCausalModel(graph)
        for node in ("a", "c"):
            model.set_causal_mechanism(node, gcm.EmpiricalDistribution())
        model.set_causal_mechanism("t", gcm.ClassifierFCM(clf))
        gcm.fit(model, dowhy_frame(table), return_evaluation_summary=False)
        _check_matches(model, table, from_dowhy(model, table))


def test_unsupported_mechanisms_are_refused(table):
    ml = gcm.ml
    model = _fit(table, {
        "k": gcm.AdditiveNoiseModel(ml.create_linear_regressor()),
        "b": gcm.AdditiveNoiseModel(ml.create_linear_regressor()),
        "t": gcm.ClassifierFCM(ml.create_polynom_logistic_regression_classifier(degree=4,
                                                                               max_iter=200)),
    })
    with pytest.raises(ValueError, match="node 't'.*degree 4"):
        from_dowhy(model, table)
    model.set_causal_mechanism("b", gcm.AdditiveNoiseModel(
        ml.create_random_forest_regressor(n_estimators=3)))
    gcm.fit(model, dowhy_frame(table), return_evaluation_summary=False)
    with pytest.raises(ValueError, match="node 'b'.*RandomForestRegressor"):
        from_dowhy(model, table)
    model.set_causal_mechanism("a", gcm.ScipyDistribution())
    with pytest.raises(ValueError, match="node 'a'.*ScipyDistribution"):
        from_dowhy(model, table)


def test_pools_of_different_sizes():
    from causaljax.scm.dowhy import _fit_pool
    rng = np.random.default_rng(0)
    pool = np.arange(7.0)
    out = _fit_pool(pool, 17, rng)
    assert len(out) == 17
    counts = np.bincount(out.astype(int), minlength=7)
    assert counts.min() >= 2 and counts.max() <= 3
