"""CTGAN baseline (optional extra: ``pip install -e .[ctgan]``; imported lazily).

Fits ``ctgan.CTGAN`` on the decoded training frame (categorical columns, target included, as
discrete columns) and encodes a pool of sampled rows back to the Table's space.
"""

from __future__ import annotations

import numpy as np

from causaljax.finetune.generators import register
from causaljax.finetune.generators.common import numpy_rng, valid_rows
from causaljax.finetune.sources import PoolSource

INSTALL_HINT = "the ctgan generator needs the optional extra: pip install -e .[ctgan]"


def _import_ctgan():
    try:
        from ctgan import CTGAN
    except ImportError as e:  # torch or ctgan missing
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return CTGAN


def encode_frame(train, df) -> np.ndarray:
    """A decoded frame (train's columns) -> f32[n, d] codes; unseen labels become NaN."""
    out = np.empty((len(df), train.n_cols), np.float64)
    for j, col in enumerate(train.columns):
        s = df[col.name]
        if col.n_levels:
            index = {level: i for i, level in enumerate(col.levels)}
            out[:, j] = [index.get(v, np.nan) for v in s.tolist()]
        else:
            out[:, j] = np.asarray(s, np.float64)
    return out


@register("ctgan")
def make_source(train, *, key, n_rows: int, tfm=None, epochs: int = 100, **options):
    CTGAN = _import_ctgan()
    import torch

    seed = int(numpy_rng(key).integers(2**31 - 1))
    torch.manual_seed(seed)
    df = train.to_pandas(restore_missing=False)
    discrete = [c.name for c in train.columns if c.n_levels]
    for name in discrete:
        df[name] = df[name].astype(str)
    model = CTGAN(epochs=epochs, **options)
    model.fit(df, discrete_columns=discrete)
    fake = model.sample(max(int(n_rows), 1))
    for col in train.columns:
        if col.n_levels:  # back from str to the original labels
            by_str = {str(level): level for level in col.levels}
            fake[col.name] = fake[col.name].map(by_str)
    return PoolSource(valid_rows(train, encode_frame(train, fake)))
