"""Regression targets for the in-context classifier: the numeric target is cut into at most
``MAX_BINS`` quantile bins of the *training* rows, the TFM predicts a distribution over the
bins, and the prediction is its mean, sum_b p_b * center_b (center_b: the mean training target
in bin b). This is TabPFN's "bar distribution" idea with our classifier's ten classes.

``quantile_edges`` -> inner bin edges; ``bin_codes`` -> codes 0..B-1; ``binned_table`` -> a
``Table`` whose target is the codes (so discovery, SCM fitting, the sampler and fine-tuning run
unchanged, the target being a categorical node); ``bin_centers`` / ``expected_value`` / ``mae``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from causaljax.data.table import Table

MAX_BINS = 10  # the TFM's class slots


def quantile_edges(y, n_bins: int = MAX_BINS) -> np.ndarray:
    """Inner edges f64[B - 1] (B <= n_bins) at the quantiles of finite ``y``, such that every
    bin holds at least one value of ``y`` (ties merge bins). ValueError if ``y`` is constant,
    has non-finite values or n_bins < 2."""
    y = np.asarray(y, np.float64)
    if not 2 <= n_bins <= MAX_BINS:
        raise ValueError(f"n_bins must be in 2..{MAX_BINS}, got {n_bins}")
    if y.size == 0 or not np.isfinite(y).all():
        raise ValueError("the regression target needs finite values (no NaN / inf)")
    if np.ptp(y) == 0:
        raise ValueError("the regression target is constant: nothing to predict")
    edges = np.unique(np.quantile(y, np.arange(1, n_bins) / n_bins))
    while True:  # merge empty bins into a neighbour (many ties) until every bin has a value
        counts = np.bincount(bin_codes(y, edges), minlength=len(edges) + 1)
        empty = np.flatnonzero(counts == 0)
        if empty.size == 0:
            return edges
        b = int(empty[0])
        edges = np.delete(edges, min(b, len(edges) - 1))


def bin_codes(y, edges) -> np.ndarray:
    """int64 bin of each value: b with edges[b - 1] <= y < edges[b] (bin 0 below edges[0])."""
    return np.searchsorted(np.asarray(edges), np.asarray(y, np.float64), side="right")


def bin_centers(y, codes, n_bins: int) -> np.ndarray:
    """f64[n_bins]: the mean of ``y`` in each bin (every bin must hold a value)."""
    counts = np.bincount(codes, minlength=n_bins)
    if (counts == 0).any():
        raise ValueError(f"bins {np.flatnonzero(counts == 0).tolist()} hold no value")
    return np.bincount(codes, weights=np.asarray(y, np.float64), minlength=n_bins) / counts


def binned_table(frame: pd.DataFrame, target: str, edges) -> Table:
    """``frame`` as a Table whose target column holds the bin codes (levels 0..B-1) of its
    numeric ``target`` under ``edges``; every bin must be present in ``frame``."""
    y = frame[target].to_numpy(np.float64)
    if not np.isfinite(y).all():
        raise ValueError(f"target {target!r} has missing or infinite values")
    codes = bin_codes(y, edges)
    if len(np.unique(codes)) != len(edges) + 1:
        raise ValueError("some bins hold no row of the frame")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.from_pandas(frame.assign(**{target: codes}), target=target)


def expected_value(proba_nxb, centers_b) -> np.ndarray:
    """The mean prediction f64[n] of bin probabilities (rows renormalized over the B bins)."""
    p = np.asarray(proba_nxb, np.float64)
    return (p / p.sum(axis=1, keepdims=True)) @ np.asarray(centers_b, np.float64)


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))))


def regression_frame(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """``frame`` ready for regression: rows with a missing target dropped (a UserWarning says
    how many), index reset; ValueError if ``target`` is missing, not numeric, not finite or
    constant."""
    if target not in frame.columns:
        raise ValueError(f"target {target!r} is not a column; columns: "
                         f"{', '.join(map(str, frame.columns))}")
    y = frame[target]
    if y.dtype == bool or not pd.api.types.is_numeric_dtype(y):
        raise ValueError(f"target {target!r} is not numeric ({y.dtype}): regression needs a "
                         "number per row")
    keep = y.notna().to_numpy()
    if not keep.all():
        warnings.warn(f"dropped {int((~keep).sum())} rows with a missing target {target!r}")
    frame = frame[keep].reset_index(drop=True)
    quantile_edges(frame[target].to_numpy(np.float64))  # raises on inf / constant targets
    return frame
