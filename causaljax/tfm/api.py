"""A minimal model interface for in-context TFMs, and adapters for the models we have.

A ``TFM`` is a pair of pure functions plus its limits (and optionally parameters)::

    model.init(key)                                   -> params
    model.apply(params, x_ctx, y_ctx, x_query, n_classes=C)
        x_ctx f32[n_ctx, F], y_ctx int32[n_ctx] (0..C-1), x_query f32[n_q, F] -> f32[n_q, C]
    model.limits                                      -> Limits(max_features, max_classes, ...)
    model.params                                      -> pretrained params, or None

``apply`` checks the limits (a ValueError naming the limit) whenever the shapes are known,
which is always, also under ``jit``; ``n_classes`` must be a static int under ``jit``.

Adapters:

* ``row_token(cfg, params)`` / ``shipped(checkpoint)``: our row-token model
  (``causaljax.tfm.model``); features fill the first F of its ``max_features`` slots; NaN marks
  a missing value (the model standardizes with the context statistics itself).
* ``tabicl(config, params)`` / ``tabicl_from_checkpoint(path)``: the TabICL port
  (``causaljax.tfm.tabicl``); expects preprocessed numbers (no NaN), every class present in
  the context.
* ``tabpfn(config, params)`` / ``tabpfn_from_checkpoint(path)``: the TabPFN v2 port
  (``causaljax.tfm.tabpfn``); the raw module's forward (no scikit-learn-side preprocessing or
  ensembling); NaN / inf are handled by the model itself; every class present in the context;
  features and context rows capped at tabpfn's v2 pretraining limits (500, 10 000).
* ``mitra(config, params)`` / ``mitra_from_checkpoint(folder)``: the Mitra port
  (``causaljax.tfm.mitra``, AutoGluon's ``Tab2D``); the raw module's forward; no NaN; features
  and context rows capped at AutoGluon's limits for Mitra (500, 10 000).

``TFMClassifier(model=...)`` accepts any ``TFM`` with parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Limits:
    """What one call accepts; ``None`` = no limit in the architecture."""

    max_features: int | None = None
    max_classes: int | None = None
    max_context_rows: int | None = None


def check_limits(limits: Limits, name: str, n_ctx: int, n_features: int, n_classes: int):
    if n_features < 1:
        raise ValueError(f"{name}: need at least 1 feature")
    if n_ctx < 1:
        raise ValueError(f"{name}: need at least 1 context row")
    if n_classes < 1:
        raise ValueError(f"{name}: need at least 1 class")
    if limits.max_features is not None and n_features > limits.max_features:
        raise ValueError(f"{name} takes at most {limits.max_features} features; got "
                         f"{n_features}")
    if limits.max_classes is not None and n_classes > limits.max_classes:
        raise ValueError(f"{name} takes at most {limits.max_classes} classes; got {n_classes}")
    if limits.max_context_rows is not None and n_ctx > limits.max_context_rows:
        raise ValueError(f"{name} takes at most {limits.max_context_rows} context rows; got "
                         f"{n_ctx}")


@dataclass(frozen=True, eq=False)
class TFM:
    """An in-context classifier: pure ``init`` / ``apply``, its ``limits``, optional params."""

    name: str
    limits: Limits
    init_fn: Callable[[Any], Any]
    apply_fn: Callable[..., Any]  # (params, x_ctx, y_ctx, x_query, n_classes) -> logits
    params: Any = None
    handles_missing: bool = False  # True: NaN in x is a missing value the model understands

    def init(self, key):
        return self.init_fn(key)

    def apply(self, params, x_ctx, y_ctx, x_query, *, n_classes: int | None = None):
        if np.ndim(x_ctx) != 2 or np.ndim(x_query) != 2:
            raise ValueError(f"{self.name}: x_ctx and x_query must be 2-d [rows, features]")
        if np.shape(x_ctx)[1] != np.shape(x_query)[1]:
            raise ValueError(f"{self.name}: x_ctx has {np.shape(x_ctx)[1]} features, x_query "
                             f"{np.shape(x_query)[1]}")
        if n_classes is None:
            if isinstance(y_ctx, jax.core.Tracer):
                raise ValueError(f"{self.name}: pass n_classes (a static int) under jit")
            n_classes = int(np.max(np.asarray(y_ctx))) + 1
        check_limits(self.limits, self.name, np.shape(x_ctx)[0], np.shape(x_ctx)[1],
                     int(n_classes))
        return self.apply_fn(params, x_ctx, y_ctx, x_query, int(n_classes))

    def with_params(self, params) -> TFM:
        return TFM(self.name, self.limits, self.init_fn, self.apply_fn, params,
                   self.handles_missing)


# --------------------------------------------------------------------------------------------
# our row-token model


def row_token(cfg=None, params=None) -> TFM:
    from causaljax.tfm import model as rt

    cfg = rt.ModelConfig() if cfg is None else cfg

    def apply_fn(params, x_ctx, y_ctx, x_query, n_classes):
        F = np.shape(x_ctx)[1]
        pad = ((0, 0), (0, cfg.max_features - F))
        logits = _row_token_logits(params, jnp.pad(jnp.asarray(x_ctx, jnp.float32), pad),
                                   jnp.asarray(y_ctx, jnp.int32),
                                   jnp.pad(jnp.asarray(x_query, jnp.float32), pad), F, cfg)
        return logits[:, :n_classes]

    return TFM("row-token TFM", Limits(cfg.max_features, cfg.max_classes),
               lambda key: rt.init_params(cfg, key), apply_fn, params, handles_missing=True)


def _row_token_logits_impl(params, x_ctx, y_ctx, x_query, n_features, cfg):
    from causaljax.tfm.model import predict_logits

    return predict_logits(params, cfg, x_ctx, y_ctx, x_query, n_features)


_row_token_logits = jax.jit(_row_token_logits_impl, static_argnums=(4, 5))


def shipped(checkpoint="default") -> TFM:
    """The row-token model with the weights shipped in ``causaljax/tfm/weights``."""
    from causaljax.tfm.checkpoint import load_weights

    params, cfg, _ = load_weights(checkpoint)
    return row_token(cfg, params)


# --------------------------------------------------------------------------------------------
# the ports: TabICL, TabPFN v2, Mitra


def _port(kind: str, name: str, config, params, handles_missing: bool = False) -> TFM:
    """The port ``causaljax.tfm.<kind>`` as a TFM; ``config``: its config object, a config
    dict, or None (the module's defaults)."""
    import importlib

    module = importlib.import_module(f"causaljax.tfm.{kind}")
    config_cls = {"tabicl": "TabICLConfig", "tabpfn": "TabPFNConfig", "mitra": "MitraConfig"}
    cls = getattr(module, config_cls[kind])
    cfg = cls() if config is None else (cls.from_dict(config) if isinstance(config, dict)
                                         else config)
    lim = module.limits(cfg)

    def apply_fn(params, x_ctx, y_ctx, x_query, n_classes):
        return module.apply(cfg, params, x_ctx, y_ctx, x_query, n_classes=n_classes)

    return TFM(name, Limits(lim.max_features, lim.max_classes, lim.max_context_rows),
               lambda key: module.init(cfg, key), apply_fn, params, handles_missing)


def tabicl(config=None, params=None) -> TFM:
    return _port("tabicl", "TabICL", config, params)


def tabicl_from_checkpoint(path_or_state_dict, config=None) -> TFM:
    """TabICL with the weights of a tabicl checkpoint (read without executing code)."""
    from causaljax.tfm import tabicl as tj

    return tabicl(*tj.read_tabicl(path_or_state_dict, config))


def tabpfn(config=None, params=None) -> TFM:
    return _port("tabpfn", "TabPFN v2", config, params, handles_missing=True)


def tabpfn_from_checkpoint(path_or_state_dict, config=None) -> TFM:
    """TabPFN v2 with the weights of a tabpfn checkpoint (read without executing code)."""
    from causaljax.tfm import tabpfn as tp

    return tabpfn(*tp.read_tabpfn(path_or_state_dict, config))


def mitra(config=None, params=None) -> TFM:
    return _port("mitra", "Mitra", config, params)


def mitra_from_checkpoint(src, config=None) -> TFM:
    """Mitra with the weights of a checkpoint folder (config.json + model.safetensors) or
    file (read without executing code)."""
    from causaljax.tfm import mitra as mj

    return mitra(*mj.read_mitra(src, config))


# --------------------------------------------------------------------------------------------


def from_checkpoint(kind: str, path) -> TFM:
    """The port ``kind`` ('tabicl' | 'tabpfn' | 'mitra') with the weights at ``path``; a
    ValueError saying which file is expected, and where it is published, if it is missing."""
    from causaljax.tfm.batch_model import PORTS, check_checkpoint_path

    if kind not in PORTS:
        raise ValueError(f"unknown ported model {kind!r}; known: {PORTS}")
    path = check_checkpoint_path(kind, path)
    return {"tabicl": tabicl_from_checkpoint, "tabpfn": tabpfn_from_checkpoint,
            "mitra": mitra_from_checkpoint}[kind](path)


__all__ = ["TFM", "Limits", "check_limits", "from_checkpoint", "mitra", "mitra_from_checkpoint", "row_token",
           "shipped", "tabicl", "tabicl_from_checkpoint", "tabpfn", "tabpfn_from_checkpoint"]
