"""Low-data train / validation / test splits, stratified on the target.

Each fold is an independent stratified draw (repeated random sub-sampling): folds
may share rows with each other, but within a fold train, val and test are disjoint
and together cover every row. Fold f depends only on (seed, f), so adding folds
leaves the earlier ones unchanged.

Train takes every class (at least one row each) and otherwise follows the class
proportions; val follows the proportions of the rows left; test is the rest and
keeps at least one row of every class.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from causaljax.data.table import Table

MIN_TRAIN, MAX_TRAIN = 32, 1024


class Split(NamedTuple):
    train: np.ndarray  # int64[n_train], sorted row indices
    val: np.ndarray  # int64[n_val]
    test: np.ndarray  # int64[n_rows - n_train - n_val]


def low_data_splits(table: Table, n_train: int, n_val: int, n_folds: int, seed: int) -> list[Split]:
    """`n_folds` stratified splits of `table` with n_train train and n_val val rows."""
    _check_int("n_train", n_train, MIN_TRAIN, MAX_TRAIN)
    _check_int("n_val", n_val, 0, None)
    _check_int("n_folds", n_folds, 1, None)
    _check_int("seed", seed, 0, None)
    y = table.y  # int64[n]
    levels = table.columns[table.target_index].levels
    counts = np.bincount(y, minlength=len(levels))  # int[K]
    present = np.flatnonzero(counts)  # classes with rows
    if n_train + n_val >= table.n_rows:
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} leaves no test rows ({table.n_rows} rows)"
        )
    for k in present:
        if counts[k] < 2:
            raise ValueError(
                f"class {levels[k]!r} of target {table.target!r} has {counts[k]} row; "
                "need at least 2 (one for train, one held out)"
            )
    if n_train < len(present):
        raise ValueError(f"n_train = {n_train} is below the {len(present)} classes")
    if n_train + n_val > table.n_rows - len(present):
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} leaves fewer test rows than the "
            f"{len(present)} classes ({table.n_rows} rows)"
        )
    by_class = [np.flatnonzero(y == k) for k in range(len(levels))]
    n_train_k = _allocate(counts, n_train, lo=np.minimum(counts, 1), hi=np.maximum(counts - 1, 0))
    rest = counts - n_train_k
    n_val_k = _allocate(rest, n_val, lo=np.zeros_like(rest), hi=np.maximum(rest - 1, 0))
    return [
        _draw(by_class, n_train_k, n_val_k, np.random.default_rng([seed, fold]))
        for fold in range(n_folds)
    ]


def _draw(by_class, n_train_k, n_val_k, rng) -> Split:
    train, val, test = [], [], []
    for rows, a, b in zip(by_class, n_train_k, n_val_k):
        rows = rng.permutation(rows)
        train.append(rows[:a])
        val.append(rows[a : a + b])
        test.append(rows[a + b :])
    return Split(*(np.sort(np.concatenate(p)).astype(np.int64) for p in (train, val, test)))


def _allocate(counts: np.ndarray, total: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integers q with sum(q) = total, lo <= q <= hi, closest to total * counts / sum(counts)."""
    ideal = total * counts / counts.sum()
    q = np.clip(np.floor(ideal), lo, hi).astype(np.int64)
    while q.sum() < total:  # give a row to the class furthest below its ideal share
        gap = np.where(q < hi, ideal - q, -np.inf)
        q[np.argmax(gap)] += 1
    while q.sum() > total:  # take a row from the class furthest above it
        gap = np.where(q > lo, q - ideal, -np.inf)
        q[np.argmax(gap)] -= 1
    return q


def _check_int(name: str, value, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} = {value} is out of range; expected {bound}")
