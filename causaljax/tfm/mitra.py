"""Mitra (AutoGluon, 2025) as pure JAX functions, plus a converter for its checkpoints.

Mitra is the model the CausalMixFT paper fine-tunes. Written from the architecture of its
reference module, AutoGluon's ``Tab2D`` (``autogluon.tabular.models.mitra._internal.models.
tab2d``, checked against autogluon.tabular 1.6.3); no torch code is imported or executed here.
One table per call:

    x_ctx f32[n_ctx, F], y_ctx int32[n_ctx], x_query f32[n_q, F]  ->  logits f32[n_q, C]

equal to the first C outputs of the reference module's eval-mode ``forward(x_support,
y_support, x_query, padding_features, padding_obs_support, padding_obs_query)`` for one table
(batch 1, no padding), in float32.

What the module's forward does, all of which is ported:

1. **Quantile embedding of x** (no parameters). Per feature: the 999 quantiles (1/1000 ..
   999/1000, torch.quantile's linear interpolation) of the context rows; every cell (context
   and query) becomes its bucket index among them (``torch.bucketize``, right=False) divided by
   n_ctx, then centred and scaled by the context rows' mean and (population) standard deviation;
   a feature constant over the context rows becomes 0 everywhere.
2. **Cell tokens.** Each cell -> linear(1 -> dim); the label becomes one more token per row, in
   front of the features: an embedding of the class for context rows, a learned "mask" vector
   for query rows: [R, F + 1, dim] tokens.
3. **Layers** (pre-norm, LayerNorms with affine, GELU MLPs of width 4 dim, attention with
   biases): attention across the rows of each token column (context rows attend to the context
   rows; query rows attend to the context rows), MLP, attention across the F + 1 tokens of each
   row, MLP; every step residual.
4. **Head.** LayerNorm (affine) + linear (``dim_output`` outputs) on each query row's label
   token; the first C are returned.

NOT ported: the scikit-learn side (AutoGluon's ``Preprocessor``: imputation, feature
selection, power / quantile transforms, class relabelling; the ensemble of feature / class
shuffles; its own fine-tuning recipe), regression (``task = REGRESSION``) and the padding
masks of a batch of tables of different sizes (one table per call here: no padding). The
reference's GPU path (flash attention over unpadded tokens) computes the same function.

Limits: classes <= ``dim_output`` (the head's width; 10 in the published classifier); features
and context rows capped at AutoGluon's limits for Mitra (500 features, 10 000 rows:
``MitraModel``'s ``max_features`` / ``max_rows``) unless ``ignore_pretraining_limits=True``.
Labels need not all be present in the context (the label embedding takes any class < dim_output).
NaN / inf are rejected (the module has no missing-value handling: impute first).

Verified against autogluon.tabular 1.6.3's ``Tab2D`` with seeded random weights:
``tests/test_mitra_port.py`` (small configs; ties, constant features, the class limit, more
context rows than quantiles; also under ``jit``: max |logit difference| <= 6e-7) and, measured
once, the published size (75.7 M parameters; 64 x 10 features x 10 classes and 200 x 4 x 3):
1.1e-6. Gradients flow (tests/test_batch_model.py: Adam steps lower the loss).

Parameters are a nested dict of arrays (weights as ``[in, out]``); ``init`` draws random ones,
``read_mitra`` reads a checkpoint without executing code: a directory holding ``config.json``
and ``model.safetensors`` (``Tab2D.save_pretrained``; the published ``autogluon/mitra-
classifier`` repository), a ``.safetensors`` file (config.json beside it, or ``config=``), a
torch state-dict file (``torch.load(weights_only=True)``) or an in-memory state dict plus
``config=``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from causaljax.tfm.torch_checkpoint import (
    check_table_shapes,
    load_checkpoint,
    nested,
    params_from_state,
    static_n_classes,
)

LN_EPS = 1e-5  # torch.nn.LayerNorm's default
N_QUANTILES = 999  # torch.arange(1, 1000) / 1000
# AutoGluon's limits for Mitra (MitraModel._default_auxiliary_params_extra); the architecture
# itself has no limit on features or rows
PRETRAINING_MAX_FEATURES = 500
PRETRAINING_MAX_CONTEXT_ROWS = 10_000
PUBLISHED = ("https://huggingface.co/autogluon/mitra-classifier (config.json and "
             "model.safetensors; pass the folder holding both)")


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class MitraConfig:
    """The fields of ``Tab2D``'s ``config.json`` (same names); defaults are the published
    classifier's (AutoGluon's DEFAULT_DIM / LAYERS / HEADS / CLASSES)."""

    dim: int = 512
    dim_output: int = 10
    n_layers: int = 12
    n_heads: int = 4
    task: str = "CLASSIFICATION"

    def __post_init__(self):
        if "CLASSIFICATION" not in str(self.task).upper():
            raise ValueError(f"task={self.task!r}: this port is classification-only (Mitra "
                             "regression is not ported)")
        if self.dim_output < 2:
            raise ValueError(f"dim_output={self.dim_output}: a classifier needs >= 2 outputs")
        if self.dim % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} does not divide dim={self.dim}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MitraConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class MitraLimits:
    """What one call accepts. ``None``: no limit."""

    max_classes: int = 10  # the head's width: config.dim_output
    max_features: int | None = PRETRAINING_MAX_FEATURES
    max_context_rows: int | None = PRETRAINING_MAX_CONTEXT_ROWS
    min_context_rows: int = 1


def limits(cfg: MitraConfig, ignore_pretraining_limits: bool = False) -> MitraLimits:
    if ignore_pretraining_limits:
        return MitraLimits(cfg.dim_output, None, None)
    return MitraLimits(cfg.dim_output)


# --------------------------------------------------------------------------------------------
# parameter layout: one table gives both ``init`` and the converter


def _linear(path, key, d_in, d_out):
    return [((*path, "w"), f"{key}.weight", (d_in, d_out), "linear_w"),
            ((*path, "b"), f"{key}.bias", (d_out,), "bias")]


def _layer_norm(path, key, d):
    return [((*path, "scale"), f"{key}.weight", (d,), "ln_scale"),
            ((*path, "bias"), f"{key}.bias", (d,), "bias")]


def param_spec(cfg: MitraConfig):
    """Every parameter: (path in our pytree, torch state-dict key, shape here, kind)."""
    d, C = cfg.dim, cfg.dim_output
    rows = _linear(("x_embed",), "x_embedding.x_embedding", 1, d)
    rows += [(("y_embed", "classes"), "y_embedding.y_embedding.weight", (C, d), "embedding"),
             (("y_embed", "mask"), "y_embedding.y_mask.weight", (1, d), "embedding")]
    for i in range(cfg.n_layers):
        key = f"layers.{i}"
        for j in (1, 2, 3, 4):
            rows += _layer_norm(("layers", i, f"ln{j}"), f"{key}.layer_norm{j}", d)
        for j in (1, 2):
            for w in "qkvo":
                rows += _linear(("layers", i, f"attn{j}", w), f"{key}.attention{j}.{w}", d, d)
        rows += _linear(("layers", i, "mlp1", "up"), f"{key}.linear1", d, 4 * d)
        rows += _linear(("layers", i, "mlp1", "down"), f"{key}.linear2", 4 * d, d)
        rows += _linear(("layers", i, "mlp2", "up"), f"{key}.linear3", d, 4 * d)
        rows += _linear(("layers", i, "mlp2", "down"), f"{key}.linear4", 4 * d, d)
    rows += _layer_norm(("final_ln",), "final_layer_norm", d)
    rows += _linear(("head",), "final_layer", d, C)
    return rows


def init(cfg: MitraConfig, key) -> dict:
    """Random parameters for ``cfg``: U(-1, 1) / sqrt(fan_in) weights, N(0, 1) embeddings
    (as ``Tab2D.init_weights``), unit LayerNorm scales, zero biases."""
    return _init_jit(cfg, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_jit(cfg: MitraConfig, key) -> dict:
    spec, items = param_spec(cfg), []
    for (path, _, shape, kind), k in zip(spec, jax.random.split(key, len(spec))):
        if kind == "linear_w":
            v = jax.random.uniform(k, shape, jnp.float32, -1, 1) / math.sqrt(shape[0])
        elif kind == "embedding":
            v = jax.random.normal(k, shape, jnp.float32)
        elif kind == "ln_scale":
            v = jnp.ones(shape, jnp.float32)
        else:
            v = jnp.zeros(shape, jnp.float32)
        items.append((path, v))
    return nested(items)


# --------------------------------------------------------------------------------------------
# the quantile embedding of x


def _quantile_grid(n_ctx: int):
    """The reference's interpolation constants for n_ctx sorted values, computed as torch does
    in float32 (numpy, at trace time): indices below / above and the weights."""
    q = np.arange(1, N_QUANTILES + 1, dtype=np.float32) / np.float32(1000)
    ranks = q * np.float32(n_ctx - 1)
    below = ranks.astype(np.int64)
    above = np.ceil(ranks).astype(np.int64)
    return below, above, (ranks - below.astype(np.float32)).astype(np.float32)


def _lerp(a, b, w):
    """torch.lerp's float formula (exact at w = 0 and w = 1)."""
    return jnp.where(w < 0.5, a + w * (b - a), b - (b - a) * (1 - w))


