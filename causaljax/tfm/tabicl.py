"""TabICL (Qu et al., 2025) as pure JAX functions, plus a converter for its torch checkpoints.

Written from the architecture of the ``tabicl`` package's raw classifier module
(``tabicl._model.tabicl.TabICL``, checked against tabicl 2.2.0); no torch code is imported or
executed here. One table per call:

    x_ctx f32[n_ctx, F], y_ctx int32[n_ctx], x_query f32[n_q, F]  ->  logits f32[n_q, C]

with C = the number of classes in the context (labels 0..C-1, every one present), exactly what
the reference module's eval-mode ``forward(X, y_train)`` returns for ``X = [x_ctx; x_query]``
(B = 1, ``embed_with_test=False``, ``return_logits=True``). Like the reference module, this
does NOT preprocess (no standardization, outlier clipping, feature shuffles or ensembling: that
is the job of tabicl's scikit-learn wrapper, and of ``TFMClassifier`` here).

The three stages:

1. **Column-wise embedding** (``_col_embed``). Every cell becomes an E-vector by a linear map
   (optionally of a group of features: ``col_feature_group``); the context labels are embedded
   (one-hot + linear) and added to the context rows of every column; then a set transformer over
   the ROWS of each column (induced self-attention blocks: M learned inducing points attend to
   the context rows, every row attends to the inducing points) makes the embedding aware of the
   column's distribution. ``row_num_cls`` slots in front of the columns are reserved for CLS
   tokens (filled with the marker -100, which the skippable layers pass through unchanged).
   With more classes than ``max_classes``, the labels are written in a mixed radix with balanced
   bases <= ``max_classes`` and the set transformer is averaged over the digits.
2. **Row-wise interaction** (``_row_interact``). A transformer over the tokens of each row
   (CLS tokens + feature embeddings) with rotary position embeddings; in the last block only the
   CLS tokens are queries; their (layer-normed) outputs are concatenated: an (E * row_num_cls)
   vector per row.
3. **In-context learning** (``_icl``). A transformer over the rows of the table, context rows +
   label embedding; every row attends to the context rows only; a two-layer MLP decoder gives
   ``max_classes`` logits, of which the first C are returned. With more classes than
   ``max_classes``, the reference's hierarchical scheme: the classes are split into balanced
   groups (<= ``max_classes`` per level, recursively), the group of a query is predicted from the
   context rows of the node, and the probabilities are multiplied down the tree; the logits are
   then ``softmax_temperature * log(p + 1e-6)`` as in the reference. Here a node's subset of
   context rows is an attention mask over all context rows, so every node runs the same fixed
   shapes (``jit``-able, differentiable).

Scalable softmax (SSMax / QASSMax) on the queries of the first attention of every ISAB block
(``col_ssmax``) and of the ICL transformer (``icl_ssmax``) is implemented in all of its variants.

Verified against tabicl 2.2.0's module with seeded random weights: ``tests/test_tabicl_port.py``
(small configs covering every option; max |logit difference| <= 5e-7, also under ``jit``) and,
measured once, the constructor-default size (27.5 M parameters; 5, 10 and 13 classes, the last
through the mixed-radix / hierarchical path): max |difference| 1.2e-6. Gradients (``jax.grad``
of a cross-entropy, both paths) are finite.

Parameters are a nested dict of arrays (weights as ``[in, out]``); ``init`` draws random ones
for a config, ``convert_tabicl`` reads a tabicl checkpoint (``{"config", "state_dict"}`` as the
package saves them, or a bare state dict plus a config) without executing code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from causaljax.tfm.torch_checkpoint import load_checkpoint, nested, params_from_state, to_numpy

SKIP = -100.0  # the reference's marker of a reserved (CLS) slot
LN_EPS = 1e-5
SSMAX_HIDDEN = 64
NODE_TEMPERATURE = 0.9  # softmax temperature inside the reference's hierarchical tree
_SSMAX_TYPES = ("none", "ssmax", "ssmax-mlp", "ssmax-mlp-elementwise", "qassmax-mlp",
                "qassmax-mlp-elementwise")


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class TabICLConfig:
    """The constructor arguments of ``tabicl._model.tabicl.TabICL`` (same names and defaults).

    ``num_quantiles``, ``dropout``, ``zero_init`` and ``recompute`` are accepted for
    compatibility with checkpoint configs; this port is classification-only and
    inference-deterministic (dropout is not applied), and ``zero_init`` only concerns fresh torch
    models. ``max_classes`` is the number of classes handled natively (more use the mixed-radix /
    hierarchical schemes).
    """

    max_classes: int = 10
    num_quantiles: int = 999
    embed_dim: int = 128
    col_num_blocks: int = 3
    col_nhead: int = 8
    col_num_inds: int = 128
    col_affine: bool = False
    col_feature_group: bool | str = "same"
    col_feature_group_size: int = 3
    col_target_aware: bool = True
    col_ssmax: bool | str = "qassmax-mlp-elementwise"
    row_num_blocks: int = 3
    row_nhead: int = 8
    row_num_cls: int = 4
    row_rope_base: float = 100000
    row_rope_interleaved: bool = True
    icl_num_blocks: int = 12
    icl_nhead: int = 8
    icl_ssmax: bool | str = "qassmax-mlp-elementwise"
    ff_factor: int = 2
    dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True
    bias_free_ln: bool = False
    zero_init: bool = True
    recompute: bool = False

    def __post_init__(self):
        if self.max_classes <= 0:
            raise ValueError(f"max_classes={self.max_classes}: this port is classification-only "
                             "(TabICL regression, max_classes=0, is not ported)")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"activation={self.activation!r}: only 'gelu' and 'relu' are ported")
        for name in ("col_ssmax", "icl_ssmax"):
            _ssmax_type(getattr(self, name), name)
        if self.col_feature_group not in (False, True, "same", "valid"):
            raise ValueError(f"col_feature_group={self.col_feature_group!r}: expected False, True, "
                             "'same' or 'valid'")
        for dim, heads, name in ((self.embed_dim, self.col_nhead, "col_nhead"),
                                 (self.embed_dim, self.row_nhead, "row_nhead"),
                                 (self.icl_dim, self.icl_nhead, "icl_nhead")):
            if dim % heads:
                raise ValueError(f"{name}={heads} does not divide the model width {dim}")
        if (self.embed_dim // self.row_nhead) % 2:
            raise ValueError("the row transformer's head width must be even (rotary embedding)")

    @property
    def icl_dim(self) -> int:
        return self.embed_dim * self.row_num_cls

    @property
    def group_size(self) -> int:
        return self.col_feature_group_size if self.col_feature_group else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TabICLConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TabICL config has keys this port does not know: {unknown}")
        return cls(**d)


def _ssmax_type(v, name="ssmax") -> str:
    if isinstance(v, bool):
        return "qassmax-mlp-elementwise" if v else "none"
    if v not in _SSMAX_TYPES:
        raise ValueError(f"{name}={v!r}: expected a bool or one of {_SSMAX_TYPES}")
    return v


@dataclass(frozen=True)
class TabICLLimits:
    """What one call accepts. ``None``: no limit in the architecture (memory is the limit)."""

    max_features: int | None = None
    max_classes: int | None = None  # beyond native_classes: mixed radix + hierarchical
    native_classes: int = 10
    max_context_rows: int | None = None
    min_context_rows: int = 1


def limits(cfg: TabICLConfig) -> TabICLLimits:
    return TabICLLimits(native_classes=cfg.max_classes)


# --------------------------------------------------------------------------------------------
# parameter layout: one table gives both ``init`` and the converter


def _mab_spec(prefix: str, d: int, ff: int, ssmax: str, nhead: int, bias_free_ln: bool):
    """(our path, torch key, shape in OUR layout, kind) rows of one attention block."""
    rows = [
        (("attn", "w_qkv"), "attn.in_proj_weight", (d, 3 * d), "linear_w"),
        (("attn", "b_qkv"), "attn.in_proj_bias", (3 * d,), "bias"),
        (("attn", "w_out"), "attn.out_proj.weight", (d, d), "linear_w"),
        (("attn", "b_out"), "attn.out_proj.bias", (d,), "bias"),
        (("ff1", "w"), "linear1.weight", (d, ff), "linear_w"),
        (("ff1", "b"), "linear1.bias", (ff,), "bias"),
        (("ff2", "w"), "linear2.weight", (ff, d), "linear_w"),
        (("ff2", "b"), "linear2.bias", (d,), "bias"),
    ]
    for n in ("norm1", "norm2"):
        rows.append(((n, "scale"), f"{n}.weight", (d,), "ln_scale"))
        if not bias_free_ln:
            rows.append(((n, "bias"), f"{n}.bias", (d,), "bias"))
    hd = d // nhead
    s = "attn.ssmax_layer"
    if ssmax == "ssmax":
        rows.append((("attn", "ssmax", "scales"), f"{s}.scales", (nhead,), "ones"))
    elif ssmax in ("ssmax-mlp", "ssmax-mlp-elementwise"):
        out = nhead * hd if ssmax.endswith("elementwise") else nhead
        rows += _mlp2_rows(("attn", "ssmax", "mlp"), f"{s}.mlp", 1, SSMAX_HIDDEN, out)
    elif ssmax.startswith("qassmax"):
        elem = ssmax.endswith("elementwise")
        rows += _mlp2_rows(("attn", "ssmax", "base"), f"{s}.base_mlp", 1, SSMAX_HIDDEN,
                           nhead * hd if elem else nhead)
        rows += _mlp2_rows(("attn", "ssmax", "query"), f"{s}.query_mlp", hd, SSMAX_HIDDEN,
                           hd if elem else 1)
    return [((prefix,) + p if isinstance(prefix, str) else prefix + p, k, shp, kind)
            for p, k, shp, kind in rows]


def _mlp2_rows(path, key, d_in, d_hidden, d_out):
    return [(path + ("w1",), f"{key}.0.weight", (d_in, d_hidden), "linear_w"),
            (path + ("b1",), f"{key}.0.bias", (d_hidden,), "bias"),
            (path + ("w2",), f"{key}.2.weight", (d_hidden, d_out), "linear_w"),
            (path + ("b2",), f"{key}.2.bias", (d_out,), "bias")]


def _ln_rows(path, key, d, bias_free_ln):
    rows = [(path + ("scale",), f"{key}.weight", (d,), "ln_scale")]
    if not bias_free_ln:
        rows.append((path + ("bias",), f"{key}.bias", (d,), "bias"))
    return rows


def _lin_rows(path, key, d_in, d_out):
    return [(path + ("w",), f"{key}.weight", (d_in, d_out), "linear_w"),
            (path + ("b",), f"{key}.bias", (d_out,), "bias")]


def param_spec(cfg: TabICLConfig):
    """Every parameter: (path in our pytree, torch state-dict key, shape here, kind)."""
    E, icl, M = cfg.embed_dim, cfg.icl_dim, cfg.max_classes
    ff_e, ff_icl = E * cfg.ff_factor, icl * cfg.ff_factor
    col_ss = _ssmax_type(cfg.col_ssmax)
    rows = _lin_rows(("col", "in_linear"), "col_embedder.in_linear", cfg.group_size, E)
    for i in range(cfg.col_num_blocks):
        t = f"col_embedder.tf_col.blocks.{i}"
        rows.append((("col", "blocks", i, "ind"), f"{t}.ind_vectors", (cfg.col_num_inds, E),
                     "ind"))
        for j, ss in ((1, col_ss), (2, "none")):
            rows += [(("col", "blocks", i, f"mab{j}") + p, f"{t}.multihead_attn{j}.{k}", s, kd)
                     for p, k, s, kd in _mab_spec((), E, ff_e, ss, cfg.col_nhead,
                                                  cfg.bias_free_ln)]
    if cfg.col_target_aware:
        rows += _lin_rows(("col", "y_encoder"), "col_embedder.y_encoder", M, E)
    if cfg.col_affine:
        rows += _lin_rows(("col", "out_w"), "col_embedder.out_w", E, E)
        rows += _lin_rows(("col", "out_b"), "col_embedder.out_b", E, E)
        if cfg.norm_first:
            rows += _ln_rows(("col", "ln_w"), "col_embedder.ln_w", E, cfg.bias_free_ln)
            rows += _ln_rows(("col", "ln_b"), "col_embedder.ln_b", E, cfg.bias_free_ln)
    rows.append((("row", "cls"), "row_interactor.cls_tokens", (cfg.row_num_cls, E), "ind"))
    for i in range(cfg.row_num_blocks):
        rows += [(("row", "blocks", i) + p, f"row_interactor.tf_row.blocks.{i}.{k}", s, kd)
                 for p, k, s, kd in _mab_spec((), E, ff_e, "none", cfg.row_nhead,
                                              cfg.bias_free_ln)]
    if cfg.norm_first:
        rows += _ln_rows(("row", "out_ln"), "row_interactor.out_ln", E, cfg.bias_free_ln)
    icl_ss = _ssmax_type(cfg.icl_ssmax)
    for i in range(cfg.icl_num_blocks):
        rows += [(("icl", "blocks", i) + p, f"icl_predictor.tf_icl.blocks.{i}.{k}", s, kd)
                 for p, k, s, kd in _mab_spec((), icl, ff_icl, icl_ss, cfg.icl_nhead,
                                              cfg.bias_free_ln)]
    if cfg.norm_first:
        rows += _ln_rows(("icl", "ln"), "icl_predictor.ln", icl, cfg.bias_free_ln)
    rows += _lin_rows(("icl", "y_encoder"), "icl_predictor.y_encoder", M, icl)
    rows += _lin_rows(("icl", "dec1"), "icl_predictor.decoder.0", icl, 2 * icl)
    rows += _lin_rows(("icl", "dec2"), "icl_predictor.decoder.2", 2 * icl, M)
    return rows


# buffers in the torch state dict that are not parameters here (recomputed from the config)
def _buffer_keys(cfg: TabICLConfig) -> dict[str, np.ndarray]:
    return {"row_interactor.tf_row.rope.freqs": _rope_freqs(cfg)}


def _rope_freqs(cfg: TabICLConfig) -> np.ndarray:
    hd = cfg.embed_dim // cfg.row_nhead
    expo = np.arange(0, hd, 2, dtype=np.float32)[: hd // 2] / np.float32(hd)
    return (np.float32(1.0) / (np.float32(cfg.row_rope_base) ** expo)).astype(np.float32)


def init(cfg: TabICLConfig, key) -> dict:
    """Random parameters for ``cfg`` (torch-like scales; for tests and training from scratch)."""
    return _init_jit(cfg, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_jit(cfg: TabICLConfig, key) -> dict:
    spec = param_spec(cfg)
    sizes = [int(np.prod(shape)) for _, _, shape, _ in spec]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    k1, k2 = jax.random.split(key)
    # two draws for all parameters (one per distribution), sliced: a small program to compile
    uni = jax.random.uniform(k1, (int(offsets[-1]),), jnp.float32, -1, 1)
    tnorm = jax.random.truncated_normal(k2, -2.0, 2.0, (int(offsets[-1]),), jnp.float32)
    items = []
    for (path, _, shape, kind), lo, hi in zip(spec, offsets[:-1], offsets[1:]):
        if kind == "linear_w":
            v = uni[lo:hi].reshape(shape) / math.sqrt(shape[0])
        elif kind == "bias":
            v = jnp.zeros(shape, jnp.float32)
        elif kind in ("ln_scale", "ones"):
            v = jnp.ones(shape, jnp.float32)
        else:  # inducing points, CLS tokens
            v = 0.02 * tnorm[lo:hi].reshape(shape)
        items.append((path, v))
    return nested(items)


# --------------------------------------------------------------------------------------------
# layers


def _act(cfg: TabICLConfig, x):
    return jax.nn.gelu(x, approximate=False) if cfg.activation == "gelu" else jax.nn.relu(x)


def _bc(v, x):
    """Vector / matrix v broadcast explicitly against the trailing axes of x (the tests run
    with jax_numpy_rank_promotion='raise')."""
    return v.reshape((1,) * (x.ndim - v.ndim) + v.shape)


def _ln(p, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) * jax.lax.rsqrt(var + LN_EPS) * _bc(p["scale"], x)
    return y + _bc(p["bias"], y) if "bias" in p else y


def _dense(p, x):
    y = x @ p["w"]
    return y + _bc(p["b"], y)


def _rope(x_HxLxD, freqs, interleaved: bool):
    L = x_HxLxD.shape[-2]
    ang = jnp.arange(L, dtype=jnp.float32)[:, None] * freqs[None, :]  # [L, D/2]
    if interleaved:  # pairs (0,1), (2,3), ...
        ang = jnp.repeat(ang, 2, axis=-1)
        x2 = x_HxLxD.reshape(*x_HxLxD.shape[:-1], -1, 2)
        rot = jnp.stack([-x2[..., 1], x2[..., 0]], axis=-1).reshape(x_HxLxD.shape)
    else:  # halves [0:D/2], [D/2:D]
        ang = jnp.concatenate([ang, ang], axis=-1)
        h = x_HxLxD.shape[-1] // 2
        rot = jnp.concatenate([-x_HxLxD[..., h:], x_HxLxD[..., :h]], axis=-1)
    ang = _bc(ang, x_HxLxD)
    return x_HxLxD * jnp.cos(ang) + rot * jnp.sin(ang)


def _ssmax(p, kind: str, q_HxLxD, n_keys):
    """Scale the queries by the (query-aware) scalable-softmax factor for n_keys keys."""
    if kind == "none":
        return q_HxLxD
    if isinstance(n_keys, int):
        logn = jnp.float32(math.log(max(n_keys, 1)))
    else:
        logn = jnp.log(jnp.maximum(n_keys, 1).astype(jnp.float32))
    H, D = q_HxLxD.shape[-3], q_HxLxD.shape[-1]

    def mlp(m, x):
        h = jax.nn.gelu(_dense({"w": m["w1"], "b": m["b1"]}, x), approximate=False)
        return _dense({"w": m["w2"], "b": m["b2"]}, h)

    q = q_HxLxD
    if kind == "ssmax":
        return q * _bc((p["scales"] * logn).reshape(H, 1, 1), q)
    if kind.startswith("ssmax-mlp"):
        s = mlp(p["mlp"], logn.reshape(1, 1))[0]
        s = s.reshape(H, 1, D) if kind.endswith("elementwise") else s.reshape(H, 1, 1)
        return q * _bc(s, q)
    base = mlp(p["base"], logn.reshape(1, 1))[0]
    base = base.reshape(H, 1, D) if kind.endswith("elementwise") else base.reshape(H, 1, 1)
    mod = 1.0 + jnp.tanh(mlp(p["query"], q))  # [..., H, L, D or 1]
    return q * (_bc(base, mod) * mod)


def _attention(p, q_in, kv_in, nhead: int, *, ssmax: str = "none", rope=None, key_mask=None,
               n_keys=None):
    """Multi-head attention, queries q_in[..., Lq, d], keys = values kv_in[..., Lk, d].

    key_mask: bool[Lk] (True = attend) shared by every query; n_keys: the number of attended
    keys (the scalable softmax's n), default Lk.
    """
    d = q_in.shape[-1]
    hd = d // nhead
    w, b = p["w_qkv"], p["b_qkv"]
    q = _dense({"w": w[:, :d], "b": b[:d]}, q_in)
    k = _dense({"w": w[:, d:2 * d], "b": b[d:2 * d]}, kv_in)
    v = _dense({"w": w[:, 2 * d:], "b": b[2 * d:]}, kv_in)

    def heads(t):  # [..., L, d] -> [..., H, L, hd]
        return jnp.swapaxes(t.reshape(*t.shape[:-1], nhead, hd), -3, -2)

    q, k, v = heads(q), heads(k), heads(v)
    if rope is not None:
        freqs, interleaved = rope
        q, k = _rope(q, freqs, interleaved), _rope(k, freqs, interleaved)
    if ssmax != "none":
        q = _ssmax(p["ssmax"], ssmax, q, kv_in.shape[-2] if n_keys is None else n_keys)
    s = (q @ jnp.swapaxes(k, -1, -2)) / jnp.sqrt(jnp.float32(hd))
    if key_mask is not None:
        s = jnp.where(_bc(key_mask, s), s, -jnp.inf)
    a = jax.nn.softmax(s, axis=-1)
    o = jnp.swapaxes(a @ v, -3, -2)
    o = o.reshape(*o.shape[:-2], d)
    return _dense({"w": p["w_out"], "b": p["b_out"]}, o)


def _block(cfg: TabICLConfig, p, q, kv, nhead: int, **kw):
    """One transformer block: attention of q onto kv, then the feed-forward network."""
    if cfg.norm_first:
        qn = _ln(p["norm1"], q)
        kvn = qn if kv is q else _ln(p["norm1"], kv)
        x = q + _attention(p["attn"], qn, kvn, nhead, **kw)
        return x + _dense(p["ff2"], _act(cfg, _dense(p["ff1"], _ln(p["norm2"], x))))
    x = _ln(p["norm1"], q + _attention(p["attn"], q, kv, nhead, **kw))
    return _ln(p["norm2"], x + _dense(p["ff2"], _act(cfg, _dense(p["ff1"], x))))


def _block_ctx(cfg, p, h, n_ctx: int, nhead: int, **kw):
    """Every row of h attends to the first n_ctx rows (the reference's ``train_size``)."""
    if cfg.norm_first:
        hn = _ln(p["norm1"], h)
        x = h + _attention(p["attn"], hn, hn[..., :n_ctx, :], nhead, **kw)
        return x + _dense(p["ff2"], _act(cfg, _dense(p["ff1"], _ln(p["norm2"], x))))
    x = _ln(p["norm1"], h + _attention(p["attn"], h, h[..., :n_ctx, :], nhead, **kw))
    return _ln(p["norm2"], x + _dense(p["ff2"], _act(cfg, _dense(p["ff1"], x))))


# --------------------------------------------------------------------------------------------
# 1. column-wise embedding


def mixed_radix_bases(n_classes: int, max_classes: int) -> list[int]:
    """Balanced bases, each <= max_classes, whose product is >= n_classes (first digit most
    significant)."""
    if n_classes <= max_classes:
        return [n_classes]
    n_digits = math.ceil(math.log(n_classes) / math.log(max_classes))
    base = min(math.ceil(n_classes ** (1.0 / n_digits)), max_classes)
    bases = [base] * n_digits
    prod = base ** n_digits
    for i in range(n_digits):  # grow the leading digits by one until the product suffices
        if prod >= n_classes:
            break
        if bases[i] < max_classes:
            prod = prod // bases[i] * (bases[i] + 1)
            bases[i] += 1
    return bases


def _group_features(cfg: TabICLConfig, x_TxF):
    """[T, F] -> [T, G, group_size]."""
    if not cfg.col_feature_group:
        return x_TxF[..., None]
    T, F = x_TxF.shape
    s = cfg.col_feature_group_size
    if cfg.col_feature_group in (True, "same"):  # feature j with j+1, j+2, j+4, ... (mod F)
        idx = np.arange(F)
        return jnp.stack([x_TxF[:, (idx + 2 ** i) % F] for i in range(s)], axis=-1)
    pad = (-F) % s  # "valid": consecutive groups, zero padding
    return jnp.pad(x_TxF, ((0, 0), (0, pad))).reshape(T, -1, s)


def _skip_dense(p, x):
    """Linear map; an input vector that is all SKIP maps to all SKIP."""
    out = _dense(p, x)
    return jnp.where(jnp.all(x == SKIP, axis=-1, keepdims=True), SKIP, out)


def _set_transformer(cfg: TabICLConfig, blocks, src_KxTxE, n_ctx: int):
    ss = _ssmax_type(cfg.col_ssmax)
    h = src_KxTxE
    for b in blocks:
        skip = jnp.all(h == SKIP, axis=(-2, -1), keepdims=True)  # a whole column of markers
        ind = jnp.broadcast_to(b["ind"], (h.shape[0],) + b["ind"].shape)
        hidden = _block(cfg, b["mab1"], ind, h[:, :n_ctx], cfg.col_nhead, ssmax=ss)
        out = _block(cfg, b["mab2"], h, hidden, cfg.col_nhead)
        h = jnp.where(skip, SKIP, out)
    return h


def _col_embed(cfg: TabICLConfig, p, x_TxF, y_ctx, n_ctx: int, n_classes: int):
    """-> embeddings f32[T, row_num_cls + G, E] (the CLS slots hold values to be replaced)."""
    g = _group_features(cfg, x_TxF)  # [T, G, s]
    C = cfg.row_num_cls
    g = jnp.pad(g, ((0, 0), (C, 0), (0, 0)), constant_values=SKIP)
    feats = jnp.swapaxes(g, 0, 1)  # [K = C + G, T, s]
    src = _skip_dense(p["in_linear"], feats)  # [K, T, E]
    if not cfg.col_target_aware:
        h = _set_transformer(cfg, p["blocks"], src, n_ctx)
    else:
        bases = mixed_radix_bases(n_classes, cfg.max_classes)
        acc = 0.0
        for i in range(len(bases)):
            div = int(np.prod(bases[i + 1:], dtype=np.int64)) if i + 1 < len(bases) else 1
            digit = (y_ctx // div) % bases[i] if len(bases) > 1 else y_ctx
            y_emb = _dense(p["y_encoder"], jax.nn.one_hot(digit, cfg.max_classes))  # [n_ctx, E]
            src_y = src.at[:, :n_ctx].add(y_emb[None])
            acc = acc + _set_transformer(cfg, p["blocks"], src_y, n_ctx)
        h = acc / len(bases) if len(bases) > 1 else acc
    if cfg.col_affine:
        w = _skip_dense(p["out_w"], h)
        bb = _skip_dense(p["out_b"], h)
        if cfg.norm_first:
            w, bb = _ln(p["ln_w"], w), _ln(p["ln_b"], bb)
        h = feats * w + bb
    return jnp.swapaxes(h, 0, 1)  # [T, K, E]


# --------------------------------------------------------------------------------------------
# 2. row-wise interaction


def _row_interact(cfg: TabICLConfig, p, emb_TxKxE):
    C = cfg.row_num_cls
    T = emb_TxKxE.shape[0]
    h = emb_TxKxE.at[:, :C].set(jnp.broadcast_to(p["cls"], (T,) + p["cls"].shape))
    rope = (jnp.asarray(_rope_freqs(cfg)), cfg.row_rope_interleaved)
    for b in p["blocks"][:-1]:
        h = _block(cfg, b, h, h, cfg.row_nhead, rope=rope)
    out = _block(cfg, p["blocks"][-1], h[:, :C], h, cfg.row_nhead, rope=rope)
    if cfg.norm_first:
        out = _ln(p["out_ln"], out)
    return out.reshape(T, -1)  # [T, C * E]


# --------------------------------------------------------------------------------------------
# 3. in-context learning


def _icl_logits(cfg: TabICLConfig, p, R_TxD, y_ctx, n_ctx: int, ctx_mask=None, n_keys=None):
    """Raw decoder output f32[T, max_classes]; ctx_mask: bool[n_ctx] context rows to use."""
    ss = _ssmax_type(cfg.icl_ssmax)
    h = R_TxD.at[:n_ctx].add(_dense(p["y_encoder"], jax.nn.one_hot(y_ctx, cfg.max_classes)))
    for b in p["blocks"]:
        h = _block_ctx(cfg, b, h, n_ctx, cfg.icl_nhead, ssmax=ss, key_mask=ctx_mask,
                       n_keys=n_keys)
    if cfg.norm_first:
        h = _ln(p["ln"], h)
    return _dense(p["dec2"], jax.nn.gelu(_dense(p["dec1"], h), approximate=False))


def class_groups(n_classes: int, max_classes: int) -> list[range]:
    """The reference's balanced split of classes 0..n-1 into <= max_classes contiguous groups."""
    if n_classes <= max_classes:
        return [range(n_classes)]
    n_groups = min(math.ceil(n_classes / max_classes), max_classes)
    out, start, left = [], 0, n_classes
    for g in range(n_groups):
        size = math.ceil(left / (n_groups - g))
        out.append(range(start, start + size))
        start, left = start + size, left - size
    return out


def _hierarchical_probs(cfg, p, R_TxD, y_ctx, n_ctx: int, classes: range, temperature: float):
    """Probabilities f32[n_q, len(classes)] of the query rows over `classes` (a tree node)."""
    k = len(classes)
    in_node = (y_ctx >= classes.start) & (y_ctx < classes.stop)
    n_keys = in_node.sum()
    if k <= cfg.max_classes:  # leaf: the node's classes, relabelled 0..k-1
        local = jnp.clip(y_ctx - classes.start, 0, cfg.max_classes - 1)
        out = _icl_logits(cfg, p, R_TxD, local, n_ctx, in_node, n_keys)[n_ctx:, :k]
        return jax.nn.softmax(out / temperature, axis=-1)
    groups = class_groups(k, cfg.max_classes)
    group_of = np.zeros(k, np.int32)
    for gi, g in enumerate(groups):
        group_of[list(g)] = gi
    local = jnp.asarray(group_of)[jnp.clip(y_ctx - classes.start, 0, k - 1)]
    out = _icl_logits(cfg, p, R_TxD, local, n_ctx, in_node, n_keys)[n_ctx:, :len(groups)]
    gp = jax.nn.softmax(out / temperature, axis=-1)
    parts = [gp[:, gi:gi + 1] * _hierarchical_probs(
        cfg, p, R_TxD, y_ctx, n_ctx, range(classes.start + g.start, classes.start + g.stop),
        temperature) for gi, g in enumerate(groups)]
    return jnp.concatenate(parts, axis=-1)


# --------------------------------------------------------------------------------------------
# the model


def _check_inputs(cfg: TabICLConfig, x_ctx, y_ctx, x_query, n_classes):
    x_ctx_shape, x_q_shape = np.shape(x_ctx), np.shape(x_query)
    if len(x_ctx_shape) != 2 or len(x_q_shape) != 2:
        raise ValueError(f"x_ctx and x_query must be 2-d [rows, features]; got {x_ctx_shape} "
                         f"and {x_q_shape}")
    if x_ctx_shape[1] != x_q_shape[1]:
        raise ValueError(f"x_ctx has {x_ctx_shape[1]} features but x_query has {x_q_shape[1]}")
    if np.shape(y_ctx) != (x_ctx_shape[0],):
        raise ValueError(f"y_ctx has shape {np.shape(y_ctx)}; expected ({x_ctx_shape[0]},), one "
                         "label per context row")
    lim = limits(cfg)
    if x_ctx_shape[1] < 1:
        raise ValueError("TabICL needs at least 1 feature")
    if lim.max_features is not None and x_ctx_shape[1] > lim.max_features:
        raise ValueError(f"{x_ctx_shape[1]} features > the model's limit {lim.max_features}")
    if x_ctx_shape[0] < lim.min_context_rows:
        raise ValueError("TabICL needs at least 1 context row")
    if lim.max_context_rows is not None and x_ctx_shape[0] > lim.max_context_rows:
        raise ValueError(f"{x_ctx_shape[0]} context rows > the model's limit "
                         f"{lim.max_context_rows}")
    traced = isinstance(y_ctx, jax.core.Tracer)
    if n_classes is None:
        if traced:
            raise ValueError("n_classes must be given (a static int) when y_ctx is traced, e.g. "
                             "jax.jit(functools.partial(model.apply, n_classes=C))")
        n_classes = int(np.max(np.asarray(y_ctx))) + 1 if x_ctx_shape[0] else 0
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes}: need at least 1 class")
    if lim.max_classes is not None and n_classes > lim.max_classes:
        raise ValueError(f"{n_classes} classes > the model's limit {lim.max_classes}")
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


def apply(cfg: TabICLConfig, params, x_ctx, y_ctx, x_query, *, n_classes: int | None = None,
          softmax_temperature: float = 0.9):
    """Logits f32[n_q, C] of the query rows (C = n_classes, default max(y_ctx) + 1).

    Equals ``TabICL(**cfg)`` in eval mode: ``forward(cat([x_ctx, x_query])[None],
    y_ctx[None])[0]``. For C > cfg.max_classes the logits are the reference's
    ``softmax_temperature * log(p + 1e-6)`` of the hierarchical probabilities (whose nodes,
    as in the reference, always use temperature 0.9).
    Labels must be 0..C-1 with every class present in the context (checked when concrete).
    """
    n_classes = _check_inputs(cfg, x_ctx, y_ctx, x_query, n_classes)
    return _apply_jit(cfg, params, jnp.asarray(x_ctx, jnp.float32), jnp.asarray(y_ctx, jnp.int32),
                      jnp.asarray(x_query, jnp.float32), n_classes, float(softmax_temperature))


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _apply_jit(cfg, params, x_ctx, y_ctx, x_query, n_classes, softmax_temperature):
    # one XLA program per (config, shapes, n_classes): op-by-op dispatch would compile every
    # primitive of the unrolled blocks separately; under an outer jit this is simply inlined
    n_ctx = x_ctx.shape[0]
    x = jnp.concatenate([x_ctx, x_query], axis=0)
    emb = _col_embed(cfg, params["col"], x, y_ctx, n_ctx, n_classes)
    R = _row_interact(cfg, params["row"], emb)
    if n_classes <= cfg.max_classes:
        return _icl_logits(cfg, params["icl"], R, y_ctx, n_ctx)[n_ctx:, :n_classes]
    # the reference's tree uses its default temperature 0.9 in every node whatever
    # softmax_temperature is; softmax_temperature only scales the final log-probabilities
    probs = _hierarchical_probs(cfg, params["icl"], R, y_ctx, n_ctx, range(n_classes),
                                NODE_TEMPERATURE)
    return softmax_temperature * jnp.log(probs + 1e-6)


@dataclass(frozen=True)
class TabICL:
    """TabICL bound to a config: ``init(key)``, ``apply(params, x_ctx, y_ctx, x_query)``,
    ``limits``."""

    config: TabICLConfig = TabICLConfig()

    def init(self, key) -> dict:
        return init(self.config, key)

    def apply(self, params, x_ctx, y_ctx, x_query, *, n_classes: int | None = None,
              softmax_temperature: float = 0.9):
        return apply(self.config, params, x_ctx, y_ctx, x_query, n_classes=n_classes,
                     softmax_temperature=softmax_temperature)

    @property
    def limits(self) -> TabICLLimits:
        return limits(self.config)


# --------------------------------------------------------------------------------------------
# checkpoint conversion


def _load(src) -> Any:
    return load_checkpoint(src, "TabICL")


def read_tabicl(path_or_state_dict, config: TabICLConfig | dict | None = None):
    """-> (TabICLConfig, params). The config comes from the checkpoint's ``"config"`` entry
    unless given (it must be given for a bare state dict)."""
    ck = _load(path_or_state_dict)
    if not isinstance(ck, dict):
        raise ValueError(  # noqa: TRY004 - a malformed file, reported like a corrupt one
            f"TabICL checkpoint holds a {type(ck).__name__}, expected a dict")
    if "state_dict" in ck:
        state = ck["state_dict"]
        if config is None:
            if "config" not in ck:
                raise ValueError("TabICL checkpoint has a 'state_dict' but no 'config'; pass "
                                 "config=")
            config = ck["config"]
    else:
        state = ck
        if config is None:
            raise ValueError("a bare TabICL state dict needs config= (a TabICLConfig or the "
                             "constructor kwargs)")
    if not isinstance(state, dict):
        raise ValueError(  # noqa: TRY004
            f"TabICL 'state_dict' is a {type(state).__name__}, expected a dict")
    if isinstance(config, dict):
        config = TabICLConfig.from_dict(config)
    spec = param_spec(config)
    buffers = _buffer_keys(config)
    params = params_from_state("TabICL", state, spec, extra_keys=buffers)
    for key, want in buffers.items():
        if key in state:
            a = to_numpy(key, state[key])
            if a.shape != want.shape or not np.allclose(a, want, rtol=1e-6, atol=0):
                raise ValueError(f"TabICL state dict key {key!r} (shape {a.shape}) does not match "
                                 f"the rotary frequencies of row_rope_base={config.row_rope_base}"
                                 f", head width {2 * want.shape[0]}")
    return config, params


def convert_tabicl(path_or_state_dict, config: TabICLConfig | dict | None = None) -> dict:
    """Our params pytree from a TabICL checkpoint file or state dict (see ``read_tabicl``)."""
    return read_tabicl(path_or_state_dict, config)[1]


__all__ = ["TabICL", "TabICLConfig", "TabICLLimits", "apply", "class_groups", "convert_tabicl",
           "init", "limits", "mixed_radix_bases", "param_spec", "read_tabicl"]
