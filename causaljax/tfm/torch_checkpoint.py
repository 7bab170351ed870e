"""Reading a ported model's checkpoint file without executing code (TabICL, TabPFN v2).

``load_checkpoint(src, name)``: a torch ``.ckpt`` / ``.pt`` file read with
``torch.load(weights_only=True)`` (tensors and plain containers only), a ``.safetensors``
file, or an in-memory mapping; every failure is a ValueError naming the file.
``to_numpy(key, v)``: one state-dict entry as float32 NumPy, or a ValueError naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
