"""How the fine-tuning loop, the batched runs and the studies drive a TFM, whichever it is.

They hold a *model spec* ``mc``: a hashable value (a static argument of their jitted programs)
that is either our row-token ``ModelConfig`` or a ``Ported`` model (TabICL, TabPFN v2, Mitra), and
call only the functions here:

    feature_slots(mc, n_features)  -> F, the feature columns of the model's input
    batch_logits(mc, params, x_BxNxF, y_BxN, ctx_BxN, feat_BxF, n_classes_B, n_ctx=...)
                                   -> f32[B, N, mc.max_classes], classes >= n_classes masked
    mc.max_features / mc.max_classes: the limits ``check_fits_model`` enforces

The loop's layout puts the context rows first (``[real ctx | syn ctx | real query | syn
query]``; evaluation: the training rows, then the query chunk). The row-token model reads the
``ctx`` mask and takes zero-padded feature slots with the ``feat`` mask (F = its
``max_features``). A port reads the table's own F features (no padding: ``feat`` is all
true) and needs the number of context rows ``n_ctx`` as a static int; its logits of the
context rows are zeros (the loss and the evaluation read the query rows only). A port is
called with its full class head and the classes >= n_classes masked, which equals calling it
with n_classes (checked in tests/test_batch_model.py), so one program serves every class count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from causaljax.tfm.model import ModelConfig, build, class_mask_logits

PORTS = ("tabicl", "tabpfn", "mitra")
# where each model's authors publish its checkpoints (named when a checkpoint is missing)
PUBLISHED = {
    "tabicl": "a tabicl-classifier-*.ckpt file from https://huggingface.co/jingang/TabICL",
    "tabpfn": "a tabpfn-v2-classifier*.ckpt file from "
              "https://huggingface.co/Prior-Labs/TabPFN-v2-clf",
    "mitra": "the folder holding config.json and model.safetensors from "
             "https://huggingface.co/autogluon/mitra-classifier",
}


@dataclass(frozen=True)
class Ported:
    """A ported TFM as the loop drives it: ``kind`` (one of ``PORTS``) and its config."""

    kind: str
    config: Any  # TabICLConfig | TabPFNConfig | MitraConfig (causaljax.tfm.tabicl / ...)

    def __post_init__(self):
        if self.kind not in PORTS:
            raise ValueError(f"unknown ported model {self.kind!r}; known: {PORTS}")

    @property
    def max_classes(self) -> int:
        """The classes of the native head (TabICL's many-class scheme is not used here)."""
        if self.kind == "tabicl":
            return self.config.max_classes
        return _module(self.kind).limits(self.config).max_classes  # the head's width

    @property
    def max_features(self) -> int:
        """The port's feature limit (TabICL has none: memory is the limit)."""
        return _module(self.kind).limits(self.config).max_features or 10**9

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.config.to_dict()}


def _module(kind: str):
    import importlib

    return importlib.import_module(f"causaljax.tfm.{kind}")


def feature_slots(mc, n_features: int) -> int:
    """F of the model's input for a table with ``n_features`` features."""
    return mc.max_features if isinstance(mc, ModelConfig) else int(n_features)


def batch_logits(mc, params, x_BxNxF, y_BxN, ctx_BxN, feat_BxF, n_classes_B, *,
                 n_ctx: int | None = None):
    """Logits f32[B, N, mc.max_classes] of every row (context rows first; see the module
    docstring), classes >= n_classes set to -1e9."""
    if isinstance(mc, ModelConfig):
        row = jnp.ones_like(ctx_BxN)
        logits = build(mc).apply({"params": params}, x_BxNxF, y_BxN, ctx_BxN, row, feat_BxF)
        return class_mask_logits(logits, n_classes_B)
    if n_ctx is None:
        raise ValueError(f"{mc.kind}: the number of context rows must be given (n_ctx)")
    apply_jit = _module(mc.kind)._apply_jit
    C = mc.max_classes

    def one(x_NxF, y_N):
        x_ctx, x_q = x_NxF[:n_ctx], x_NxF[n_ctx:]
        args = (mc.config, params, x_ctx, y_N[:n_ctx], x_q, C)
        q = apply_jit(*args, 0.9) if mc.kind == "tabicl" else apply_jit(*args)
        return jnp.concatenate([jnp.zeros((n_ctx, C), q.dtype), q])

    logits = jax.vmap(one)(x_BxNxF.astype(jnp.float32), y_BxN.astype(jnp.int32))
    return class_mask_logits(logits, n_classes_B)


def check_checkpoint_path(kind: str, path) -> Path:
    """``path`` as a Path if it holds a checkpoint of ``kind`` (a file; for Mitra also a
    folder), else a ValueError saying what is expected and where its authors publish it."""
    path = Path(path)
    if not (path.is_file() or (kind == "mitra" and path.is_dir())):
        raise ValueError(f"{kind} checkpoint {str(path)!r} not found; expected "
                         f"{PUBLISHED[kind]} (nothing is downloaded at run time)")
    return path


def load_ported(kind: str, path) -> tuple[dict, Ported, str]:
    """(params, Ported, model id) from a checkpoint of a ported model: a file (TabICL, TabPFN
    v2, Mitra) or a folder (Mitra: config.json + model.safetensors), read without executing
    code; its config gives the architecture."""
    path = check_checkpoint_path(kind, path)
    folder = path.is_dir()
    cfg, params = getattr(_module(kind), f"read_{kind}")(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if folder else [path]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:12]
    return params, Ported(kind, cfg), f"{kind}:{path.name}@{digest}"


__all__ = ["PORTS", "PUBLISHED", "Ported", "batch_logits", "check_checkpoint_path", "feature_slots", "load_ported"]