def quantile_embed(x_ctx_NxF, x_q_MxF):
    """-> (f32[N, F], f32[M, F]): the reference's ``Tab2DQuantileEmbeddingX`` on one table."""
    n = x_ctx_NxF.shape[0]
    below, above, w = _quantile_grid(n)
    s = jnp.sort(x_ctx_NxF, axis=0)  # [N, F]
    edges = _lerp(s[below], s[above], jnp.asarray(w)[:, None])  # [999, F]

    def bucket(edges_Q, col_R):  # torch.bucketize(right=False) = searchsorted side='left'
        return jnp.searchsorted(edges_Q, col_R, side="left")

    buckets = jax.vmap(bucket, in_axes=(1, 1), out_axes=1)
    nf = jnp.float32(n)
    b_ctx = buckets(edges, x_ctx_NxF).astype(jnp.float32) / nf
    b_q = buckets(edges, x_q_MxF).astype(jnp.float32) / nf
    mean = b_ctx.sum(0, keepdims=True) / nf
    b_ctx, b_q = b_ctx - mean, b_q - mean
    var = (b_ctx ** 2).sum(0, keepdims=True) / nf
    std = jnp.sqrt(jnp.where(var == 0, 1.0, var))
    return (jnp.where(var == 0, 0.0, b_ctx / std), jnp.where(var == 0, 0.0, b_q / std))


