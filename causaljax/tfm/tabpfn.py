"""TabPFN v2 (Hollmann et al., 2025) as pure JAX functions, plus a converter for its checkpoints.

Written from the architecture of the ``tabpfn`` package's raw v2 module
(``tabpfn.architectures.tabpfn_v2.TabPFNV2``, checked against tabpfn 9.2.0); no torch code is
imported or executed here. One table per call:

    x_ctx f32[n_ctx, F], y_ctx int32[n_ctx], x_query f32[n_q, F]  ->  logits f32[n_q, C]

equal to the first C outputs of the reference module's eval-mode ``forward(X, y)`` for
``X = [x_ctx; x_query][:, None]`` (batch 1), C = the number of classes (labels 0..C-1, every one
present in the context).

Which architecture: tabpfn 9.2.0 holds v2, v2.5, v2.6, v3 and v3.5 (its default checkpoint is
v3.5). This is v2, the "PerFeatureTransformer" of the Nature 2025 paper, whose classifier
checkpoints (``tabpfn-v2-classifier*.ckpt``, no ``architecture_name`` key) the package still
loads; it is the base the later versions build on (v2.5, for one, adds "thinking rows" and
stored column embeddings), so it is ported first; the later ones are not ported.

What the module's forward does, all of which is ported (it is inside the module, not the
scikit-learn wrapper):

1. **Feature encoding.** The features are zero-padded to a multiple of ``features_per_group``
   (P) and split into G groups of P. Per group: features constant over all rows (and padding)
   are moved behind the others and zeroed; NaN / +inf / -inf cells get indicator values
   (-2 / 2 / 4) and are imputed with the finite context mean; a standard scaler fitted on the
   context rows (ddof 1, clipped to +-100); features constant after scaling are zeroed and the
   group is scaled by sqrt(P / #non-constant). [x, indicators] (2P numbers) -> linear (no bias)
   -> an E-vector per cell, plus a per-group embedding: a linear map of ``torch.randn(G, E/4)``
   drawn from a torch CPU generator seeded with ``config.seed`` (reproduced here in numpy up
   to float32 rounding, ``torch_randn``; a constant under ``jit``).
2. **Target encoding.** The labels become one more token per row: [label, 0] for context rows,
   [#classes below the context mean label, -2] for query rows (the reference's NaN label
   imputed with the context mean, then densified), -> linear with bias.
3. **Transformer.** ``nlayers`` post-norm blocks over the [R, G + 1, E] cell tokens: attention
   between the tokens of a row (all G + 1), then attention between the rows of a column (context
   rows attend to the context rows; query rows attend to the context rows through the first
   key/value head only: multi-query attention), then a GELU MLP (width 4E); every step is
   residual + LayerNorm without affine; no biases in the blocks.
4. **Decoder.** The target token of each query row -> linear (4E) -> GELU -> linear
   (``max_num_classes`` outputs), of which the first C are returned.

NOT ported: the scikit-learn side of ``TabPFNClassifier`` (quantile / power transforms,
categorical handling, feature shuffles and subsampling, class permutations, ensembling,
softmax temperature, the fingerprint feature); regression (``num_buckets``, bar distribution);
the KV cache and memory-saving chunking (no effect on the numbers). So the logits here are the
raw module's on already-preprocessed inputs; NaN and inf are allowed (the module handles them).

Limits: the classes are capped by the decoder's width (``max_num_classes``; the package has no
many-class scheme for v2). The architecture has no limit on features or rows; ``limits`` also
applies the package's v2 pretraining limits (500 features, 10 000 context rows:
``tabpfn.inference_config`` v2 defaults, which ``TabPFNClassifier`` enforces unless
``ignore_pretraining_limits=True``, as ``apply`` does here).

One difference: a table whose only feature group is constant in every row makes the reference
fail (an empty group); here the group's cells are zeros.

Verified against tabpfn 9.2.0's module with seeded random weights: ``tests/test_tabpfn_port.py``
(small configs, features_per_group 1 and 2, seeds 0 and 42, both checkpoint key layouts, NaN /
inf / constant features; max |logit difference| <= 6e-7, also under ``jit``) and, measured
once, the default size (7.2 M parameters, 13 features / 10 classes and 50 features with NaN /
4 classes): max |difference| 1.3e-6. Gradients (``jax.grad`` of a cross-entropy, NaN inputs)
are finite.

Parameters are a nested dict of arrays (weights as ``[in, out]``); ``init`` draws random ones,
``convert_tabpfn`` reads a tabpfn checkpoint (``{"config", "state_dict"}`` as the package saves
them, or a bare state dict plus a config) without executing code. Both key layouts are read: the
single-file ``TabPFNV2`` names and the older multi-file ("base") names of the published v2
checkpoints (``transformer_encoder.layers.*``, ``encoder.*``, ``y_encoder.*``,
``decoder_dict.*``), which ``TabPFNV2.load_state_dict`` translates the same way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causaljax.tfm.torch_checkpoint import (
    check_table_shapes,
    load_checkpoint,
    nested,
    params_from_state,
    static_n_classes,
    to_numpy,
)

LN_EPS = 1e-5  # torch.nn.LayerNorm's default
NAN_IND, POS_INF_IND, NEG_INF_IND = -2.0, 2.0, 4.0  # the module's indicator values
F32_EPS = float(np.finfo(np.float32).eps)  # added to the scaler's std
CLIP = 100.0  # the module's clip after standard scaling
# the package's pretraining limits for v2 (tabpfn.inference_config, v2 defaults:
# MAX_NUMBER_OF_FEATURES / MAX_NUMBER_OF_SAMPLES), which TabPFNClassifier enforces unless
# ignore_pretraining_limits=True; the architecture itself has no such limit
PRETRAINING_MAX_FEATURES = 500
PRETRAINING_MAX_CONTEXT_ROWS = 10_000


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class TabPFNConfig:
    """The fields of ``tabpfn.architectures.tabpfn_v2.TabPFNV2Config`` (same names).

    Defaults are the package's, except ``max_num_classes``: 10 as in the v2 classifier
    checkpoint (the package's -1 means "no classification head"). ``num_buckets`` (regression)
    is accepted for checkpoint configs and ignored: this port is classification-only.
    """

    name: str = "TabPFN-v2"
    emsize: int = 192
    nlayers: int = 12
    nhead: int = 6
    features_per_group: int = 2
    seed: int = 0  # seeds the torch generator of the per-group embeddings
    max_num_classes: int = 10
    num_buckets: int = -1

    def __post_init__(self):
        if self.max_num_classes < 2:
            raise ValueError(f"max_num_classes={self.max_num_classes}: this port is "
                             "classification-only (TabPFN v2 regression is not ported)")
        if self.features_per_group not in (1, 2):
            raise ValueError(f"features_per_group={self.features_per_group}: the v2 "
                             "architecture takes 1 or 2")
        if self.emsize % self.nhead:
            raise ValueError(f"nhead={self.nhead} does not divide emsize={self.emsize}")
        if self.emsize % 4:
            raise ValueError(f"emsize={self.emsize} must be a multiple of 4 (the per-group "
                             "embeddings have emsize // 4 inputs)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TabPFNConfig:
        """Like the package's ``parse_config``: known keys are used, others ignored (a v2
        checkpoint's config holds many keys of the training setup the module never reads)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class TabPFNLimits:
    """What one call accepts. ``None``: no limit."""

    max_classes: int = 10  # the decoder's width: config.max_num_classes
    max_features: int | None = PRETRAINING_MAX_FEATURES  # package pretraining limit (v2)
    max_context_rows: int | None = PRETRAINING_MAX_CONTEXT_ROWS  # package pretraining limit
    min_context_rows: int = 1


def limits(cfg: TabPFNConfig, ignore_pretraining_limits: bool = False) -> TabPFNLimits:
    """The decoder fixes the classes; features and rows are capped at the package's
    pretraining limits unless ``ignore_pretraining_limits`` (then memory is the limit)."""
    if ignore_pretraining_limits:
        return TabPFNLimits(cfg.max_num_classes, None, None)
    return TabPFNLimits(cfg.max_num_classes)


# --------------------------------------------------------------------------------------------
# parameter layout: one table gives both ``init`` and the converter


def param_spec(cfg: TabPFNConfig):
    """Every parameter: (path in our pytree, torch state-dict key, shape here, kind)."""
    E, P, M = cfg.emsize, cfg.features_per_group, cfg.max_num_classes
    rows = [
        (("x_embed", "w"), "feature_group_embedder.weight", (2 * P, E), "linear_w"),
        (("y_embed", "w"), "target_embedder.weight", (2, E), "linear_w"),
        (("y_embed", "b"), "target_embedder.bias", (E,), "bias"),
        (("group_embed", "w"), "feature_positional_embedding_embeddings.weight", (E // 4, E),
         "linear_w"),
        (("group_embed", "b"), "feature_positional_embedding_embeddings.bias", (E,), "bias"),
    ]
    for i in range(cfg.nlayers):
        b = f"blocks.{i}"
        for ours, theirs in (("row_attn", "per_sample_attention_between_features"),
                             ("col_attn", "per_column_attention_between_cells")):
            for w in "qkv":
                rows.append((("blocks", i, ours, f"w{w}"), f"{b}.{theirs}.{w}_projection.weight",
                             (E, E), "linear_w"))
            rows.append((("blocks", i, ours, "wo"), f"{b}.{theirs}.out_projection.weight",
                         (E, E), "linear_w"))
        rows.append((("blocks", i, "mlp", "w1"), f"{b}.mlp.0.weight", (E, 4 * E), "linear_w"))
        rows.append((("blocks", i, "mlp", "w2"), f"{b}.mlp.2.weight", (4 * E, E), "linear_w"))
    rows += [
        (("decoder", "w1"), "output_projection.0.weight", (E, 4 * E), "linear_w"),
        (("decoder", "b1"), "output_projection.0.bias", (4 * E,), "bias"),
        (("decoder", "w2"), "output_projection.2.weight", (4 * E, M), "linear_w"),
        (("decoder", "b2"), "output_projection.2.bias", (M,), "bias"),
    ]
    return rows


def init(cfg: TabPFNConfig, key) -> dict:
    """Random parameters for ``cfg``: U(-1, 1) / sqrt(fan_in) weights, zero biases (unlike
    torch's zero-initialised output projections, every path is live from the start)."""
    return _init_jit(cfg, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_jit(cfg: TabPFNConfig, key) -> dict:
    spec = param_spec(cfg)
    sizes = [int(np.prod(shape)) for _, _, shape, _ in spec]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    uni = jax.random.uniform(key, (int(offsets[-1]),), jnp.float32, -1, 1)
    items = []
    for (path, _, shape, kind), lo, hi in zip(spec, offsets[:-1], offsets[1:]):
        if kind == "linear_w":
            v = uni[lo:hi].reshape(shape) / math.sqrt(shape[0])
        else:
            v = jnp.zeros(shape, jnp.float32)
        items.append((path, v))
    return nested(items)


# --------------------------------------------------------------------------------------------
# torch's CPU normal generator, for the per-group embeddings


def _mt19937_uint32(seed: int, n: int) -> np.ndarray:
    # numpy's legacy RandomState(int) seeds MT19937 as torch's CPU generator does
    # (init_genrand), and a full-range uint32 draw is one raw 32-bit output
    rs = np.random.RandomState(seed & 0xFFFFFFFF)
    return rs.randint(0, 2 ** 32, size=n, dtype=np.uint32).astype(np.uint64)


def _box_muller16(u_16):
    """torch's float32 ``normal_fill_16``: pairs (j, j + 8) of uniforms -> 16 normals."""
    r = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - u_16[:8]))
    th = np.float32(2.0 * math.pi) * u_16[8:]
    return np.concatenate([r * np.cos(th), r * np.sin(th)]).astype(np.float32)


@functools.lru_cache(maxsize=64)
def torch_randn(seed: int, rows: int, cols: int) -> np.ndarray:
    """``torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))`` (float32,
    CPU) without torch (the same values up to float32 rounding of log/sin/cos)."""
    n = rows * cols
    if n >= 16:  # vectorised path: n uniforms, 16 at a time; a ragged tail redraws 16 more
        u = _mt19937_uint32(seed, n + (16 if n % 16 else 0))
        f = (u & np.uint64((1 << 24) - 1)).astype(np.float32) * np.float32(2.0 ** -24)
        out = f[:n].copy()
        for i in range(0, n - 15, 16):
            out[i:i + 16] = _box_muller16(out[i:i + 16])
        if n % 16:
            out[n - 16:] = _box_muller16(f[n:])
    else:  # scalar path: double-precision Box-Muller, the sine half cached for the next draw
        u = _mt19937_uint32(seed, 4 * n)
        vals, k, cached = [], 0, None
        while len(vals) < n:
            if cached is not None:
                vals.append(cached)
                cached = None
                continue
            w = [((int(u[k + 2 * j]) << 32) | int(u[k + 2 * j + 1])) & ((1 << 53) - 1)
                 for j in range(2)]
            k += 4
            u1, u2 = w[0] * 2.0 ** -53, w[1] * 2.0 ** -53
            r, th = math.sqrt(-2.0 * math.log1p(-u2)), 2.0 * math.pi * u1
            cached = r * math.sin(th)
            vals.append(r * math.cos(th))
        out = np.asarray(vals, np.float64).astype(np.float32)
    out = out.reshape(rows, cols)
    out.flags.writeable = False
    return out


# --------------------------------------------------------------------------------------------
# layers


def _ln(x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + LN_EPS)


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)


