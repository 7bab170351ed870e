"""The random-SCM pretraining prior: shapes, masks, labels, class counts, reproducibility."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import load_script

from causaljax.prior import PriorConfig, random_scms, sample_batch
from causaljax.scm.types import validate

CFG = PriorConfig(n_rows=64, n_nodes=12, max_prior_features=8, hidden=4, pool=64, min_rows=24)
B = 24


@pytest.fixture(scope="module")
def batch():
    return jax.tree.map(np.asarray, sample_batch(jax.random.key(0), CFG, B))


def test_shapes_and_dtypes(batch):
    N, F = CFG.n_rows, CFG.max_features
    assert batch.x.shape == (B, N, F) and batch.x.dtype == np.float32
    assert batch.y.shape == (B, N) and batch.y.dtype == np.int32
    assert batch.ctx.shape == batch.row.shape == (B, N)
    assert batch.feat.shape == (B, F) and batch.n_classes.shape == (B,)


def test_masks(batch):
    n_valid = batch.row.sum(1)
    n_ctx = batch.ctx.sum(1)
    assert (n_valid >= CFG.min_rows).all() and (n_valid <= CFG.n_rows).all()
    assert (n_ctx >= 2).all() and (n_ctx < n_valid).all()  # at least one query row
    assert not (batch.ctx & ~batch.row).any()  # context rows are real rows
    n_feat = batch.feat.sum(1)
    assert (n_feat >= 1).all() and (n_feat <= CFG.max_prior_features).all()
    # padding slots and padding rows hold exact zeros, real cells are finite or NaN
    assert (batch.x[~np.broadcast_to(batch.feat[:, None, :], batch.x.shape)] == 0).all()
    assert (batch.x[~batch.row] == 0).all()
    assert not np.isinf(batch.x).any()
    # feature slots are scattered, not always the first ones
    assert batch.feat[:, CFG.max_prior_features:].any()


def test_labels_and_class_counts(batch):
    C = batch.n_classes
    assert ((C >= 2) & (C <= CFG.max_classes)).all()
    for b in range(B):
        y = batch.y[b][batch.row[b]]
        assert y.min() >= 0 and y.max() < C[b]
        counts = np.bincount(y, minlength=C[b])
        # rank thresholds on flattened proportions: each class holds >= 15%/C of the rows
        # (up to one row of rounding at each of its two thresholds)
        assert counts.min() >= int(0.15 / C[b] * len(y)) - 2, (b, counts)
        assert counts.sum() == batch.row[b].sum()
    assert (C == 2).any() and (C > 2).any()
    assert (batch.y[~batch.row] == 0).all()


def test_imbalance_varies():
    big = jax.tree.map(np.asarray, sample_batch(jax.random.key(3), CFG, 64))
    minority = [np.bincount(big.y[b][big.row[b]]).min() / big.row[b].sum()
                for b in range(64) if big.n_classes[b] == 2]
    assert min(minority) < 0.3 and max(minority) > 0.4


def test_reproducible_and_key_dependent(batch):
    again = jax.tree.map(np.asarray, sample_batch(jax.random.key(0), CFG, B))
    for a, b in zip(batch, again):
        np.testing.assert_array_equal(a, b)
    other = sample_batch(jax.random.key(1), CFG, B)
    assert not np.array_equal(np.nan_to_num(batch.x), np.nan_to_num(np.asarray(other.x)))


def test_random_scms_satisfy_the_scm_contract():
    scm = random_scms(jax.random.key(0), CFG, 5)
    validate(jax.tree.map(np.asarray, scm))  # raises on a broken SCM
    parents = np.asarray(scm.parents)
    assert parents.any() and not np.tril(parents[0]).any()  # DAG in node order
    # depth is the longest path: check against a NumPy recursion
    for s in range(5):
        level = np.zeros(CFG.n_nodes, int)
        for j in range(CFG.n_nodes):
            par = np.flatnonzero(parents[s][:, j])
            level[j] = level[par].max() + 1 if len(par) else 0
        assert int(scm.depth[s]) == level.max()


def test_categorical_and_missing_features_occur():
    big = jax.tree.map(np.asarray, sample_batch(jax.random.key(5), CFG, 64))
    assert np.isnan(big.x).any()
    # some real feature column holds only a few small non-negative integer codes
    found = False
    for b in range(64):
        for f in np.flatnonzero(big.feat[b]):
            col = big.x[b][big.row[b], f]
            col = col[~np.isnan(col)]
            if len(np.unique(col)) <= 10 and np.all(col == np.round(col)) and col.min() >= 0:
                found = True
    assert found


def test_batch_compiles_once():
    sample_batch(jax.random.key(0), CFG, B)
    size = sample_batch._cache_size()
    sample_batch(jax.random.key(9), CFG, B)
    assert sample_batch._cache_size() == size
    assert jnp.asarray(0).dtype == jnp.int32


def test_bench_prior_script_smoke():
    script = load_script("benchmarks", "bench_prior")
    result = script.main(["--rows", "32", "--features", "3", "--batch", "4", "--repeats", "1"])
    assert result["datasets_per_s"] > 0 and result["tabpfn_v1_prior_datasets_per_s"] == 522.0


def test_quantile_pools_match_the_sampled_families():
    """Each family's quantile pool has the distribution of the in-program random draws it
    replaced (runs before session 7): two-sample KS test, 1% false-alarm rate per family."""
    from scipy.stats import ks_2samp

    from causaljax.prior import _noise_pool, family_quantiles

    m, n = 512, 4000
    u = np.asarray(jax.random.uniform(jax.random.key(0), (2, n, 4), minval=1e-6, maxval=1 - 1e-6))
    z = np.asarray(jax.scipy.special.ndtri(u[0]))
    sampled = np.asarray(_noise_pool(z, u[1], jnp.arange(4), jnp.ones(4)))  # [n, 4]
    pools = family_quantiles(m)
    assert pools.shape == (4, m) and pools.dtype == np.float32
    assert (np.diff(pools, axis=1) >= 0).all()  # quantiles in order
    for family in range(4):
        assert ks_2samp(pools[family], sampled[:, family]).pvalue > 0.01, family
        # the pool's mean is its family's (0 for all four, up to the 1/m quantisation)
        assert abs(pools[family].mean() - sampled[:, family].mean()) < 0.1, family


@pytest.mark.parametrize("pools", ["quantiles", "sampled"])
def test_both_noise_pool_modes_give_valid_batches(pools):
    import dataclasses

    cfg = dataclasses.replace(CFG, noise_pools=pools)
    scm = random_scms(jax.random.key(0), cfg, 3)
    assert scm.noise.shape == (3, cfg.n_nodes, cfg.pool)
    validate(jax.tree.map(np.asarray, scm))
    sorted_pools = (np.diff(np.asarray(scm.noise), axis=2) >= 0).all()
    assert sorted_pools == (pools == "quantiles")  # quantile pools are in order, draws not
    b = jax.tree.map(np.asarray, sample_batch(jax.random.key(0), cfg, 4))
    assert not np.isinf(b.x).any() and ((b.n_classes >= 2) & (b.row.sum(1) >= cfg.min_rows)).all()


def test_unknown_noise_pools_is_an_error():
    import dataclasses

    with pytest.raises(ValueError, match="noise_pools"):
        random_scms(jax.random.key(0), dataclasses.replace(CFG, noise_pools="grid"), 2)


def test_tree_prior_splits_on_parents_and_moves_the_rows():
    """n_trees: every split reads a parent of its node (the SCM contract), and the trees of
    a tree dataset change its rows (zeroing their leaves gives other rows)."""
    import dataclasses

    from causaljax.sampler import sample

    cfg = dataclasses.replace(CFG, n_trees=2, tree_depth=2, tree_prob=1.0)
    scm = random_scms(jax.random.key(3), cfg, 4)
    assert scm.tree_depth == 2 and scm.tree_feature.shape == (4, cfg.n_nodes, 2, 7)
    validate(jax.tree.map(np.asarray, scm))  # raises if a split reads a non-parent slot
    feature, parents = np.asarray(scm.tree_feature), np.asarray(scm.parents)
    for s in range(4):
        for j in np.flatnonzero(parents[s].any(0)):
            assert parents[s][feature[s, j, :, :3].ravel(), j].all()
    leaves = np.asarray(scm.tree_value)[..., 3:, 0]
    assert (leaves[parents.any(1)] != 0).all()  # tree_prob = 1: every non-root uses its trees
    key = jax.random.key(4)
    rows = sample(scm, key, 64, strategy="walk", rng=cfg.rng, levels=(0,) * cfg.n_nodes)
    flat = scm.replace(tree_value=jnp.zeros_like(scm.tree_value))
    rows_flat = sample(flat, key, 64, strategy="walk", rng=cfg.rng, levels=(0,) * cfg.n_nodes)
    moved = np.abs(np.asarray(rows) - np.asarray(rows_flat)).max(axis=(1, 2))
    has_edges = parents.any(axis=(1, 2))  # an SCM of roots only has no mechanisms
    assert has_edges.sum() >= 2 and (moved[has_edges] > 1e-3).all()
    none = random_scms(jax.random.key(3), dataclasses.replace(cfg, tree_prob=0.0), 4)
    assert not np.asarray(none.tree_value).any()  # tree_prob = 0: the trees carry nothing
    b = jax.tree.map(np.asarray, sample_batch(jax.random.key(0), cfg, 4))
    assert not np.isinf(b.x).any() and (b.n_classes >= 2).all()


def test_warp_is_monotone_per_column_and_only_where_drawn():
    from causaljax.prior import _warp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32) * 3 + 1
    row = np.arange(50) < 40
    u = rng.uniform(size=(4, 6)).astype(np.float32)
    u[0] = [0.1, 0.9, 0.2, 0.95, 0.3, 0.05]  # columns 0, 2, 4, 5 warped at p = 0.5
    u[1, :3], u[1, 3:] = 0.2, 0.8  # exp warps in 0..2, power warps in 3..5
    w = np.asarray(_warp(jnp.asarray(x), jnp.asarray(row), jnp.asarray(u), 0.5))
    warped = u[0] < 0.5
    np.testing.assert_array_equal(w[:, ~warped], x[:, ~warped])
    assert not np.allclose(w[:, warped], x[:, warped])
    for f in np.flatnonzero(warped):  # strictly monotone: the same order of the rows
        o = np.argsort(x[:, f])
        d = np.diff(w[o, f])
        assert (d > 0).all() or (d < 0).all(), f
    assert np.isfinite(w).all()
    b = jax.tree.map(np.asarray, sample_batch(jax.random.key(0),
                                              __import__("dataclasses").replace(CFG, warp=1.0), 4))
    assert not np.isinf(b.x).any() and (b.row.sum(1) >= CFG.min_rows).all()
