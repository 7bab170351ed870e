"""Shipped TFM weights: a flax msgpack file plus a JSON sidecar.

``<name>.msgpack``  flax.serialization bytes of the parameter pytree (f32)
``<name>.json``     {"format": 1, "config": ModelConfig fields, "sha256": of the msgpack bytes,
                     "n_params", "train_steps", "wall_time_s", "device", ...}

``load_weights`` verifies the checksum, the config and every parameter shape against a fresh
model built from the config, and raises ``CheckpointError`` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from causaljax.tfm.model import ModelConfig, init_params, n_params

FORMAT = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not match its model."""


def resolve(checkpoint: str | os.PathLike) -> Path:
    """'default' (or another shipped name) -> the package file; else a path to a .msgpack."""
    p = Path(checkpoint)
    if p.suffix != ".msgpack":
        shipped = WEIGHTS_DIR / f"{checkpoint}.msgpack"
        p = shipped if shipped.exists() or not p.exists() else p
    return p


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_weights(params, cfg: ModelConfig, path: str | os.PathLike, **meta) -> dict:
    """Write ``path`` (.msgpack) and its .json sidecar; returns the sidecar dict."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(params))
    data = serialization.to_bytes(params)
    sidecar = dict(format=FORMAT, config=cfg.to_dict(), sha256=sha256_bytes(data),
                   n_params=n_params(params), size_bytes=len(data), **meta)
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def load_weights(checkpoint: str | os.PathLike = "default"):
    """-> (params, ModelConfig, sidecar dict); raises CheckpointError with a clear message."""
    path = resolve(checkpoint)
    side = path.with_suffix(".json")
    if not path.exists():
        raise CheckpointError(f"TFM checkpoint {str(checkpoint)!r} not found (looked for {path})")
    if not side.exists():
        raise CheckpointError(f"TFM checkpoint {path} has no JSON sidecar {side.name}")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"TFM checkpoint sidecar {side} is not valid JSON: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"TFM checkpoint {path}: format {meta.get('format')!r}, "
                              f"this version reads format {FORMAT}")
    data = path.read_bytes()
    if sha256_bytes(data) != meta.get("sha256"):
        raise CheckpointError(f"TFM checkpoint {path} is corrupt: its sha256 does not match the "
                              f"checksum in {side.name} (re-export or re-install the weights)")
    try:
        cfg = ModelConfig(**meta["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"TFM checkpoint {path}: bad model config in {side.name}: {e}") from e
    template = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))  # shapes only
    try:
        raw = serialization.msgpack_restore(data)
    except Exception as e:
        raise CheckpointError(f"TFM checkpoint {path} could not be decoded: {e}") from e
    want = serialization.to_state_dict(template)
    _check_tree(want, raw, path)
    params = jax.tree.map(jnp.asarray, serialization.from_state_dict(template, raw))
    return params, cfg, meta


def _check_tree(want, got, path, prefix=""):
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(want) != set(got):
            missing = sorted(set(want) - set(got or {}))
            extra = sorted(set(got or {}) - set(want)) if isinstance(got, dict) else []
            raise CheckpointError(f"TFM checkpoint {path} does not match its config at "
                                  f"'{prefix or '/'}': missing {missing}, unexpected {extra}")
        for k in want:
            _check_tree(want[k], got[k], path, f"{prefix}/{k}")
        return
    if tuple(want.shape) != np.shape(got):
        raise CheckpointError(f"TFM checkpoint {path} does not match its config: parameter "
                              f"{prefix} has shape {np.shape(got)}, the model expects "
                              f"{tuple(want.shape)}")