# --------------------------------------------------------------------------------------------
# layers


def _bc(v, x):
    """A [d] vector shaped to broadcast against x [..., d] (explicit: no rank promotion)."""
    return v.reshape((1,) * (x.ndim - 1) + v.shape)


def _ln(p, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + LN_EPS) * _bc(p["scale"], x) + _bc(p["bias"], x)


def _dense(p, x):
    y = x @ p["w"]
    return y + _bc(p["b"], y)


def _mlp(p, x):
    return _dense(p["down"], jax.nn.gelu(_dense(p["up"], x), approximate=False))


def _attention(p, q_in, kv_in, n_heads: int):
    """Multi-head attention with biases: q_in [..., Lq, d] attends to kv_in [..., Lk, d]."""
    def heads(t):  # [..., L, d] -> [..., H, L, D]
        return jnp.swapaxes(t.reshape(*t.shape[:-1], n_heads, -1), -3, -2)

    q, k, v = heads(_dense(p["q"], q_in)), heads(_dense(p["k"], kv_in)), heads(_dense(p["v"], kv_in))
    s = (q @ jnp.swapaxes(k, -1, -2)) / jnp.sqrt(jnp.float32(q.shape[-1]))
    o = jax.nn.softmax(s, axis=-1) @ v  # [..., H, Lq, D]
    o = jnp.swapaxes(o, -3, -2)
    return _dense(p["o"], o.reshape(*o.shape[:-2], -1))


def _layer(cfg: MitraConfig, p, h_RxTxd, n_ctx: int):
    """One ``Layer``: every row attends to the context rows within each token column, then the
    tokens of each row attend to each other. h: [R, T, d], the context rows first."""
    hn = jnp.swapaxes(_ln(p["ln1"], h_RxTxd), 0, 1)  # [T, R, d]
    h = h_RxTxd + jnp.swapaxes(_attention(p["attn1"], hn, hn[:, :n_ctx], cfg.n_heads), 0, 1)
    h = h + _mlp(p["mlp1"], _ln(p["ln2"], h))
    hn = _ln(p["ln3"], h)
    h = h + _attention(p["attn2"], hn, hn, cfg.n_heads)
    return h + _mlp(p["mlp2"], _ln(p["ln4"], h))


# --------------------------------------------------------------------------------------------
# the model


def _check_inputs(cfg: MitraConfig, x_ctx, y_ctx, x_query, n_classes,
                  ignore_pretraining_limits: bool):
    cs, qs = check_table_shapes(x_ctx, y_ctx, x_query)
    lim = limits(cfg, ignore_pretraining_limits)
    if cs[1] < 1:
        raise ValueError("Mitra needs at least 1 feature")
    if lim.max_features is not None and cs[1] > lim.max_features:
        raise ValueError(f"{cs[1]} features > Mitra's limit max_features={lim.max_features} "
                         "(ignore_pretraining_limits=True lifts it)")
    if cs[0] < lim.min_context_rows or qs[0] < 1:
        raise ValueError("Mitra needs at least 1 context row and 1 query row")
    if lim.max_context_rows is not None and cs[0] > lim.max_context_rows:
        raise ValueError(f"{cs[0]} context rows > Mitra's limit max_context_rows="
                         f"{lim.max_context_rows} (ignore_pretraining_limits=True lifts it)")
    traced = isinstance(y_ctx, jax.core.Tracer)
    n_classes = static_n_classes(y_ctx, n_classes)
    if n_classes > lim.max_classes:
        raise ValueError(f"{n_classes} classes > the model's limit dim_output="
                         f"{lim.max_classes} (the head's width)")
    if not traced:
        y = np.asarray(y_ctx)
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y_ctx must hold integer labels; got dtype {y.dtype}")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {y.min()}..{y.max()}")
    for name, x in (("x_ctx", x_ctx), ("x_query", x_query)):
        if not isinstance(x, jax.core.Tracer) and not np.isfinite(np.asarray(x)).all():
            raise ValueError(f"{name} holds NaN or inf: Mitra has no missing-value handling "
                             "(impute first)")
    return n_classes


