"""Random-SCM prior: batches of synthetic classification datasets for pretraining the TFM.

Each batch is built on device in one jitted program:

1. ``random_scms`` builds B random SCMs as ONE ``causaljax.scm.types.SCM`` pytree (k = B):
   a random DAG over D nodes (edge density varies per dataset), random mechanisms mixing a
   linear map and a one-hidden-layer ReLU MLP of the parents (nonlinearity varies per
   dataset), and empirical noise pools drawn from varied distributions (normal, uniform,
   skewed, heavy-tailed) with varied scales; some nodes are rounded to integers.
2. ``causaljax.sampler.sample`` (the project's compiled sampler) draws N rows of each SCM.
3. ``make_datasets`` turns the node values into classification tasks: a random non-root node
   is the target, discretised into 2..10 classes at random quantiles (so imbalance varies),
   with the class labels randomly permuted; a random subset of 1..max_prior_features other
   nodes become features, scattered into random slots of the model's MAX_FEATURES slots;
   some features are discretised into 2..10 categories with shuffled codes; some cells are
   made missing (NaN); the number of real rows and the context / query split vary.

Shapes are fixed by ``PriorConfig`` (padding + masks), so the train step compiles once.
A batch is a ``Batch`` of arrays with a leading dataset axis B (see its fields).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from causaljax.sampler import sample
from causaljax.scm.types import NUMERIC, ROOT, SCM

MAX_FEATURES = 100
MAX_CLASSES = 10


@dataclass(frozen=True)
class PriorConfig:
    n_rows: int = 256  # N rows per dataset (context + query + padding)
    n_nodes: int = 48  # D nodes in each random SCM
    max_prior_features: int = 40  # at most this many features per dataset (<= D - 1)
    hidden: int = 8  # H hidden units of each node's MLP
    pool: int = 512  # m values in each node's empirical noise pool
    min_rows: int = 32  # fewest real rows in a dataset
    max_features: int = MAX_FEATURES  # feature slots of the model (padding)
    max_classes: int = MAX_CLASSES


class Batch(NamedTuple):
    x: jax.Array  # f32[B, N, F]   features (NaN = missing), 0 in padding slots / rows
    y: jax.Array  # int32[B, N]    class labels 0..n_classes-1 (0 in padding rows)
    ctx: jax.Array  # bool[B, N]   context row (label visible to the model)
    row: jax.Array  # bool[B, N]   real row (False: padding)
    feat: jax.Array  # bool[B, F]  real feature slot
    n_classes: jax.Array  # int32[B]


# ----------------------------------------------------------------------------- SCMs
def _loguniform(key, shape, lo, hi):
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


def _noise_pool(key, m: int, d: int, scale_d):
    """f32[m, d]: per-node samples of a randomly chosen distribution with std ~ scale."""
    k_kind, k_z, k_u = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (m, d))
    u = jax.random.uniform(k_u, (m, d), minval=1e-6, maxval=1.0)
    options = jnp.stack([
        z,  # normal
        (2.0 * u - 1.0) * 1.732,  # uniform
        -jnp.log(u) - 1.0,  # exponential (skewed)
        z / jnp.sqrt(-2.0 * jnp.log(u) / 3.0 + 0.2) * 0.6,  # heavy-tailed
    ])  # [4, m, d]
    kind_d = jax.random.randint(k_kind, (d,), 0, 4)
    pool = jnp.take_along_axis(options, kind_d[None, None, :], axis=0)[0]
    return pool * scale_d[None, :]


def _one_scm(key, D: int, H: int, m: int) -> dict:
    """Fields of one random SCM (no k axis); nodes are in topological order 0..D-1."""
    ks = jax.random.split(key, 12)
    density = _loguniform(ks[0], (), 0.03, 0.5)
    upper = jnp.arange(D)[:, None] < jnp.arange(D)[None, :]
    parents = upper & (jax.random.uniform(ks[1], (D, D)) < density)
    n_par = parents.sum(0)  # [D]
    is_root = n_par == 0
    fan_in = jnp.sqrt(jnp.maximum(n_par, 1).astype(jnp.float32))[None, :, None]  # per node j
    nonlin = jax.random.uniform(ks[2], ())  # 0: linear SCM, 1: MLP SCM
    lin_w = jax.random.normal(ks[3], (D, D, 1)) / fan_in.transpose(1, 0, 2)  # [j, S, C]
    lin_w = lin_w * jnp.sqrt(1.0 - nonlin)
    mlp_w1 = jax.random.normal(ks[4], (D, D, H)) * 1.4 / fan_in.transpose(1, 0, 2)
    mlp_b1 = jax.random.normal(ks[5], (D, H)) * 0.5
    mlp_w2 = jax.random.normal(ks[6], (D, H, 1)) * jnp.sqrt(nonlin * 2.0 / H)
    # noise: roots get unit-scale pools, other nodes a dataset-wide scale times a node factor
    sigma = _loguniform(ks[7], (), 0.02, 1.0) * _loguniform(ks[8], (D,), 0.5, 2.0)
    scale = jnp.where(is_root, 1.0, sigma)
    noise = _noise_pool(ks[9], m, D, scale)
    is_integer = jax.random.uniform(ks[10], (D,)) < 0.1 * jax.random.uniform(ks[11], ())
    # longest path: depth[j] = max over parents i of depth[i] + 1 (nodes are in order)
    def relax(j, lvl):
        return lvl.at[j].set(jnp.max(jnp.where(parents[:, j], lvl + 1, 0)))
    level = jax.lax.fori_loop(0, D, relax, jnp.zeros(D, jnp.int32))
    return dict(parents=parents, order=jnp.arange(D, dtype=jnp.int32), depth=level.max(),
                kind=jnp.where(is_root, ROOT, NUMERIC).astype(jnp.int32),
                n_levels=jnp.zeros(D, jnp.int32), is_integer=is_integer, noise=noise,
                slot_column=jnp.arange(D, dtype=jnp.int32),
                slot_level=jnp.full((D,), -1, jnp.int32),
                lin_w=lin_w, lin_b=jnp.zeros((D, 1)), quad_w=jnp.zeros((D, 0, 0, 1)),
                mlp_w1=mlp_w1, mlp_b1=mlp_b1, mlp_w2=mlp_w2,
                tree_feature=jnp.zeros((D, 0, 1), jnp.int32),
                tree_threshold=jnp.zeros((D, 0, 1)),
                tree_left=jnp.zeros((D, 0, 1), jnp.int32),
                tree_right=jnp.zeros((D, 0, 1), jnp.int32),
                tree_value=jnp.zeros((D, 0, 1, 1)))


def random_scms(key, cfg: PriorConfig, k: int) -> SCM:
    """k random SCMs stacked in one pytree (all nodes numeric; roots draw from their pool)."""
    fields = jax.vmap(lambda kk: _one_scm(kk, cfg.n_nodes, cfg.hidden, cfg.pool))(
        jax.random.split(key, k))
    return SCM(**fields)


# ----------------------------------------------------------------------------- datasets
def _random_perm_codes(key, codes, n_levels, max_levels: int):
    """Relabel integer codes 0..n_levels-1 by a random permutation of those levels."""
    v = jnp.where(jnp.arange(max_levels) < n_levels, jax.random.uniform(key, (max_levels,)), 2.0)
    new_code = (v[None, :] < v[:, None]).sum(-1)  # rank of level l among the valid levels
    return new_code[codes]


def _discretize_by_rank(values_N, valid_N, cum_props_C):
    """Class index of each row from its rank among valid rows and cumulative proportions."""
    n_valid = jnp.maximum(valid_N.sum(), 1)
    v = jnp.where(valid_N, values_N, jnp.inf)
    rank = jnp.argsort(jnp.argsort(v))
    q = (rank.astype(jnp.float32) + 0.5) / n_valid
    return (q[:, None] >= cum_props_C[None, :]).sum(-1)


def _one_dataset(key, rows_NxD, cfg: PriorConfig):
    N, D = rows_NxD.shape
    F, Fp, C = cfg.max_features, cfg.max_prior_features, cfg.max_classes
    ks = jax.random.split(key, 16)
    rows_NxD = jnp.nan_to_num(jnp.clip(rows_NxD, -1e4, 1e4))
    # real rows and context split
    n_valid = jnp.round(_loguniform(ks[0], (), cfg.min_rows, N + 1)).astype(jnp.int32)
    n_valid = jnp.clip(n_valid, cfg.min_rows, N)
    frac = jax.random.uniform(ks[1], (), minval=0.3, maxval=0.9)
    n_ctx = jnp.clip(jnp.round(frac * n_valid).astype(jnp.int32), 2, n_valid - 1)
    r = jnp.arange(N)
    row, ctx = r < n_valid, r < n_ctx
    # target: a random node with parents (any node if the DAG is empty) whose values vary
    spread = rows_NxD.std(0)
    has_par = (spread > 1e-6) & (jnp.arange(D) > 0)
    logit_t = jnp.where(has_par, 0.0, -1e9)
    target = jax.random.categorical(ks[2], logit_t)
    # classes: 2 with prob 1/2, else 3..10; proportions from a flattened Dirichlet
    n_cls = jnp.where(jax.random.uniform(ks[3], ()) < 0.5, 2,
                      jax.random.randint(ks[4], (), 3, C + 1))
    alpha = _loguniform(ks[5], (), 0.5, 10.0)
    g = jax.random.gamma(ks[6], jnp.full((C,), alpha)) * (jnp.arange(C) < n_cls)
    props = 0.85 * g / g.sum() + 0.15 * (jnp.arange(C) < n_cls) / n_cls
    cum = jnp.cumsum(props)[: C - 1]
    cum = jnp.where(jnp.arange(C - 1) < n_cls - 1, cum, 2.0)  # unused thresholds never crossed
    y = _discretize_by_rank(rows_NxD[:, target], row, cum)
    y = _random_perm_codes(ks[7], y, n_cls, C)
    y = jnp.where(row, y, 0).astype(jnp.int32)
    # features: f random non-target nodes into random slots
    f = jnp.round(_loguniform(ks[8], (), 1.0, Fp + 1)).astype(jnp.int32)
    f = jnp.clip(f, 1, min(Fp, D - 1))
    u = jax.random.uniform(ks[9], (D,)).at[target].set(2.0)
    nodes = jnp.argsort(u)[:Fp]  # target last, never among the first D-1
    used = jnp.arange(Fp) < f
    x = rows_NxD[:, nodes]  # [N, Fp]
    # categorical features: quantise at random row values, shuffle the codes
    p_cat = jnp.where(jax.random.uniform(ks[10], ()) < 0.5, 0.0,
                      jax.random.uniform(ks[11], (), maxval=0.6))
    is_cat = jax.random.uniform(ks[12], (Fp,)) < p_cat
    kc = jax.random.split(ks[13], 3)
    n_lev = jax.random.randint(kc[0], (Fp,), 2, C + 1)
    thr_rows = jax.random.randint(kc[1], (Fp, C - 1), 0, jnp.maximum(n_valid, 1))
    thr = jnp.take_along_axis(x.T, thr_rows, axis=1)  # [Fp, C-1]
    thr = jnp.where(jnp.arange(C - 1)[None] < (n_lev - 1)[:, None], thr, jnp.inf)
    codes = (x[:, :, None] > thr[None]).sum(-1)  # [N, Fp]
    codes = jnp.minimum(codes, n_lev[None] - 1)
    perm_keys = jax.random.split(kc[2], Fp)
    codes = jax.vmap(lambda kk, c, L: _random_perm_codes(kk, c, L, C), in_axes=(0, 1, 0),
                     out_axes=1)(perm_keys, codes, n_lev)
    x = jnp.where(is_cat[None], codes.astype(jnp.float32), x)
    # missing cells
    p_miss = jnp.where(jax.random.uniform(ks[14], ()) < 0.75, 0.0,
                       jax.random.uniform(ks[15], (), maxval=0.3))
    miss = jax.random.uniform(jax.random.fold_in(key, 1), (N, Fp)) < p_miss
    x = jnp.where(miss, jnp.nan, x)
    x = jnp.where(used[None] & row[:, None], x, 0.0)
    slots = jax.random.permutation(jax.random.fold_in(key, 2), F)[:Fp]
    x_NxF = jnp.zeros((N, F), jnp.float32).at[:, slots].set(x)
    feat_F = jnp.zeros((F,), bool).at[slots].set(used)
    return Batch(x_NxF, y, ctx, row, feat_F, n_cls.astype(jnp.int32))


def make_datasets(key, rows_BxNxD, cfg: PriorConfig) -> Batch:
    B = rows_BxNxD.shape[0]
    return jax.vmap(lambda kk, r: _one_dataset(kk, r, cfg))(jax.random.split(key, B), rows_BxNxD)


@functools.partial(jax.jit, static_argnames=("cfg", "batch_size"))
def sample_batch(key, cfg: PriorConfig, batch_size: int) -> Batch:
    """One batch of ``batch_size`` prior datasets (pure, jit-compiled once per config)."""
    k_scm, k_rows, k_data = jax.random.split(key, 3)
    scm = random_scms(k_scm, cfg, batch_size)
    rows = sample(scm, k_rows, cfg.n_rows)  # f32[B, N, D], the project's compiled sampler
    return make_datasets(k_data, rows, cfg)


def throughput(cfg: PriorConfig, batch_size: int = 64, repeats: int = 5, seed: int = 0) -> float:
    """Datasets per second of ``sample_batch`` after compilation."""
    key = jax.random.key(seed)
    jax.block_until_ready(sample_batch(key, cfg, batch_size))
    t0 = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(sample_batch(jax.random.fold_in(key, i + 1), cfg, batch_size))
    return repeats * batch_size / (time.perf_counter() - t0)
