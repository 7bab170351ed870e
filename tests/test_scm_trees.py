import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from causaljax.scm.mechanisms import table_outputs, tree_outputs
from causaljax.scm.trees import (
    TABLE_FIELDS,
    decision_tree_arrays,
    floor_float32,
    hgb_classifier_arrays,
    hgb_regressor_arrays,
    node_tables,
    pack_node_tables,
    pad_tables,
    stack_tables,
    stack_trees,
    table_sizes,
    tabulate_trees,
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


# ---------------------------------------------------------------------------------------
# Lookup tables (tabulated ensembles) against sklearn and the traversal


def _tables_eval(arr, z, budget=2**13):
    """Tables of one node's trees + the traversal of the trees left over: f32[n, C]."""
    groups, keep = node_tables(arr, budget)
    packed = pack_node_tables(groups, arr.value.shape[-1])
    out = np.asarray(table_outputs(z, *(jnp.asarray(packed[f]) for f in TABLE_FIELDS)))
    if keep.any():
        rest = arr._replace(**{f: getattr(arr, f)[keep] for f in
                               ("feature", "threshold", "left", "right", "value")})
        out = out + _eval(rest, z)
    return out, groups, keep


def _threshold_probes(model_X, arr, slot_map, n_max=400):
    """Rows of X with one feature moved onto a split threshold and onto the float32 numbers
    just below / above it: where a table cell boundary must route like sklearn."""
    rng = np.random.default_rng(5)
    feats, thrs = [], []
    for t in range(arr.n_trees):
        split = arr.left[t] != np.arange(arr.n_nodes)
        feats += arr.feature[t][split].tolist()
        thrs += arr.threshold[t][split].tolist()
    inverse = {s: f for f, s in enumerate(slot_map)}
    pick = rng.choice(len(feats), min(n_max, len(feats)), replace=False)
    rows = []
    for i in pick:
        thr = np.float32(thrs[i])
        below, above = (np.nextafter(thr, np.float32(s * np.inf)) for s in (-1, 1))
        for v in (thr, below, above):
            row = model_X[rng.integers(len(model_X))].astype(np.float32).copy()
            row[inverse[feats[i]]] = v
            rows.append(row)
    return np.asarray(rows, np.float32)


def test_tables_match_hgb_regressor_and_traversal_at_thresholds():
    X, rng = _data(6)
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=len(X))
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X, y)
    arr, bias = hgb_regressor_arrays(model, SLOT_MAP, n_channels=2)
    probes = np.concatenate([X.astype(np.float32), _threshold_probes(X, arr, SLOT_MAP)])
    z = _slots(probes, SLOT_MAP)
    for budget in (2**13, 64):  # all trees tabulated / some left to the traversal
        out, groups, keep = _tables_eval(arr, z, budget)
        assert groups and (keep.any() == (budget == 64)) and not keep.all()
        assert all(len(g.table) <= budget for g in groups)
        np.testing.assert_allclose(out[:, 0] + bias[0], model.predict(probes.astype(np.float64)),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out, _eval(arr, z), rtol=1e-5, atol=1e-6)
        assert np.all(out[:, 1] == 0)
    # rows in blocks (a ragged last one): the same values
    packed = [jnp.asarray(pack_node_tables(node_tables(arr)[0], 2)[f]) for f in TABLE_FIELDS]
    np.testing.assert_array_equal(np.asarray(table_outputs(z, *packed, block=37)),
                                  np.asarray(table_outputs(z, *packed)))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_tables_match_hgb_classifier(n_classes):
    X, rng = _data(7)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 2] + 0.3 * rng.normal(size=len(X)),
                    np.quantile(X[:, 0] + 0.5 * X[:, 2], np.linspace(0, 1, n_classes + 1)[1:-1]))
    model = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(X, y)
    channel_map = np.arange(n_classes)[::-1] + 1
    arr, bias = hgb_classifier_arrays(model, SLOT_MAP, n_channels=4, channel_map=channel_map)
    probes = np.concatenate([X.astype(np.float32), _threshold_probes(X, arr, SLOT_MAP, 100)])
    z = _slots(probes, SLOT_MAP)
    out, groups, keep = _tables_eval(arr, z)
    assert not keep.any()
    assert {g.channel for g in groups} == set(channel_map[1:] if n_classes == 2 else channel_map)
    probs = softmax((out + bias)[:, channel_map], axis=1)
    np.testing.assert_allclose(probs, model.predict_proba(probes.astype(np.float64)),
                               rtol=1e-4, atol=1e-5)


def test_tables_of_decision_tree_classifier_cover_every_channel():
    X, _rng = _data(8)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 2)
    model = DecisionTreeClassifier(max_depth=4, min_samples_leaf=5, random_state=0).fit(X, y)
    arr = decision_tree_arrays(model, SLOT_MAP, n_channels=3)
    z = _slots(X, SLOT_MAP)
    out, groups, keep = _tables_eval(arr, z)
    assert not keep.any() and sorted(g.channel for g in groups) == [0, 1, 2]
    np.testing.assert_allclose(softmax(out, axis=1), model.predict_proba(X), atol=1e-6)
    # a budget below the tree's own grid leaves it to the traversal: the same outputs
    out_small, groups_small, keep_small = _tables_eval(arr, z, budget=2)
    assert keep_small.all() and not groups_small
    np.testing.assert_allclose(out_small, out, rtol=1e-6, atol=1e-6)


