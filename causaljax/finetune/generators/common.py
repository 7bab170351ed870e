"""Helpers shared by generators: make arbitrary rows valid rows of a Table."""

from __future__ import annotations

import numpy as np


def valid_rows(train, rows_nxd) -> np.ndarray:
    """f32[n, d] rows in the Table's encoded space: NaN -> column median of ``train``,
    categorical columns rounded and clipped to their level codes, integer columns rounded."""
    rows = np.array(rows_nxd, np.float64, copy=True)
    med = np.median(train.values, axis=0)
    bad = ~np.isfinite(rows)
    rows[bad] = np.broadcast_to(med, rows.shape)[bad]
    for j, col in enumerate(train.columns):
        if col.n_levels:
            rows[:, j] = np.clip(np.round(rows[:, j]), 0, col.n_levels - 1)
        elif col.is_integer:
            rows[:, j] = np.round(rows[:, j])
    return rows.astype(np.float32)


def class_counts(y_n, n_rows: int, n_classes: int) -> np.ndarray:
    """n_rows split over classes in proportion to their frequency in y (largest remainder);
    absent classes get none."""
    freq = np.bincount(y_n, minlength=n_classes).astype(np.float64)
    exact = n_rows * freq / freq.sum()
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[: n_rows - counts.sum()]] += 1
    return counts


def numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key."""
    import jax

    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
