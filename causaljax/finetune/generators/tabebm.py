"""TabEBM baseline in JAX, with our TFM as the energy model.

For every class c the TFM gets a binary in-context task: the class-c training rows (label 1)
against 4 surrogate "negative" corner points at +-``corner`` (label 0), all in standardized
feature space. The energy of a point is E_c(x) = -logsumexp(logits_0, logits_1). Samples
start at randomly chosen class-c rows and follow SGLD,
    x <- x - step_size * grad E_c(x) + noise * N(0, I),
for ``steps`` steps; they are mapped back to raw units and labelled c. Classes get pool rows
in proportion to their frequency. All classes run as ONE batched model call (B = classes,
padded rows masked), so the sampler compiles once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from causaljax.finetune.generators import register
from causaljax.finetune.generators.common import class_counts, valid_rows
from causaljax.finetune.sources import PoolSource
from causaljax.tfm.model import ModelConfig, build


def corners(p: int, value: float) -> np.ndarray:
    """4 corner points f32[4, p]: +v, -v, and the two alternating-sign corners."""
    alt = np.where(np.arange(p) % 2 == 0, 1.0, -1.0)
    return (value * np.stack([np.ones(p), -np.ones(p), alt, -alt])).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("mc", "steps"))
def sgld(params, x_ctx_BxNxF, y_ctx_BxN, row_ctx_BxN, x0_BxMxF, feat_F, key, *, mc, steps: int,
         step_size: float, noise: float):
    """SGLD of the query points x0 under each dataset's energy; -> f32[B, M, F]."""
    B, N, F = x_ctx_BxNxF.shape
    M = x0_BxMxF.shape[1]
    model = build(mc)
    y = jnp.concatenate([y_ctx_BxN, jnp.zeros((B, M), jnp.int32)], 1)
    ctx = jnp.concatenate([jnp.ones((B, N), bool), jnp.zeros((B, M), bool)], 1)
    row = jnp.concatenate([row_ctx_BxN, jnp.ones((B, M), bool)], 1)
    feat = jnp.broadcast_to(feat_F, (B, F))
    live = feat_F.astype(jnp.float32)[None, None, :]  # only real feature slots move

    def energy(xq_BxMxF):
        x = jnp.concatenate([x_ctx_BxNxF, xq_BxMxF], 1)
        logits = model.apply({"params": params}, x, y, ctx, row, feat)[:, N:, :2]
        return -jax.nn.logsumexp(logits, axis=-1).sum()

    def step(i, x):
        g = jax.grad(energy)(x)
        eps = jax.random.normal(jax.random.fold_in(key, i), x.shape)
        return x + live * (-step_size * g + noise * eps)

    return jax.lax.fori_loop(0, steps, step, x0_BxMxF)


def sample_tabebm(train, n_rows: int, tfm, key, *, steps: int = 200, step_size: float = 0.1,
                  noise: float = 0.01, corner: float = 5.0) -> np.ndarray:
    """f32[n_rows, d] synthetic rows (Table encoded, labels included)."""
    mc, F = tfm.mc, tfm.mc.max_features
    X, y = train.X.astype(np.float64), train.y
    p, K = X.shape[1], int(train.n_levels[train.target_index])
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = (X - mu) / sd
    counts = class_counts(y, n_rows, K)
    classes = [c for c in range(K) if counts[c] > 0]
    n_ctx = max((y == c).sum() for c in classes) + 4
    M = int(max(counts[c] for c in classes))
    B = len(classes)
    x_ctx = np.zeros((B, n_ctx, F), np.float32)
    y_ctx = np.zeros((B, n_ctx), np.int32)
    row_ctx = np.zeros((B, n_ctx), bool)
    x0 = np.zeros((B, M, F), np.float32)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    for b, c in enumerate(classes):
        zc = Z[y == c]
        pts = np.concatenate([zc, corners(p, corner)])
        x_ctx[b, : len(pts), :p] = pts
        y_ctx[b, : len(zc)] = 1
        row_ctx[b, : len(pts)] = True
        x0[b, :, :p] = zc[rng.integers(0, len(zc), M)]
    out = sgld(tfm.params, jnp.asarray(x_ctx), jnp.asarray(y_ctx), jnp.asarray(row_ctx),
               jnp.asarray(x0), jnp.arange(F) < p, key, mc=mc, steps=int(steps),
               step_size=float(step_size), noise=float(noise))
    out = np.asarray(out, np.float64)
    rows = []
    for b, c in enumerate(classes):
        feats = out[b, : counts[c], :p] * sd + mu
        r = np.zeros((counts[c], train.n_cols))
        r[:, train.feature_indices] = feats
        r[:, train.target_index] = c
        rows.append(r)
    return valid_rows(train, np.concatenate(rows))


@register("tabebm")
def make_source(train, *, key, n_rows: int, tfm=None, **options) -> PoolSource:
    if tfm is None:
        raise ValueError("the tabebm generator needs the pretrained TFM (tfm=TFM(params, mc))")
    if not isinstance(tfm.mc, ModelConfig):
        raise ValueError(f"the tabebm generator runs on the row-token model only (its per-class "
                         f"contexts are padded rows, which {tfm.mc.kind} does not mask); use "
                         "--model row-token for the tabebm arm")
    return PoolSource(sample_tabebm(train, max(int(n_rows), 1), tfm, key, **options))