def test_pad_and_stack_tables_keep_outputs():
    X, rng = _data(9)
    y = X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=len(X))
    z = _slots(X.astype(np.float32), SLOT_MAP)
    arrs = [hgb_regressor_arrays(HistGradientBoostingRegressor(max_iter=it).fit(X, y),
                                 SLOT_MAP, 2)[0] for it in (3, 12)]
    packed = [pack_node_tables(node_tables(a)[0], 2) for a in arrs]
    stacked = stack_tables([packed[0], None, packed[1]], [(), (), ()], 2)
    assert stacked["edges"].shape[0] == 3 and np.isinf(stacked["edges"]).any()
    for i, ref in ((0, arrs[0]), (2, arrs[1])):
        got = table_outputs(z, *(jnp.asarray(stacked[f][i]) for f in TABLE_FIELDS))
        np.testing.assert_allclose(np.asarray(got), _eval(ref, z), rtol=1e-5, atol=1e-6)
    empty = table_outputs(z, *(jnp.asarray(stacked[f][1]) for f in TABLE_FIELDS))
    assert np.all(np.asarray(empty) == 0)
    big = pad_tables(packed[0], **{k: v + 3 for k, v in table_sizes(packed[1]).items()})
    got = table_outputs(z, *(jnp.asarray(big[f]) for f in TABLE_FIELDS))
    np.testing.assert_allclose(np.asarray(got), _eval(arrs[0], z), rtol=1e-5, atol=1e-6)


def test_tabulate_trees_on_an_scm_and_validate():
    from causaljax.scm.mechanisms import all_node_outputs, masked_params, node_outputs
    from causaljax.scm.random import random_scm
    from causaljax.scm.types import TreeTables, validate

    base = random_scm(seed=3, k=2, n_levels=(0, 0, 3, 0, 2), n_trees=5, tree_depth=3)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(64, base.n_slots)).astype(np.float32))
    for budget, traversed in ((2**13, False), (6, True)):
        tab = tabulate_trees(base, budget)
        validate(tab)
        assert isinstance(tab.tree_tables, TreeTables)
        assert (tab.tree_feature.shape[2] > 0) == traversed
        for s in range(2):
            want = all_node_outputs(masked_params(jax.tree.map(lambda a, s=s: a[s], base)), z)
            one = masked_params(jax.tree.map(lambda a, s=s: a[s], tab))
            np.testing.assert_allclose(np.asarray(all_node_outputs(one, z)), np.asarray(want),
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(np.asarray(node_outputs(one, 3, z)),
                                       np.asarray(want[:, 3]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="already has tree tables"):
        tabulate_trees(tabulate_trees(base, 6))
    assert tabulate_trees(random_scm(seed=3, k=1)) is not None  # no trees: unchanged
    # the memory cap halves the budget until the tables fit
    capped = tabulate_trees(base, 2**13, max_table_bytes=1)
    assert capped.tree_tables.sizes["B"] == 1 and capped.tree_feature.shape[2] == 5
    tt = tabulate_trees(base).tree_tables
    bad_edges = np.asarray(tt.edges).copy()
    bad_edges[0, 1, 0, :2] = [1.0, 0.0]
    with pytest.raises(ValueError, match="sorted"):
        validate(tabulate_trees(base).replace(tree_tables=tt.replace(edges=bad_edges)))
    j = int(np.flatnonzero(np.asarray(tt.remap)[0].any(axis=(1, 2, 3)))[0])
    slot = np.asarray(tt.slot).copy()
    slot[0, j, 0] = list(np.asarray(base.slot_column[0])).index(j)  # the node's own column
    with pytest.raises(ValueError, match="not a parent"):
        validate(tabulate_trees(base).replace(tree_tables=tt.replace(slot=slot)))


@pytest.mark.parametrize("K, real", [(5, 3), (45, 4), (45, 45), (145, 11), (145, 140)])
def test_member_bins_count_the_edges_below_like_searchsorted(K, real):
    """A table member's bins: #{edges < x} per axis over its real edges (the +inf padding of
    its group never counts; chunked comparisons or a search), NaN -> K, as np.searchsorted."""
    from causaljax.scm.mechanisms import _member_bins

    rng = np.random.default_rng(K + real)
    U, n = 3, 300
    edges = np.full((U, K), np.inf, np.float32)
    for u, count in enumerate([real, max(real // 2, 1), 1]):
        edges[u, :count] = np.sort(rng.normal(size=count)).astype(np.float32)
    x = rng.normal(size=(U, n)).astype(np.float32)
    x[:, :5] = edges[:, :1]  # ties: an edge equal to x is not below it
    x[0, 5] = np.nan
    got = np.asarray(jax.jit(_member_bins)(jnp.asarray(x), jnp.asarray(edges)))
    want = np.stack([np.searchsorted(edges[u], x[u], side="left") for u in range(U)])
    want[0, 5] = K
    np.testing.assert_array_equal(got, want)
