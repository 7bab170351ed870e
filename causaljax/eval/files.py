"""Output files written whole: a reader, or another process writing the same file (two study
shards sharing one ``--out``), never sees half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temp file of this process beside ``path`` (same suffix, so writers
    that infer the format from it work), then rename it onto ``path``: the last rename wins,
    whole. The temp file never outlives the call."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
