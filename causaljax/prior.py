"""Random-SCM prior: batches of synthetic classification datasets for pretraining the TFM.

Each batch is built on device in one jitted program:

1. ``random_scms`` builds B random SCMs as ONE ``causaljax.scm.types.SCM`` pytree (k = B):
   a random DAG over D nodes (edge density varies per dataset), random mechanisms mixing a
   linear map and a one-hidden-layer ReLU MLP of the parents (nonlinearity varies per
   dataset), and empirical noise pools of varied families (normal, uniform, skewed,
   heavy-tailed) with varied scales; some nodes are rounded to integers. Optionally
   (``n_trees``, off by default) random regression trees over each node's parents carry a
   share of the mechanism in a fraction ``tree_prob`` of the datasets (axis-aligned steps). By default a pool
   holds its family's quantiles at (i + 0.5) / m (``family_quantiles``), so the sampler's
   uniform draw of a pool entry is an inverse-CDF draw from the family; ``noise_pools=
   "sampled"`` draws the pool entries in the program instead (the first runs' prior).
2. ``causaljax.sampler.sample`` (the project's compiled sampler) draws N rows of each SCM.
3. ``make_datasets`` turns the node values into classification tasks: a random non-root node
   is the target, discretised into 2..10 classes at random quantiles (class proportions
   from flattened random log-normals, so imbalance varies),
   with the class labels randomly permuted; a random subset of 1..max_prior_features other
   nodes become features, scattered into random slots of the model's MAX_FEATURES slots;
   some features are discretised into 2..10 categories with shuffled codes; some cells are
   made missing (NaN); the number of real rows and the context / query split vary.
   Optionally (``warp``, off by default) some numeric features get a random monotone warp
   (skewed or heavy / light-tailed marginals).

Shapes are fixed by ``PriorConfig`` (padding + masks), so the train step compiles once.
A batch is a ``Batch`` of arrays with a leading dataset axis B (see its fields).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from causaljax.sampler import default_rng, hash_uniform, sample
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
    # uniforms: "hash" (sampler.hash_uniform: ~7x cheaper than threefry on CPUs, the default
    # there) or "key" (JAX's threefry: the default on accelerators; runs < v2)
    rng: str = field(default_factory=default_rng)
    # noise pools: "quantiles" (each pool holds its family's m quantiles) or "sampled" (m
    # random draws, computed in the program; runs before session 7)
    noise_pools: str = "quantiles"
    # random regression trees in the mechanisms (issue 22; 0 = none, the prior of every run
    # before session 20): n_trees complete trees of depth tree_depth per node, splitting on
    # the node's parents; in a fraction tree_prob of the datasets they carry a share of the
    # mechanism's variance (axis-aligned steps, as in TabICL's tree prior)
    n_trees: int = 0
    tree_depth: int = 3
    tree_prob: float = 0.5
    # feature warping (issue 22; 0 = none): in each dataset up to this fraction of the
    # numeric features get a random monotone warp of their standardized value (exp(s z):
    # skewed, or sign(z)|z|^p: heavy or light tails), as real features often are
    warp: float = 0.0


class Batch(NamedTuple):
    x: jax.Array  # f32[B, N, F]   features (NaN = missing), 0 in padding slots / rows
    y: jax.Array  # int32[B, N]    class labels 0..n_classes-1 (0 in padding rows)
    ctx: jax.Array  # bool[B, N]   context row (label visible to the model)
    row: jax.Array  # bool[B, N]   real row (False: padding)
    feat: jax.Array  # bool[B, F]  real feature slot
    n_classes: jax.Array  # int32[B]


# ----------------------------------------------------------------------------- randomness
class _Draws:
    """Slices of ONE flat uniform draw, handed out in order. One RNG call per dataset keeps
    the compiled program small (every jax.random call adds its own threefry code)."""

    def __init__(self, key, sizes: dict, rng: str = "key"):
        self.sizes = sizes
        total = sum(int(np.prod(s)) for s in sizes.values())
        if rng == "key":  # in (0, 1): safe for logs and inverse CDFs
            self.flat = jax.random.uniform(key, (total,), minval=1e-6, maxval=1.0 - 1e-6)
        else:
            self.flat = 1e-6 + (1.0 - 2e-6) * hash_uniform(key, (total,))
        self.offset = 0

    def __getitem__(self, name):
        shape = self.sizes[name]
        size = int(np.prod(shape))
        out = self.flat[self.offset:self.offset + size].reshape(shape)
        self.offset += size
        return out


def _log_between(u, lo, hi):
    """Map uniforms to a log-uniform variable on [lo, hi]."""
    return jnp.exp(jnp.log(lo) + u * (jnp.log(hi) - jnp.log(lo)))


def _normal(u):
    return jax.scipy.special.ndtri(u)


# ----------------------------------------------------------------------------- SCMs
NOISE_POOLS = ("quantiles", "sampled")
# standardised heavy-tailed noise: z / sqrt(-2 log(u) / 3 + 0.2) * 0.6 (z normal, u uniform)
_heavy = lambda z, u, sqrt, log: z / sqrt(-2.0 * log(u) / 3.0 + 0.2) * 0.6


@functools.lru_cache(maxsize=8)
def family_quantiles(m: int) -> np.ndarray:
    """f32[4, m]: the quantiles at (i + 0.5) / m of the four noise families (normal, uniform,
    exponential, heavy-tailed; all with std about 1), the pools of ``noise_pools="quantiles"``.
    Resampling such a pool draws from its family up to a 1/m quantisation, without the
    sampling error of m random draws, and costs no transcendental functions in the program
    (the sampled pools were recomputed for every cell drawn: 41% of a 1024 x 20 batch). The
    heavy-tailed family has no closed-form quantile function: quantiles of 2**21 draws."""
    p = (np.arange(m) + 0.5) / m
    rng = np.random.default_rng(0)
    heavy = _heavy(rng.standard_normal(2**21), 1.0 - rng.random(2**21), np.sqrt, np.log)
    return np.stack([scipy.special.ndtri(p), (2.0 * p - 1.0) * 1.732, -np.log1p(-p) - 1.0,
                     np.quantile(heavy, p)]).astype(np.float32)


def _noise_pool(z_mxd, u_mxd, kind_d, scale_d):
    """f32[m, d]: per-node samples of a chosen distribution (std about ``scale``)."""
    options = jnp.stack([
        z_mxd,  # normal
        (2.0 * u_mxd - 1.0) * 1.732,  # uniform
        -jnp.log(u_mxd) - 1.0,  # exponential (skewed)
        _heavy(z_mxd, u_mxd, jnp.sqrt, jnp.log),  # heavy-tailed
    ])  # [4, m, d]
    pool = jnp.take_along_axis(options, kind_d[None, None, :], axis=0)[0]
    return pool * scale_d[None, :]


def _random_trees(u_tree, u_leaf, u_thr, parents_DxD, depth: int):
    """Complete binary trees of ``depth`` splitting on random parents of their node.
    u_*: uniforms [D, T, Nn] (Nn = 2**(depth+1) - 1); parents_DxD[i, j]: i is a parent of j.
    Returns feature, threshold, left, right [D, T, Nn] and the leaf values [D, T, Nn]
    (std 1 per tree; 0 on split nodes)."""
    Nn = u_tree.shape[-1]
    n_split = 2 ** depth - 1
    nodes = jnp.arange(Nn)
    n_par = parents_DxD.sum(0)  # [D]
    is_split = jnp.broadcast_to((nodes < n_split)[None, None, :] & (n_par > 0)[:, None, None],
                                u_tree.shape)  # [D, T, Nn]; a root's trees are one leaf
    left = jnp.where(is_split, 2 * nodes + 1, nodes)
    right = jnp.where(is_split, 2 * nodes + 2, nodes)
    # the r-th parent of node j (r uniform among its n_par parents): first i with
    # #parents <= i of j greater than r
    r = jnp.floor(u_tree * n_par[:, None, None]).astype(jnp.int32)  # [D, T, Nn]
    cum = jnp.cumsum(parents_DxD, axis=0).T  # [j, i]: parents of j among 0..i
    feature = jnp.argmax(cum[:, None, None, :] > r[..., None], axis=-1).astype(jnp.int32)
    feature = jnp.where(is_split, feature, 0)
    threshold = _normal(u_thr) * 0.7
    value = jnp.where(is_split, 0.0, _normal(u_leaf))
    return feature, threshold, left.astype(jnp.int32), right.astype(jnp.int32), value


def _one_scm(key, D: int, H: int, m: int, rng: str = "key",
             noise_pools: str = "quantiles", n_trees: int = 0, tree_depth: int = 3,
             tree_prob: float = 0.0) -> dict:
    """Fields of one random SCM (no k axis); nodes are in topological order 0..D-1."""
    sampled = {"pool_z": (m, D), "pool_u": (m, D)} if noise_pools == "sampled" else {}
    Nn = 2 ** (tree_depth + 1) - 1
    trees = ({"tree_mix": (2,), "tree_feature": (D, n_trees, Nn),
              "tree_leaf": (D, n_trees, Nn), "tree_thr": (D, n_trees, Nn)} if n_trees else {})
    u = _Draws(key, {"scalars": (4,), "edges": (D, D), "w_lin": (D, D), "w1": (D, D, H),
                     "b1": (D, H), "w2": (D, H), "node": (3, D), **sampled, **trees}, rng)
    density, nonlin, sigma0, p_int = u["scalars"]
    density = _log_between(density, 0.03, 0.5)
    upper = jnp.arange(D)[:, None] < jnp.arange(D)[None, :]
    parents = upper & (u["edges"] < density)
    n_par = parents.sum(0)  # [D]
    is_root = n_par == 0
    fan_in = jnp.sqrt(jnp.maximum(n_par, 1).astype(jnp.float32))[:, None]  # [j, 1]
    # weights of node j live at [j, slot, ...]; nonlin = 0: linear SCM, 1: MLP SCM
    lin_w = (_normal(u["w_lin"]) / fan_in * jnp.sqrt(1.0 - nonlin))[..., None]
    mlp_w1 = _normal(u["w1"]) * 1.4 / fan_in[..., None]
    mlp_b1 = _normal(u["b1"]) * 0.5
    mlp_w2 = (_normal(u["w2"]) * jnp.sqrt(nonlin * 2.0 / H))[..., None]
    node = u["node"]
    # noise: roots get unit-scale pools, other nodes a dataset-wide scale times a node factor
    sigma = _log_between(sigma0, 0.02, 1.0) * _log_between(node[0], 0.5, 2.0)
    pool_kind = jnp.minimum((node[1] * 4).astype(jnp.int32), 3)
    scale = jnp.where(is_root, 1.0, sigma)
    # quantile pools as a one-hot product, not an index into the table: XLA fuses an indexed
    # pool into the sampler's gather and recomputes it for every cell drawn (19 ms a batch)
    noise = (_noise_pool(_normal(u["pool_z"]), u["pool_u"], pool_kind, scale).T if sampled
             else jnp.dot(jax.nn.one_hot(pool_kind, 4) * scale[:, None],
                          family_quantiles(m)))  # [D, m]
    is_integer = node[2] < 0.1 * p_int

    def relax(j, lvl):  # longest path: level[j] = max over parents i of level[i] + 1
        return lvl.at[j].set(jnp.max(jnp.where(parents[:, j], lvl + 1, 0)))

    level = jax.lax.fori_loop(0, D, relax, jnp.zeros(D, jnp.int32))
    if n_trees:  # a tree dataset moves a share a of each node's variance to its trees
        mix = u["tree_mix"]
        share = jnp.where(mix[0] < tree_prob, 0.3 + 0.7 * mix[1], 0.0)
        lin_w, mlp_w2 = lin_w * jnp.sqrt(1.0 - share), mlp_w2 * jnp.sqrt(1.0 - share)
        feature, threshold, left, right, value = _random_trees(
            u["tree_feature"], u["tree_leaf"], u["tree_thr"], parents, tree_depth)
        value = (value * jnp.sqrt(share / n_trees))[..., None]
    else:
        feature, left, right = (jnp.zeros((D, 0, 1), jnp.int32),) * 3
        threshold, value = jnp.zeros((D, 0, 1)), jnp.zeros((D, 0, 1, 1))
    return dict(  # noqa: C408 - keyword names are the SCM fields
                parents=parents, order=jnp.arange(D, dtype=jnp.int32), depth=level.max(),
                kind=jnp.where(is_root, ROOT, NUMERIC).astype(jnp.int32),
                n_levels=jnp.zeros(D, jnp.int32), is_integer=is_integer, noise=noise,
                slot_column=jnp.arange(D, dtype=jnp.int32),
                slot_level=jnp.full((D,), -1, jnp.int32),
                lin_w=lin_w, lin_b=jnp.zeros((D, 1)), quad_w=jnp.zeros((D, 0, 0, 1)),
                cube_idx=jnp.zeros((D, 0, 3), jnp.int32), cube_w=jnp.zeros((D, 0, 1)),
                mlp_w1=mlp_w1, mlp_b1=mlp_b1, mlp_w2=mlp_w2,
                tree_feature=feature, tree_threshold=threshold, tree_left=left,
                tree_right=right, tree_value=value)


def random_scms(key, cfg: PriorConfig, k: int) -> SCM:
    """k random SCMs stacked in one pytree (all nodes numeric; roots draw from their pool)."""
    if cfg.noise_pools not in NOISE_POOLS:
        raise ValueError(f"noise_pools must be one of {NOISE_POOLS}, got {cfg.noise_pools!r}")
    fields = jax.vmap(lambda kk: _one_scm(kk, cfg.n_nodes, cfg.hidden, cfg.pool, cfg.rng,
                                          cfg.noise_pools, cfg.n_trees, cfg.tree_depth,
                                          cfg.tree_prob))(jax.random.split(key, k))
    return SCM(**fields, tree_depth=cfg.tree_depth if cfg.n_trees else 0)


# ----------------------------------------------------------------------------- datasets
def _permuted_codes(u_L, codes, n_levels):
    """Relabel integer codes 0..n_levels-1 by the random permutation that ranks u_L."""
    v = jnp.where(jnp.arange(u_L.shape[0]) < n_levels, u_L, 2.0)
    new_code = (v[None, :] < v[:, None]).sum(-1)  # rank of level l among the valid levels
    return new_code[codes]


def _discretize_by_rank(values_N, valid_N, cum_props):
    """Class index of each row from its rank among valid rows and cumulative proportions."""
    n_valid = jnp.maximum(valid_N.sum(), 1)
    v = jnp.where(valid_N, values_N, jnp.inf)
    order = jnp.argsort(v)  # one sort; its inverse permutation is the rank (argsort twice)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
    q = (rank.astype(jnp.float32) + 0.5) / n_valid
    return (q[:, None] >= cum_props[None, :]).sum(-1)


def _warp(x_NxF, row_N, u_4xF, p_warp):
    """A random monotone warp of a fraction ``p_warp`` of the columns: the column standardized
    over the real rows (z), then exp(s z) with s in [0.3, 1.5] (skewed; mirrored for half of
    them) or sign(z) |z|^p with p in [0.5, 2.5] (light or heavy tails)."""
    w = row_N[:, None].astype(x_NxF.dtype)
    n = jnp.maximum(w.sum(), 1.0)
    mean = (x_NxF * w).sum(0, keepdims=True) / n
    std = jnp.sqrt((((x_NxF - mean) ** 2) * w).sum(0, keepdims=True) / n) + 1e-6
    z = (x_NxF - mean) / std
    on, kind, strength, flip = u_4xF
    skew = jnp.exp(jnp.clip((0.3 + 1.2 * strength[None]) * z, -12.0, 12.0))
    skew = jnp.where(flip[None] < 0.5, skew, -skew)
    tails = jnp.sign(z) * jnp.abs(z) ** _log_between(strength, 0.5, 2.5)[None]
    warped = jnp.where(kind[None] < 0.5, skew, tails)
    return jnp.where(on[None] < p_warp, warped, x_NxF)


def _one_dataset(key, rows_NxD, cfg: PriorConfig):
    N, D = rows_NxD.shape
    F, Fp, C = cfg.max_features, cfg.max_prior_features, cfg.max_classes
    warps = {"warp": (4, Fp)} if cfg.warp else {}
    u = _Draws(key, {"s": (12,), "target": (D,), "order": (D,), "props": (C,), "labels": (C,),
                     "is_cat": (Fp,), "n_lev": (Fp,), "thr": (Fp, C - 1), "codes": (Fp, C),
                     "slots": (F,), "miss": (N, Fp), **warps}, cfg.rng)
    s = u["s"]
    rows_NxD = jnp.nan_to_num(jnp.clip(rows_NxD, -1e4, 1e4))
    # real rows and the context / query split
    n_valid = jnp.round(_log_between(s[0], cfg.min_rows, N + 1)).astype(jnp.int32)
    n_valid = jnp.clip(n_valid, cfg.min_rows, N)
    n_ctx = jnp.round((0.3 + 0.6 * s[1]) * n_valid).astype(jnp.int32)
    n_ctx = jnp.clip(n_ctx, 2, n_valid - 1)
    r = jnp.arange(N)
    row, ctx = r < n_valid, r < n_ctx
    # target: a random node with parents whose values vary (node 0 is always a root)
    varies = (rows_NxD.std(0) > 1e-6) & (jnp.arange(D) > 0)
    target = jnp.argmax(jnp.where(varies, u["target"], 0.0))
    # classes: 2 with prob 1/2, else 3..10; proportions from flattened random log-normals
    n_cls = jnp.where(s[2] < 0.5, 2, 3 + jnp.minimum((s[3] * (C - 2)).astype(jnp.int32), C - 3))
    in_cls = jnp.arange(C) < n_cls
    g = jnp.exp(_normal(u["props"]) * 1.5 * s[4]) * in_cls
    props = 0.85 * g / g.sum() + 0.15 * in_cls / n_cls
    cum = jnp.cumsum(props)[: C - 1]
    cum = jnp.where(jnp.arange(C - 1) < n_cls - 1, cum, 2.0)  # unused thresholds never crossed
    y = _discretize_by_rank(rows_NxD[:, target], row, cum)
    y = jnp.where(row, _permuted_codes(u["labels"], y, n_cls), 0).astype(jnp.int32)
    # features: f random non-target nodes
    f = jnp.clip(jnp.round(_log_between(s[5], 1.0, Fp + 1)).astype(jnp.int32), 1, min(Fp, D - 1))
    nodes = jnp.argsort(u["order"].at[target].set(2.0))[:Fp]  # the target sorts last
    used = jnp.arange(Fp) < f
    x = rows_NxD[:, nodes]  # [N, Fp]
    if cfg.warp:
        x = _warp(x, row, u["warp"], cfg.warp * s[10])
    # categorical features: quantise at the values of random rows, shuffle the codes
    p_cat = jnp.where(s[6] < 0.5, 0.0, 0.6 * s[7])
    is_cat = u["is_cat"] < p_cat
    n_lev = 2 + jnp.minimum((u["n_lev"] * (C - 1)).astype(jnp.int32), C - 2)  # 2..C
    thr_rows = jnp.minimum((u["thr"] * n_valid).astype(jnp.int32), n_valid - 1)
    thr = jnp.take_along_axis(x.T, thr_rows, axis=1)  # [Fp, C-1]
    thr = jnp.where(jnp.arange(C - 1)[None] < (n_lev - 1)[:, None], thr, jnp.inf)
    codes = jnp.minimum((x[:, :, None] > thr[None]).sum(-1), n_lev[None] - 1)  # [N, Fp]
    codes = jax.vmap(_permuted_codes, in_axes=(0, 1, 0), out_axes=1)(u["codes"], codes, n_lev)
    x = jnp.where(is_cat[None], codes.astype(jnp.float32), x)
    # missing cells (in a quarter of the datasets, up to 30 % of the cells)
    p_miss = jnp.where(s[8] < 0.75, 0.0, 0.3 * s[9])
    x = jnp.where(u["miss"] < p_miss, jnp.nan, x)
    x = jnp.where(used[None] & row[:, None], x, 0.0)
    # scatter the Fp feature columns into random slots of the F model slots
    slots = jnp.argsort(u["slots"])[:Fp]
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
    # f32[B, N, D] from the project's compiled sampler; the walk is the fastest for MLP SCMs
    rows = sample(scm, k_rows, cfg.n_rows, strategy="walk", rng=cfg.rng, levels=(0,) * cfg.n_nodes)
    return make_datasets(k_data, rows, cfg)


def throughput(cfg: PriorConfig, batch_size: int = 64, repeats: int = 5, seed: int = 0) -> dict:
    """Datasets per second of ``sample_batch`` after compilation: per wall-clock second and per
    CPU second of this process (the second is robust to a machine shared with other jobs)."""
    key = jax.random.key(seed)
    for _ in range(3):  # compile, then let the allocator settle (the first calls run slower)
        jax.block_until_ready(sample_batch(key, cfg, batch_size))
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(repeats):
        jax.block_until_ready(sample_batch(jax.random.fold_in(key, i + 1), cfg, batch_size))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"datasets_per_s": repeats * batch_size / wall,
            "datasets_per_cpu_s": repeats * batch_size / max(cpu, 1e-9)}
