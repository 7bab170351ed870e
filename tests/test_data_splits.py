"""Low-data splits: sizes, stratification, disjointness, reproducibility, bad input."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from causaljax.data import Split, Table, low_data_splits


def make_table(class_sizes):
    """A table whose target has len(class_sizes) classes with the given row counts."""
    y = np.repeat(np.arange(len(class_sizes)), class_sizes)
    y = np.random.default_rng(0).permutation(y)
    df = pd.DataFrame({"x": np.arange(len(y), dtype=float), "y": [f"c{k:02d}" for k in y]})
    return Table.from_pandas(df, target="y")


def check_split(split, n_rows, n_train, n_val):
    assert isinstance(split, Split)
    assert (len(split.train), len(split.val), len(split.test)) == (
        n_train,
        n_val,
        n_rows - n_train - n_val,
    )
    every = np.concatenate(split)
    np.testing.assert_array_equal(np.sort(every), np.arange(n_rows))  # disjoint, covering
    for part in split:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)


def test_sizes_stratification_and_coverage():
    sizes = [9, 30, 61, 100]  # 200 rows
    t = make_table(sizes)
    splits = low_data_splits(t, n_train=64, n_val=40, n_folds=4, seed=1)
    assert len(splits) == 4
    for s in splits:
        check_split(s, 200, 64, 40)
        train = np.bincount(t.y[s.train], minlength=4)
        val = np.bincount(t.y[s.val], minlength=4)
        # ideal shares 64 * size / 200 = (2.88, 9.6, 19.52, 32); val from the 136 left over
        np.testing.assert_array_equal(train, [3, 10, 19, 32])
        np.testing.assert_array_equal(val, [2, 6, 12, 20])  # 40 * (6, 20, 42, 68) / 136
        assert np.bincount(t.y[s.test], minlength=4).min() > 0


def test_every_class_in_train_even_when_tiny():
    t = make_table([2, 2, 2, 300])
    for s in low_data_splits(t, n_train=32, n_val=0, n_folds=3, seed=0):
        check_split(s, 306, 32, 0)
        np.testing.assert_array_equal(np.bincount(t.y[s.train]), [1, 1, 1, 29])
        np.testing.assert_array_equal(np.bincount(t.y[s.test]), [1, 1, 1, 271])


def test_reproducible_and_varied():
    t = make_table([50, 70, 80])
    a = low_data_splits(t, 32, 16, 3, seed=7)
    b = low_data_splits(t, 32, 16, 5, seed=7)
    for x, y in zip(a, b):  # same seed: same folds, whatever n_folds
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0].train, a[1].train)  # folds differ
    c = low_data_splits(t, 32, 16, 3, seed=8)
    assert not np.array_equal(a[0].train, c[0].train)  # seeds differ


def test_splits_of_a_table_subset_with_an_absent_class():
    t = make_table([40, 40, 40])
    sub = t.take(np.flatnonzero(t.y != 1))  # class c01 keeps its level but has no rows
    for s in low_data_splits(sub, 32, 8, 2, seed=0):
        check_split(s, 80, 32, 8)
        np.testing.assert_array_equal(np.bincount(sub.y[s.train], minlength=3), [16, 0, 16])


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(2, 60), min_size=2, max_size=6),
    n_train=st.integers(32, 100),
    n_val=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)
def test_split_properties(sizes, n_train, n_val, seed):
    t = make_table(sizes)
    n, k = sum(sizes), len(sizes)
    if n_train + n_val > n - k:
        with pytest.raises(ValueError, match="n_train \\+ n_val"):
            low_data_splits(t, n_train, n_val, 2, seed)
        return
    for s in low_data_splits(t, n_train, n_val, 2, seed):
        check_split(s, n, n_train, n_val)
        train = np.bincount(t.y[s.train], minlength=k)
        assert train.min() >= 1 and np.bincount(t.y[s.test], minlength=k).min() >= 1
        ideal = n_train * np.array(sizes) / n
        big = ideal >= 1  # classes not lifted to the one-row minimum stay near their share
        assert np.all(np.abs(train - ideal)[big] < 1 + k)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_train": 31}, ValueError, "n_train = 31 is out of range; expected \\[32, 1024\\]"),
        ({"n_train": 1025}, ValueError, "n_train = 1025 is out of range"),
        ({"n_train": 32.0}, TypeError, "n_train must be an int"),
        ({"n_train": True}, TypeError, "n_train must be an int"),
        ({"n_val": -1}, ValueError, "n_val = -1"),
        ({"n_folds": 0}, ValueError, "n_folds = 0"),
        ({"seed": -3}, ValueError, "seed = -3"),
        ({"n_train": 100, "n_val": 100}, ValueError, "n_train \\+ n_val = 200 leaves no test rows"),
        ({"n_train": 100, "n_val": 99}, ValueError, "leaves fewer test rows than the 3 classes"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    t = make_table([50, 70, 80])
    args = {"n_train": 32, "n_val": 16, "n_folds": 2, "seed": 0} | kwargs
    with pytest.raises(error, match=match):
        low_data_splits(t, **args)


def test_class_with_too_few_rows():
    with pytest.raises(ValueError, match="class 'c01' of target 'y' has 1 row"):
        low_data_splits(make_table([40, 1, 40]), 32, 8, 1, seed=0)


def test_more_classes_than_train_rows():
    with pytest.raises(ValueError, match="n_train = 32 is below the 40 classes"):
        low_data_splits(make_table([3] * 40), 32, 8, 1, seed=0)
