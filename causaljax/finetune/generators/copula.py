"""A simple statistical augmenter (our stand-in for the paper's "TableAugment"): a Gaussian
copula over all columns (target included) with empirical marginals.

Each column's values are mapped to normal scores through their ranks, the correlation of the
scores is estimated, new scores are drawn from that multivariate normal and mapped back
through each column's empirical quantile function (``inverted_cdf``: only observed values come
out, so levels and integer columns stay valid).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

from causaljax.finetune.generators import register
from causaljax.finetune.generators.common import numpy_rng, valid_rows
from causaljax.finetune.sources import PoolSource


def sample_copula(values_nxd, n_rows: int, rng: np.random.Generator, shrink: float = 0.05):
    """n_rows rows f32[n_rows, d] from a Gaussian copula fitted to values_nxd."""
    v = np.asarray(values_nxd, np.float64)
    n, d = v.shape
    scores = norm.ppf(np.column_stack([rankdata(v[:, j]) for j in range(d)]) / (n + 1))
    corr = np.corrcoef(scores, rowvar=False) if n > 1 else np.eye(d)
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
    corr = (1 - shrink) * corr + shrink * np.eye(d)  # keeps it positive definite
    np.fill_diagonal(corr, 1.0)
    z = rng.multivariate_normal(np.zeros(d), corr, size=n_rows, method="eigh")
    u = np.clip(norm.cdf(z), 1e-9, 1 - 1e-9)
    return np.column_stack([np.quantile(v[:, j], u[:, j], method="inverted_cdf")
                            for j in range(d)]).astype(np.float32)


@register("copula")
def make_source(train, *, key, n_rows: int, tfm=None, **options) -> PoolSource:
    rows = sample_copula(train.values, max(int(n_rows), 1), numpy_rng(key), **options)
    return PoolSource(valid_rows(train, rows))
