"""Reading a ported model's checkpoint file without executing code (TabICL, TabPFN v2, Mitra).

``load_checkpoint(src, name)``: a torch ``.ckpt`` / ``.pt`` file read with
``torch.load(weights_only=True)`` (tensors and plain containers only), a ``.safetensors``
file, or an in-memory mapping; every failure is a ValueError naming the file.
``to_numpy(key, v)``: one state-dict entry as float32 NumPy, or a ValueError naming the key.
``params_from_state(name, state, spec)``: our params pytree from a state dict and a port's
``param_spec`` rows ``(path, key, shape, kind)`` (kind "linear_w": torch's [out, in] weight,
stored transposed), with an error naming the first missing / unexpected / mis-shaped key.
``nested(items)``: ``(path, value)`` pairs as the ports' params pytree (also their ``init``).
``check_table_shapes`` / ``static_n_classes``: the input checks the ports' ``apply`` share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def load_checkpoint(src, name: str) -> Any:
    """A checkpoint path (torch .pt/.ckpt, or .safetensors) or an in-memory mapping;
    ``name`` (e.g. 'TabICL') is the model the errors name."""
    if isinstance(src, dict):
        return src
    if hasattr(src, "keys") and hasattr(src, "__getitem__"):
        return dict(src)
    path = Path(src)
    if not path.is_file():
        raise ValueError(f"{name} checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValueError("reading .safetensors needs the safetensors package") from e
        try:
            return load_file(str(path))
        except Exception as e:
            raise ValueError(f"{name} checkpoint {path} is not a readable safetensors file: "
                             f"{e}") from e
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(f"reading the torch checkpoint {path} needs torch (pip install "
                         "torch==2.13.0)") from e
    try:  # weights_only: unpickles tensors and plain containers only, never executes code
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{name} checkpoint {path} could not be read as a torch checkpoint "
                         f"(weights_only=True): {type(e).__name__}: {e}") from e


def to_numpy(key: str, v) -> np.ndarray:
    if hasattr(v, "detach"):  # torch tensor
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    try:
        a = np.asarray(v)
    except Exception as e:
        raise ValueError(f"state-dict entry {key!r} is not an array ({type(v).__name__})") from e
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"state-dict entry {key!r} has non-numeric dtype {a.dtype}")
    return a.astype(np.float32)


def params_from_state(name: str, state: dict, spec, *, extra_keys=(), note: str = "") -> Any:
    """Params (nested dicts, block stacks as lists) from ``state``; ``extra_keys``: keys the
    state may hold besides the spec's (buffers); ``note`` ends the missing-key message."""
    missing = [k for _, k, _, _ in spec if k not in state]
    if missing:
        raise ValueError(f"{name} state dict is missing key {missing[0]!r}{note}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = sorted(set(state) - {k for _, k, _, _ in spec} - set(extra_keys))
    if unexpected:
        raise ValueError(f"{name} state dict has unexpected key {unexpected[0]!r} for this "
                         "config" + (f" (and {len(unexpected) - 1} more)"
                                     if len(unexpected) > 1 else ""))
    items = []
    for path, key, shape, kind in spec:
        a = to_numpy(key, state[key])
        want = (shape[1], shape[0]) if kind == "linear_w" else tuple(shape)
        if a.shape != want:
            raise ValueError(f"{name} state dict key {key!r} has shape {a.shape}; the config "
                             f"expects {want}")
        if kind == "linear_w":
            a = a.T
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} state dict key {key!r} holds non-finite values")
        items.append((path, jnp.asarray(np.ascontiguousarray(a))))
    return nested(items)


def nested(items) -> Any:
    """``(path, value)`` pairs -> nested dicts, with integer-keyed levels (block stacks) as
    lists."""
    tree: dict = {}
    for path, value in items:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _lists(tree)


def _lists(tree):
    """Dicts keyed 0..n-1 (block stacks) become lists."""
    if isinstance(tree, dict):
        if tree and all(isinstance(k, int) for k in tree):
            return [_lists(tree[i]) for i in range(len(tree))]
        return {k: _lists(v) for k, v in tree.items()}
    return tree


def static_n_classes(y_ctx, n_classes) -> int:
    """``n_classes`` as a static int (default: max(y_ctx) + 1, which needs concrete labels);
    a ValueError when it cannot be known under ``jit`` or is below 1."""
    if n_classes is None:
        if isinstance(y_ctx, jax.core.Tracer):
            raise ValueError("n_classes must be given (a static int) when y_ctx is traced, e.g. "
                             "jax.jit(functools.partial(model.apply, n_classes=C))")
        n_classes = int(np.max(np.asarray(y_ctx))) + 1
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes}: need at least 1 class")
    return n_classes


def check_table_shapes(x_ctx, y_ctx, x_query) -> tuple:
    """(x_ctx's shape, x_query's shape) of a 2-d table with one label per context row and the
    same features in both; else a ValueError saying which shape is wrong."""
    cs, qs = np.shape(x_ctx), np.shape(x_query)
    if len(cs) != 2 or len(qs) != 2:
        raise ValueError(f"x_ctx and x_query must be 2-d [rows, features]; got {cs} and {qs}")
    if cs[1] != qs[1]:
        raise ValueError(f"x_ctx has {cs[1]} features but x_query has {qs[1]}")
    if np.shape(y_ctx) != (cs[0],):
        raise ValueError(f"y_ctx has shape {np.shape(y_ctx)}; expected ({cs[0]},), one label "
                         "per context row")
    return cs, qs