def _heads(t, nhead: int):  # [..., L, E] -> [..., H, L, D]
    return jnp.swapaxes(t.reshape(*t.shape[:-1], nhead, t.shape[-1] // nhead), -3, -2)


def _merge(o):  # [..., H, L, D] -> [..., L, H * D]
    o = jnp.swapaxes(o, -3, -2)
    return o.reshape(*o.shape[:-2], -1)


def _sdpa(q, k, v):
    s = (q @ jnp.swapaxes(k, -1, -2)) / jnp.sqrt(jnp.float32(q.shape[-1]))
    return jax.nn.softmax(s, axis=-1) @ v


def _row_attention(p, h_RxCxE, nhead: int):
    """Self-attention between the tokens of each row."""
    q, k, v = (_heads(h_RxCxE @ p[w], nhead) for w in ("wq", "wk", "wv"))
    return _merge(_sdpa(q, k, v)) @ p["wo"]


def _col_attention(p, h_CxRxE, n_ctx: int, nhead: int):
    """Attention between the rows of each column: context rows attend to the context rows
    (every head); query rows attend to the context rows through key/value head 0 only."""
    q = _heads(h_CxRxE @ p["wq"], nhead)  # [C, H, R, D]
    ctx = h_CxRxE[:, :n_ctx]
    k, v = _heads(ctx @ p["wk"], nhead), _heads(ctx @ p["wv"], nhead)  # [C, H, N, D]
    out_ctx = _sdpa(q[:, :, :n_ctx], k, v)
    out_q = _sdpa(q[:, :, n_ctx:], k[:, :1], v[:, :1])  # head 0 broadcast over query heads
    return _merge(jnp.concatenate([out_ctx, out_q], axis=-2)) @ p["wo"]


def _block(cfg: TabPFNConfig, p, h_RxCxE, n_ctx: int):
    h = _ln(h_RxCxE + _row_attention(p["row_attn"], h_RxCxE, cfg.nhead))
    hc = jnp.swapaxes(h, 0, 1)  # [C, R, E]
    hc = _ln(hc + _col_attention(p["col_attn"], hc, n_ctx, cfg.nhead))
    h = jnp.swapaxes(hc, 0, 1)
    return _ln(h + _gelu(h @ p["mlp"]["w1"]) @ p["mlp"]["w2"])


# --------------------------------------------------------------------------------------------
# encoders


def _non_constant(x_RxGxP):
    """bool[G, P]: the feature differs from row 0 in some row (NaN counts as differing)."""
    return jnp.any(x_RxGxP[1:] != x_RxGxP[:1], axis=0)


def _indicators(x):
    return (jnp.where(jnp.isnan(x), NAN_IND, 0.0) + jnp.where(x == jnp.inf, POS_INF_IND, 0.0)
            + jnp.where(x == -jnp.inf, NEG_INF_IND, 0.0)).astype(jnp.float32)


def _encode_features(cfg: TabPFNConfig, p, x_RxF, n_ctx: int):
    """-> f32[R, G, E] feature tokens (with the per-group embeddings added)."""
    R, F = x_RxF.shape
    P = cfg.features_per_group
    x = jnp.pad(x_RxF, ((0, 0), (0, (-F) % P))).reshape(R, -1, P)  # [R, G, P]
    G = x.shape[1]
    # constant features (over all rows) go behind the others, zeroed (a stable partition)
    keep = _non_constant(x)  # [G, P]
    order = jnp.argsort(~keep, axis=-1, stable=True)
    x = jnp.take_along_axis(x, jnp.broadcast_to(order[None], x.shape), axis=-1)
    x = jnp.where((jnp.arange(P)[None, :] < keep.sum(-1, keepdims=True))[None], x, 0.0)
    ind = _indicators(x)
    # impute NaN / inf with the finite context mean
    finite = jnp.isfinite(x)
    fin_ctx = finite[:n_ctx]
    mean = (jnp.where(fin_ctx, x[:n_ctx], 0.0).sum(0)
            / jnp.maximum(fin_ctx.sum(0), 1).astype(jnp.float32))
    x = jnp.where(finite, x, mean[None])
    # standard scaler fitted on the context rows (ddof 1; std 0 -> 1; one row: std 1)
    mu = x[:n_ctx].mean(0)
    if n_ctx > 1:
        var = ((x[:n_ctx] - mu[None]) ** 2).sum(0) / jnp.float32(n_ctx - 1)
        std = jnp.sqrt(var)
        std = jnp.where(std == 0, 1.0, std)
    else:
        std = jnp.ones_like(mu)
    x = jnp.clip((x - mu[None]) / (std[None] + F32_EPS), -CLIP, CLIP)
    # feature-group normalisation: features constant now are zeroed, the group rescaled
    live = _non_constant(x)  # [G, P]
    n_live = jnp.maximum(live.sum(-1, keepdims=True), 1).astype(jnp.float32)
    x = jnp.where(live[None], x * jnp.sqrt(jnp.float32(P) / n_live)[None], 0.0)
    tok = jnp.concatenate([x, ind], axis=-1) @ p["x_embed"]["w"]  # [R, G, E]
    rnd = jnp.asarray(torch_randn(int(cfg.seed), G, cfg.emsize // 4))
    grp = rnd @ p["group_embed"]["w"] + p["group_embed"]["b"][None]  # [G, E]
    return tok + grp[None]


def _encode_targets(p, y_ctx, n_rows: int, n_classes: int):
    """-> f32[R, E] target tokens: [label, 0] for context rows, [#classes below the context
    mean label, -2] for query rows."""
    n_ctx = y_ctx.shape[0]
    y = y_ctx.astype(jnp.float32)
    dense_q = jnp.sum(y.mean() > jnp.arange(n_classes, dtype=jnp.float32)).astype(jnp.float32)
    lab = jnp.concatenate([y, jnp.full((n_rows - n_ctx,), dense_q)])
    ind = jnp.concatenate([jnp.zeros((n_ctx,)), jnp.full((n_rows - n_ctx,), NAN_IND)])
    inp = jnp.stack([lab, ind.astype(jnp.float32)], axis=-1)  # [R, 2]
    return inp @ p["y_embed"]["w"] + p["y_embed"]["b"][None]


# --------------------------------------------------------------------------------------------
# the model


def _check_inputs(cfg: TabPFNConfig, x_ctx, y_ctx, x_query, n_classes,
                  ignore_pretraining_limits: bool):
    x_ctx_shape, x_q_shape = check_table_shapes(x_ctx, y_ctx, x_query)
    lim = limits(cfg, ignore_pretraining_limits)
    if x_ctx_shape[1] < 1:
        raise ValueError("TabPFN needs at least 1 feature")
    if lim.max_features is not None and x_ctx_shape[1] > lim.max_features:
        raise ValueError(f"{x_ctx_shape[1]} features > TabPFN v2's pretraining limit "
                         f"max_features={lim.max_features} (ignore_pretraining_limits=True "
                         "lifts it)")
    if x_ctx_shape[0] < lim.min_context_rows:
        raise ValueError("TabPFN needs at least 1 context row")
    if x_q_shape[0] < 1:
        raise ValueError("TabPFN needs at least 1 query row")
    if lim.max_context_rows is not None and x_ctx_shape[0] > lim.max_context_rows:
        raise ValueError(f"{x_ctx_shape[0]} context rows > TabPFN v2's pretraining limit "
                         f"max_context_rows={lim.max_context_rows} "
                         "(ignore_pretraining_limits=True lifts it)")
    traced = isinstance(y_ctx, jax.core.Tracer)
    n_classes = static_n_classes(y_ctx, n_classes)
    if n_classes > lim.max_classes:
        raise ValueError(f"{n_classes} classes > the model's limit max_num_classes="
                         f"{lim.max_classes} (the decoder's width)")
    if not traced:
        y = np.asarray(y_ctx)
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y_ctx must hold integer labels; got dtype {y.dtype}")
        present = np.unique(y)
        if present.min() < 0 or present.max() >= n_classes:
            raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {present.min()}.."
                             f"{present.max()}")
        if len(present) != n_classes:
            missing = sorted(set(range(n_classes)) - set(present.tolist()))
            raise ValueError(f"labels {missing[:10]} of 0..{n_classes - 1} have no context row; "
                             "relabel the classes present to 0..C-1")
    return n_classes


def apply(cfg: TabPFNConfig, params, x_ctx, y_ctx, x_query, *, n_classes: int | None = None,
          ignore_pretraining_limits: bool = False):
    """Logits f32[n_q, C] of the query rows (C = n_classes, default max(y_ctx) + 1).

    Equals ``TabPFNV2(config=cfg)`` in eval mode: ``forward(cat([x_ctx, x_query])[:, None],
    y_ctx.float())[:, 0, :C]``. NaN / inf in x are allowed (indicator + context-mean
    imputation, as in the module). Labels must be 0..C-1 with every class present in the
    context (checked when concrete).
    """
    n_classes = _check_inputs(cfg, x_ctx, y_ctx, x_query, n_classes, ignore_pretraining_limits)
    return _apply_jit(cfg, params, jnp.asarray(x_ctx, jnp.float32), jnp.asarray(y_ctx, jnp.int32),
                      jnp.asarray(x_query, jnp.float32), n_classes)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _apply_jit(cfg, params, x_ctx, y_ctx, x_query, n_classes):
    n_ctx = x_ctx.shape[0]
    x = jnp.concatenate([x_ctx, x_query], axis=0)  # [R, F]
    feats = _encode_features(cfg, params, x, n_ctx)  # [R, G, E]
    targ = _encode_targets(params, y_ctx, x.shape[0], n_classes)  # [R, E]
    h = jnp.concatenate([feats, targ[:, None]], axis=1)  # [R, G + 1, E]
    for b in params["blocks"]:
        h = _block(cfg, b, h, n_ctx)
    d = params["decoder"]
    t = h[n_ctx:, -1]  # [n_q, E]: the target tokens of the query rows
    out = _gelu(t @ d["w1"] + d["b1"][None]) @ d["w2"] + d["b2"][None]
    return out[:, :n_classes]


@dataclass(frozen=True)
class TabPFN:
    """TabPFN v2 bound to a config: ``init(key)``, ``apply(params, x_ctx, y_ctx, x_query)``,
    ``limits``."""

    config: TabPFNConfig = TabPFNConfig()

    def init(self, key) -> dict:
        return init(self.config, key)

    def apply(self, params, x_ctx, y_ctx, x_query, *, n_classes: int | None = None,
              ignore_pretraining_limits: bool = False):
        return apply(self.config, params, x_ctx, y_ctx, x_query, n_classes=n_classes,
                     ignore_pretraining_limits=ignore_pretraining_limits)

    @property
    def limits(self) -> TabPFNLimits:
        return limits(self.config)


# --------------------------------------------------------------------------------------------
# checkpoint conversion


def _load(src) -> Any:
    return load_checkpoint(src, "TabPFN")


_BASE_PREFIXES = ("transformer_encoder.", "decoder_dict.", "encoder.", "y_encoder.")
_BASE_ATTN = {"self_attn_between_features": "per_sample_attention_between_features",
              "self_attn_between_items": "per_column_attention_between_cells"}


def _from_base_layout(state: dict) -> dict:
    """The published v2 checkpoints' ("base" architecture) keys -> the single-file names, as
    numpy arrays in torch layout. Fused ``_w_qkv`` [3, H, D, E] splits into q/k/v [H*D, E];
    ``_w_out`` [H, D, E] is the transposed out-projection; the one ``encoder.<i>.layer``
    projection is the feature embedder; unknown keys pass through (and are reported later)."""
    out: dict = {}
    enc = [k for k in state if k.startswith("encoder.") and k.endswith(".layer.weight")]
    if len(enc) > 1:
        raise ValueError(f"TabPFN base-layout state dict has several feature projections {enc}")
    for key, v in state.items():
        parts = key.split(".")
        if key in enc:
            out["feature_group_embedder.weight"] = to_numpy(key, v)
        elif parts[0] == "y_encoder" and parts[-2] == "layer" and len(parts) == 4:
            out[f"target_embedder.{parts[-1]}"] = to_numpy(key, v)
        elif parts[:2] == ["decoder_dict", "standard"] and len(parts) == 4:
            out[f"output_projection.{parts[2]}.{parts[3]}"] = to_numpy(key, v)
        elif parts[:2] == ["transformer_encoder", "layers"] and len(parts) == 6 \
                and parts[3] == "mlp" and parts[4] in ("linear1", "linear2"):
            lin = "0" if parts[4] == "linear1" else "2"
            out[f"blocks.{parts[2]}.mlp.{lin}.{parts[5]}"] = to_numpy(key, v)
        elif parts[:2] == ["transformer_encoder", "layers"] and len(parts) == 5 \
                and parts[3] in _BASE_ATTN:
            a = to_numpy(key, v)
            pre = f"blocks.{parts[2]}.{_BASE_ATTN[parts[3]]}"
            if parts[4] == "_w_qkv":
                if a.ndim != 4 or a.shape[0] != 3:
                    raise ValueError(f"TabPFN state dict key {key!r} has shape {a.shape}; "
                                     "expected [3, heads, head width, emsize]")
                for j, w in enumerate("qkv"):
                    out[f"{pre}.{w}_projection.weight"] = a[j].reshape(-1, a.shape[-1])
            elif parts[4] == "_w_out":
                if a.ndim != 3:
                    raise ValueError(f"TabPFN state dict key {key!r} has shape {a.shape}; "
                                     "expected [heads, head width, emsize]")
                out[f"{pre}.out_projection.weight"] = a.reshape(-1, a.shape[-1]).T
            else:
                out[key] = v
        else:
            out[key] = v
    return out


def read_tabpfn(path_or_state_dict, config: TabPFNConfig | dict | None = None):
    """-> (TabPFNConfig, params). The config comes from the checkpoint's ``"config"`` entry
    unless given (it must be given for a bare state dict). ``criterion.*`` entries (a
    regressor's bar distribution) are skipped, as the package does."""
    ck = _load(path_or_state_dict)
    if not isinstance(ck, dict):
        raise ValueError(  # noqa: TRY004 - a malformed file, reported like a corrupt one
            f"TabPFN checkpoint holds a {type(ck).__name__}, expected a dict")
    if "state_dict" in ck:
        arch = ck.get("architecture_name", "tabpfn_v2")
        if arch != "tabpfn_v2":
            raise ValueError(f"TabPFN checkpoint has architecture_name={arch!r}; only "
                             "'tabpfn_v2' is ported (causaljax.tfm.tabpfn)")
        state = ck["state_dict"]
        if config is None:
            if "config" not in ck:
                raise ValueError("TabPFN checkpoint has a 'state_dict' but no 'config'; pass "
                                 "config=")
            config = ck["config"]
    else:
        state = ck
        if config is None:
            raise ValueError("a bare TabPFN state dict needs config= (a TabPFNConfig or the "
                             "config dict)")
    if not isinstance(state, dict):
        raise ValueError(  # noqa: TRY004
            f"TabPFN 'state_dict' is a {type(state).__name__}, expected a dict")
    if isinstance(config, dict):
        config = TabPFNConfig.from_dict(config)
    state = {k: v for k, v in state.items() if not k.startswith("criterion.")}
    base = any(k.startswith(_BASE_PREFIXES) for k in state)
    if base:
        state = _from_base_layout(state)
    spec = param_spec(config)
    layout = " (after translating the base-architecture key names)" if base else ""
    return config, params_from_state("TabPFN", state, spec, note=layout)


def convert_tabpfn(path_or_state_dict, config: TabPFNConfig | dict | None = None) -> dict:
    """Our params pytree from a TabPFN v2 checkpoint file or state dict (see ``read_tabpfn``)."""
    return read_tabpfn(path_or_state_dict, config)[1]


__all__ = ["TabPFN", "TabPFNConfig", "TabPFNLimits", "apply", "convert_tabpfn", "init",
           "limits", "param_spec", "read_tabpfn", "torch_randn"]