def apply(cfg: MitraConfig, params, x_ctx, y_ctx, x_query, *, n_classes: int | None = None,
          ignore_pretraining_limits: bool = False):
    """Logits f32[n_q, C] of the query rows (C = n_classes, default max(y_ctx) + 1): the first
    C outputs of ``Tab2D(**cfg)`` in eval mode on the table (batch 1, no padding)."""
    n_classes = _check_inputs(cfg, x_ctx, y_ctx, x_query, n_classes, ignore_pretraining_limits)
    return _apply_jit(cfg, params, jnp.asarray(x_ctx, jnp.float32), jnp.asarray(y_ctx, jnp.int32),
                      jnp.asarray(x_query, jnp.float32), n_classes)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _apply_jit(cfg, params, x_ctx, y_ctx, x_query, n_classes):
    n_ctx = x_ctx.shape[0]
    q_ctx, q_q = quantile_embed(x_ctx, x_query)
    x = jnp.concatenate([q_ctx, q_q], axis=0)  # [R, F]
    cells = _dense(params["x_embed"], x[..., None])  # [R, F, d]: linear(1 -> d) of each cell
    y_tok = jnp.concatenate([params["y_embed"]["classes"][y_ctx],
                             jnp.broadcast_to(params["y_embed"]["mask"],
                                              (x_query.shape[0], cfg.dim))])  # [R, d]
    h = jnp.concatenate([y_tok[:, None], cells], axis=1)  # [R, F + 1, d]: the label token first
    for layer in params["layers"]:
        h = _layer(cfg, layer, h, n_ctx)
    out = _dense(params["head"], _ln(params["final_ln"], h[n_ctx:, 0]))  # [n_q, dim_output]
    return out[:, :n_classes]


# --------------------------------------------------------------------------------------------
# checkpoint conversion


def _read_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"Mitra config {path} could not be read as JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(  # noqa: TRY004 - a malformed file, reported like a corrupt one
            f"Mitra config {path} holds a {type(cfg).__name__}, expected an object")
    return cfg


def read_mitra(src, config: MitraConfig | dict | None = None):
    """-> (MitraConfig, params) from a checkpoint folder (config.json + model.safetensors), a
    .safetensors file (config.json beside it unless ``config`` is given), a torch state-dict
    file, or an in-memory state dict (those two need ``config``)."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        if path.is_dir():
            weights = path / "model.safetensors"
            if not weights.is_file():
                raise ValueError(f"Mitra checkpoint folder {path} has no model.safetensors "
                                 f"(expected as published at {PUBLISHED})")
            if config is None:
                if not (path / "config.json").is_file():
                    raise ValueError(f"Mitra checkpoint folder {path} has no config.json")
                config = _read_config(path / "config.json")
            src = weights
        elif config is None and path.suffix == ".safetensors" \
                and (path.parent / "config.json").is_file():
            config = _read_config(path.parent / "config.json")
    state = load_checkpoint(src, "Mitra")
    if not isinstance(state, dict):
        raise ValueError(  # noqa: TRY004 - a malformed file, reported like a corrupt one
            f"Mitra checkpoint holds a {type(state).__name__}, expected a state dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        config = state.get("config", config) if config is None else config
        state = state["state_dict"]
    if config is None:
        raise ValueError("a Mitra state dict needs config= (a MitraConfig or the config.json "
                         "dict), or a config.json beside the weights")
    if isinstance(config, dict):
        config = MitraConfig.from_dict(config)
    return config, params_from_state("Mitra", state, param_spec(config))


def convert_mitra(src, config: MitraConfig | dict | None = None) -> dict:
    """Our params pytree from a Mitra checkpoint (see ``read_mitra``)."""
    return read_mitra(src, config)[1]


__all__ = ["PUBLISHED", "MitraConfig", "MitraLimits", "apply", "convert_mitra", "init",
           "limits", "param_spec", "quantile_embed", "read_mitra"]
