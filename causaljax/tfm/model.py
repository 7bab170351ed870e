"""A row-token in-context classifier (TabPFN-v1 style), in Flax linen.

One token per table row. A context token is ``embed(x) + embed(label)``; a query token is
``embed(x)`` alone. Every layer lets ALL tokens attend to the CONTEXT tokens only (keys and
values come from context rows), so a query never influences another query, and context rows
never see queries. The head turns each token into logits over ``MAX_CLASSES`` classes.

Shapes (B datasets, N rows, F = MAX_FEATURES feature slots, W width):

    x_BxNxF     f32   features, zero-padded to F slots; NaN marks a missing value
    y_BxN       int   labels 0..9 of context rows (anything for other rows)
    ctx_BxN     bool  row is a context row (its label is visible)
    row_BxN     bool  row is a real row (False: padding, ignored everywhere)
    feat_BxF    bool  feature slot holds a real feature
    logits      f32[B, N, MAX_CLASSES]  (meaningful for non-context rows)

Preprocessing inside the model (``standardize``): every feature is standardized with the
mean / std of the CONTEXT rows of its dataset (missing cells excluded), clipped to
[-CLIP, CLIP], missing cells become 0 and a missing indicator is appended, and the
features are rescaled by sqrt(F / n_features) so the embedding's scale does not depend on how
many slots are used. Padding slots are 0 with a 0 indicator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

MAX_FEATURES = 100
MAX_CLASSES = 10
CLIP = 10.0


@dataclass(frozen=True)
class ModelConfig:
    width: int = 160
    depth: int = 6
    heads: int = 4
    mlp_ratio: int = 2
    max_features: int = MAX_FEATURES
    max_classes: int = MAX_CLASSES

    def to_dict(self) -> dict:
        return asdict(self)


def standardize(x_BxNxF, ctx_BxN, row_BxN, feat_BxF):
    """Context-statistics standardization + missing indicator: f32[B, N, 2F]."""
    missing = jnp.isnan(x_BxNxF)
    x = jnp.where(missing, 0.0, x_BxNxF)
    w = (ctx_BxN & row_BxN)[..., None] & ~missing  # cells that count in the statistics
    wf = w.astype(x.dtype)
    cnt = jnp.maximum(wf.sum(1, keepdims=True), 1.0)
    mean = (x * wf).sum(1, keepdims=True) / cnt
    var = (((x - mean) * wf) ** 2).sum(1, keepdims=True) / cnt
    z = (x - mean) / jnp.sqrt(var + 1e-6)
    z = jnp.clip(z, -CLIP, CLIP)
    keep = feat_BxF[:, None, :] & row_BxN[..., None]
    z = jnp.where(keep & ~missing, z, 0.0)
    ind = (keep & missing).astype(x.dtype)
    n_feat = jnp.maximum(feat_BxF.sum(-1), 1).astype(x.dtype)  # [B]
    scale = jnp.sqrt(x.shape[-1] / n_feat)[:, None, None]
    return jnp.concatenate([z * scale, ind], axis=-1)


class Block(nn.Module):
    width: int
    heads: int
    mlp_ratio: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxNxW, key_mask_BxN):
        a = nn.LayerNorm(dtype=self.dtype)(h_BxNxW)
        mask = key_mask_BxN[:, None, None, :]  # [B, 1, queries(broadcast), keys]
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, dtype=self.dtype, deterministic=True)(a, a, mask=mask)
        h = h_BxNxW + a
        m = nn.LayerNorm(dtype=self.dtype)(h)
        m = nn.Dense(self.width * self.mlp_ratio, dtype=self.dtype)(m)
        m = nn.Dense(self.width, dtype=self.dtype)(nn.gelu(m))
        return h + m


class InContextClassifier(nn.Module):
    """Row-token in-context classifier; see the module docstring for shapes."""

    cfg: ModelConfig
    dtype: jnp.dtype = jnp.float32  # compute dtype (bf16 on GPU); parameters stay f32

    @nn.compact
    def __call__(self, x_BxNxF, y_BxN, ctx_BxN, row_BxN, feat_BxF):
        cfg = self.cfg
        inp = standardize(x_BxNxF.astype(jnp.float32), ctx_BxN, row_BxN, feat_BxF)
        h = nn.Dense(cfg.width, dtype=self.dtype, name="embed_x")(inp)
        y = jnp.clip(y_BxN, 0, cfg.max_classes - 1)
        y_emb = nn.Embed(cfg.max_classes, cfg.width, name="embed_y")(y)
        h = h + jnp.where(ctx_BxN[..., None], y_emb, 0.0).astype(h.dtype)
        keys = ctx_BxN & row_BxN
        for i in range(cfg.depth):
            h = Block(cfg.width, cfg.heads, cfg.mlp_ratio, self.dtype, name=f"block{i}")(h, keys)
        h = nn.LayerNorm(dtype=self.dtype)(h)
        h = nn.gelu(nn.Dense(cfg.width, dtype=self.dtype, name="head_hidden")(h))
        logits = nn.Dense(cfg.max_classes, dtype=self.dtype, name="head_out")(h)
        return logits.astype(jnp.float32)


def build(cfg: ModelConfig, dtype=jnp.float32) -> InContextClassifier:
    return InContextClassifier(cfg, dtype=dtype)


def init_params(cfg: ModelConfig, key, n_rows: int = 8):
    """Fresh parameters (a pytree of f32 arrays)."""
    F = cfg.max_features
    x = jnp.zeros((1, n_rows, F), jnp.float32)
    y = jnp.zeros((1, n_rows), jnp.int32)
    ctx = jnp.arange(n_rows)[None] < n_rows // 2
    row = jnp.ones((1, n_rows), bool)
    feat = jnp.ones((1, F), bool)
    return build(cfg).init(key, x, y, ctx, row, feat)["params"]


def n_params(params) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))


def class_mask_logits(logits_BxNxC, n_classes_B):
    """Logits with classes >= n_classes set to a large negative value."""
    valid = jnp.arange(logits_BxNxC.shape[-1])[None, None, :] < n_classes_B[:, None, None]
    return jnp.where(valid, logits_BxNxC, -1e9)


def predict_logits(params, cfg: ModelConfig, x_ctx_NxF, y_ctx_N, x_q_MxF, n_features: int,
                   dtype=jnp.float32):
    """One dataset: context rows + query rows (features in the first ``n_features`` slots of
    ``cfg.max_features``, already padded) -> logits f32[M, MAX_CLASSES]. Queries are appended
    after the context; no padding rows."""
    n, m = x_ctx_NxF.shape[0], x_q_MxF.shape[0]
    x = jnp.concatenate([x_ctx_NxF, x_q_MxF], 0)[None]
    y = jnp.concatenate([y_ctx_N.astype(jnp.int32), jnp.zeros((m,), jnp.int32)])[None]
    ctx = (jnp.arange(n + m) < n)[None]
    row = jnp.ones((1, n + m), bool)
    feat = (jnp.arange(cfg.max_features) < n_features)[None]
    logits = build(cfg, dtype).apply({"params": params}, x, y, ctx, row, feat)
    return logits[0, n:]
