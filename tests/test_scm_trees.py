import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from causaljax.scm.mechanisms import tree_outputs
from causaljax.scm.trees import (
    decision_tree_arrays,
    floor_float32,
    hgb_classifier_arrays,
    hgb_regressor_arrays,
    stack_trees,
)


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    X[:, 2] = rng.integers(0, 4, n)  # a feature with ties, thresholds at midpoints
    return X.astype(np.float64), rng


def _slots(X, slot_map, S=6):
    """Place the model's features into a wider slot vector (other slots hold junk)."""
    z = np.random.default_rng(1).normal(size=(len(X), S)).astype(np.float32)
    z[:, slot_map] = X
    return jnp.asarray(z)


def _eval(arr, z):
    a = [jnp.asarray(x) for x in (arr.feature, arr.threshold, arr.left, arr.right, arr.value)]
    return np.asarray(tree_outputs(z, *a, arr.depth))


SLOT_MAP = [4, 0, 2]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """HistGradientBoosting's OpenMP threads crawl on a shared 2-core machine."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def test_floor_float32():
    t = np.array([0.1, 1.0, -0.3, 2.0 ** -30 / 3])
    f = floor_float32(t)
    assert f.dtype == np.float32
    assert (f.astype(np.float64) <= t).all()
    assert (np.nextafter(f, np.float32(np.inf)).astype(np.float64) > t).all()
    assert f[1] == 1.0


def test_hgb_regressor_matches_predict():
    X, rng = _data()
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=len(X))
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X, y)
    arr, bias = hgb_regressor_arrays(model, SLOT_MAP, n_channels=3)
    assert arr.n_trees == 30
    assert arr.depth >= 1
    out = _eval(arr, _slots(X, SLOT_MAP)) + bias
    np.testing.assert_allclose(out[:, 0], model.predict(X), rtol=1e-5, atol=1e-5)
    assert np.all(out[:, 1:] == 0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_hgb_classifier_matches_predict_proba(n_classes):
    X, rng = _data(1)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 2] + 0.3 * rng.normal(size=len(X)),
                    np.quantile(X[:, 0] + 0.5 * X[:, 2], np.linspace(0, 1, n_classes + 1)[1:-1]))
    labels = np.array(["a", "b", "c"])[y]
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, labels)
    channel_map = np.arange(n_classes)[::-1] + 1  # class c -> channel n_classes - c
    arr, bias = hgb_classifier_arrays(model, SLOT_MAP, n_channels=4, channel_map=channel_map)
    logits = _eval(arr, _slots(X, SLOT_MAP)) + bias
    probs = softmax(logits[:, channel_map], axis=1)
    np.testing.assert_allclose(probs, model.predict_proba(X), rtol=1e-4, atol=1e-5)
    if n_classes == 2:
        np.testing.assert_allclose(logits[:, channel_map[1]], model._raw_predict(X)[:, 0],
                                   rtol=1e-5, atol=1e-5)
        assert np.all(logits[:, channel_map[0]] == 0)


def test_decision_tree_regressor_exact():
    X, rng = _data(2)
    y = X[:, 0] ** 2 + X[:, 2] + 0.1 * rng.normal(size=len(X))
    model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y)
    arr = decision_tree_arrays(model, SLOT_MAP, n_channels=2)
    assert arr.n_trees == 1 and arr.n_nodes == model.tree_.node_count
    assert arr.depth == model.get_depth()
    out = _eval(arr, _slots(X, SLOT_MAP))
    np.testing.assert_allclose(out[:, 0], model.predict(X).astype(np.float32), rtol=1e-6)
    # float32 inputs exactly at / next to a threshold route like sklearn does
    split = model.tree_.threshold[0]
    probe = np.repeat(X[:1], 3, axis=0)
    f = model.tree_.feature[0]
    probe[:, f] = [np.float32(split), np.nextafter(np.float32(split), np.float32(-np.inf)),
                   np.nextafter(np.float32(split), np.float32(np.inf))]
    np.testing.assert_allclose(_eval(arr, _slots(probe, SLOT_MAP))[:, 0],
                               model.predict(probe.astype(np.float32)), rtol=1e-6)


def test_decision_tree_classifier_log_probs():
    X, _rng = _data(3)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 2)
    model = DecisionTreeClassifier(max_depth=5, min_samples_leaf=5, random_state=0).fit(X, y)
    arr = decision_tree_arrays(model, SLOT_MAP, n_channels=3)
    logits = _eval(arr, _slots(X, SLOT_MAP))
    np.testing.assert_allclose(softmax(logits, axis=1), model.predict_proba(X), atol=1e-6)


def test_stack_trees_pads():
    X, rng = _data(4)
    y = X[:, 0] + rng.normal(size=len(X))
    small = decision_tree_arrays(DecisionTreeRegressor(max_depth=2).fit(X, y), SLOT_MAP, 2)
    big, _bias = hgb_regressor_arrays(
        HistGradientBoostingRegressor(max_iter=5).fit(X, y), SLOT_MAP, 2)
    stacked = stack_trees([small, None, big])
    assert stacked.feature.shape == (3, 5, max(small.n_nodes, big.n_nodes))
    assert stacked.value.shape[-1] == 2
    assert stacked.depth == max(small.depth, big.depth)
    z = _slots(X, SLOT_MAP)
    for j, ref in [(0, small), (2, big)]:
        got = _eval(stacked._replace(**{f: getattr(stacked, f)[j] for f in
                                        ("feature", "threshold", "left", "right", "value")}), z)
        np.testing.assert_allclose(got, _eval(ref, z), rtol=1e-6)
    empty = stacked._replace(**{f: getattr(stacked, f)[1] for f in
                                ("feature", "threshold", "left", "right", "value")})
    assert np.all(_eval(empty, z) == 0)
