"""Table encoding: hand-checked values, round trips and bad input."""

import collections
import datetime
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from causaljax.data import Column, Table


def small_frame():
    return pd.DataFrame(
        {
            "x": [1.5, np.nan, 4.0, 0.5],  # median of (0.5, 1.5, 4.0) = 1.5
            "k": [3.0, 7.0, np.nan, 4.0],  # integer-valued: median 4
            "m": [1.0, 2.0, np.nan, np.nan],  # integer-valued: median 1.5 -> rounds to 2
            "c": ["b", None, "a", "b"],  # levels (a, b); mode b
            "g": pd.Categorical(["lo", "hi", None, "hi"], categories=["lo", "mid", "hi"]),
            "flag": [True, False, True, True],
            "y": [1, 0, 1, 1],
        }
    )


def test_small_frame_encoding():
    t = Table.from_pandas(small_frame(), target="y")
    assert t.names == ["x", "k", "m", "c", "g", "flag", "y"]
    assert (t.target, t.target_index, t.n_rows, t.n_cols) == ("y", 6, 4, 7)
    expected = np.array(
        [
            [1.5, 3.0, 1.0, 1.0, 0.0, 1.0, 1.0],
            [1.5, 7.0, 2.0, 1.0, 2.0, 0.0, 0.0],
            [4.0, 4.0, 2.0, 0.0, 2.0, 1.0, 1.0],
            [0.5, 4.0, 2.0, 1.0, 2.0, 1.0, 1.0],
        ],
        dtype=np.float32,
    )  # g: codes lo=0, mid=1, hi=2; missing g -> mode hi
    np.testing.assert_array_equal(t.values, expected)
    assert t.values.dtype == np.float32
    np.testing.assert_array_equal(
        t.missing,
        [
            [0, 0, 0, 0, 0, 0, 0],
            [1, 0, 0, 1, 0, 0, 0],
            [0, 1, 1, 0, 1, 0, 0],
            [0, 0, 1, 0, 0, 0, 0],
        ],
    )
    assert [c.kind for c in t.columns] == ["numeric"] * 3 + ["categorical"] * 4
    assert [c.is_integer for c in t.columns] == [False, True, True, False, False, False, False]
    assert t.columns[3].levels == ("a", "b")
    assert t.columns[4].levels == ("lo", "mid", "hi")
    assert t.columns[5].levels == (False, True)
    assert t.columns[6].levels == (0, 1)
    np.testing.assert_array_equal(t.n_levels, [0, 0, 0, 2, 3, 2, 2])
    assert t.n_levels.dtype == np.int32
    np.testing.assert_array_equal(t.is_categorical, [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(t.feature_indices, [0, 1, 2, 3, 4, 5])
    assert t.feature_indices.dtype == np.int64
    np.testing.assert_array_equal(t.X, expected[:, :6])
    np.testing.assert_array_equal(t.y, [1, 0, 1, 1])
    assert t.y.dtype == np.int64


def test_to_pandas_restores_nan_or_imputed_values():
    df = small_frame()
    t = Table.from_pandas(df, target="y")
    pd.testing.assert_frame_equal(t.to_pandas(), df)
    filled = t.to_pandas(restore_missing=False)
    assert filled.loc[1, "x"] == 1.5 and filled.loc[2, "k"] == 4.0 and filled.loc[3, "m"] == 2.0
    assert filled.loc[1, "c"] == "b" and filled.loc[2, "g"] == "hi"
    assert not filled.isna().any().any()


def test_target_first_column_and_middle_position():
    df = small_frame()[["y", "x", "c"]]
    t = Table.from_pandas(df, target="y")
    assert t.target_index == 0
    np.testing.assert_array_equal(t.feature_indices, [1, 2])
    np.testing.assert_array_equal(t.X[:, 0], [1.5, 1.5, 4.0, 0.5])


def test_take_selects_rows():
    t = Table.from_pandas(small_frame(), target="y")
    sub = t.take([3, 0])
    np.testing.assert_array_equal(sub.values, t.values[[3, 0]])
    np.testing.assert_array_equal(sub.missing, t.missing[[3, 0]])
    assert sub.columns == t.columns and sub.target == "y"
    assert sub.to_pandas()["c"].tolist() == ["b", "b"]


def test_missing_target_rows_dropped_with_warning():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", None, "b", "a"]})
    with pytest.warns(UserWarning, match="dropped 1 rows with a missing target 'y'"):
        t = Table.from_pandas(df, target="y")
    np.testing.assert_array_equal(t.values[:, 0], [1.0, 3.0, 4.0])
    np.testing.assert_array_equal(t.y, [0, 1, 0])


def test_float_target_with_integer_values_and_unused_target_category():
    df = pd.DataFrame({"x": [1, 2, 3], "y": [1.0, 0.0, 1.0]})
    t = Table.from_pandas(df, target="y")
    assert t.columns[1].levels == (0.0, 1.0) and t.columns[1].kind == "categorical"
    pd.testing.assert_frame_equal(t.to_pandas(), df)
    df = pd.DataFrame(
        {"x": [1, 2, 3], "y": pd.Categorical(["a", "c", "a"], categories=list("abc"))}
    )
    assert Table.from_pandas(df, target="y").columns[1].levels == ("a", "c")


def test_forced_categorical_and_ordered_category_round_trip():
    df = pd.DataFrame(
        {
            "race": [3, 1, 2, 1],
            "size": pd.Categorical(["s", "l", "m", "s"], categories=["s", "m", "l"], ordered=True),
            "y": ["u", "v", "u", "v"],
        }
    )
    t = Table.from_pandas(df, target="y", categorical=["race"])
    assert t.columns[0].kind == "categorical" and t.columns[0].levels == (1, 2, 3)
    np.testing.assert_array_equal(t.values[:, 0], [2, 0, 1, 0])
    assert t.columns[1].ordered
    pd.testing.assert_frame_equal(t.to_pandas(), df)


def test_float32_precision_and_large_integers():
    df = pd.DataFrame({"x": [0.1, 0.2, 0.3], "y": [0, 1, 0]})
    out = Table.from_pandas(df, target="y").to_pandas()
    np.testing.assert_array_equal(out["x"], np.float32([0.1, 0.2, 0.3]).astype(np.float64))
    big = pd.DataFrame({"x": [2**24 + 1, 0, 1], "y": [0, 1, 0]})
    with pytest.warns(UserWarning, match="column 'x'.*2\\*\\*24"):
        Table.from_pandas(big, target="y")


def test_constant_column_is_allowed_silently():
    df = pd.DataFrame({"x": [5.0, 5.0, 5.0], "s": ["q", "q", "q"], "y": [0, 1, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Table.from_pandas(df, target="y")
    np.testing.assert_array_equal(t.values[:, :2], [[5, 0], [5, 0], [5, 0]])


def test_decoding_rounds_and_clips_codes():
    t = Table.from_pandas(small_frame(), target="y")
    values = t.values.copy()
    values[:, 3] = [-0.7, 0.4, 0.6, 5.0]  # c: levels (a, b)
    values[:, 1] = [2.6, 3.2, 4.0, 5.5]  # k: float64 column keeps the raw value
    out = Table(values, np.zeros_like(t.missing), t.columns, "y").to_pandas()
    assert out["c"].tolist() == ["a", "a", "b", "b"]
    np.testing.assert_allclose(out["k"], [2.6, 3.2, 4.0, 5.5], rtol=1e-6)


@pytest.mark.parametrize(
    "df, target, error, match",
    [
        (pd.DataFrame({"x": [1.0, 2.0]}), "y", ValueError, "target column 'y' not in the frame"),
        (pd.DataFrame({"x": [1.0, 2.0], "y": [1, 1]}), "y", ValueError, "'y' has a single class"),
        (pd.DataFrame({"x": [], "y": []}), "y", ValueError, "empty frame"),
        (pd.DataFrame(index=range(3)), "y", ValueError, "empty frame"),
        (
            pd.DataFrame([[1, 2, 0], [3, 4, 1]], columns=["a", "a", "y"]),
            "y",
            ValueError,
            "duplicate column names: \\['a'\\]",
        ),
        (
            pd.DataFrame({"x": [np.nan, np.nan], "y": [0, 1]}),
            "y",
            ValueError,
            "column 'x' is entirely missing",
        ),
        (
            pd.DataFrame({"s": [None, None], "y": [0, 1]}, dtype=object),
            "y",
            ValueError,
            "column 's' is entirely missing",
        ),
        (
            pd.DataFrame({"x": [1.0, np.inf], "y": [0, 1]}),
            "y",
            ValueError,
            "column 'x' contains inf",
        ),
        (
            pd.DataFrame({"x": [-np.inf, 1.0], "y": [0, 1]}),
            "y",
            ValueError,
            "column 'x' contains inf",
        ),
        (
            pd.DataFrame({"d": pd.to_datetime(["2020-01-01", "2021-01-01"]), "y": [0, 1]}),
            "y",
            TypeError,
            "column 'd': unsupported dtype",
        ),
        (
            pd.DataFrame({"d": pd.to_timedelta([1, 2], unit="s"), "y": [0, 1]}),
            "y",
            TypeError,
            "column 'd': unsupported dtype",
        ),
        (pd.DataFrame({"z": [1 + 2j, 3j], "y": [0, 1]}), "y", TypeError, "column 'z'"),
        (
            pd.DataFrame({"l": [[1, 2], [3]], "y": [0, 1]}),
            "y",
            TypeError,
            "column 'l': unsupported value of type list",
        ),
        (
            pd.DataFrame({"o": [{"a": 1}, {"b": 2}], "y": [0, 1]}),
            "y",
            TypeError,
            "column 'o': unsupported value of type dict",
        ),
        (
            pd.DataFrame({"o": [datetime.date(2020, 1, 1)] * 2, "y": [0, 1]}),
            "y",
            TypeError,
            "column 'o': unsupported value of type date",
        ),
        (pd.DataFrame({0: [1.0, 2.0], "y": [0, 1]}), "y", TypeError, "column names must be str"),
        (
            pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, 1.0]}),
            "y",
            ValueError,
            "target 'y' has non-integer values",
        ),
        (
            pd.DataFrame({"x": [1.0, 2.0], "y": [None, None]}, dtype=object),
            "y",
            ValueError,
            "no rows with an observed target 'y'",
        ),
    ],
)
def test_bad_input_names_the_column(df, target, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            Table.from_pandas(df, target=target)


def test_not_a_frame_and_bad_table_shapes():
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        Table.from_pandas(np.zeros((3, 2)), target="y")
    col = Column("y", "categorical", (0, 1), "int64")
    with pytest.raises(ValueError, match="must be equal 2-D"):
        Table(np.zeros((3, 1)), np.zeros((2, 1), bool), (col,), "y")
    with pytest.raises(ValueError, match="2 columns for 1"):
        Table(np.zeros((3, 1)), np.zeros((3, 1), bool), (col, col), "y")
    with pytest.raises(ValueError, match="target 'z'"):
        Table(np.zeros((3, 1)), np.zeros((3, 1), bool), (col,), "z")


# ----- property: round trip over mixed frames --------------------------------------------
KINDS = ["float", "int", "Int64", "bool", "str", "object", "category"]
LABELS = ["a", "b", "c", "d"]


@st.composite
def column(draw, kind, n):
    """A Series of length n of the given kind, with missing cells where allowed."""
    can_miss = kind not in ("int", "bool")
    miss = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if can_miss else [False] * n
    miss[draw(st.integers(0, n - 1))] = False  # at least one observed cell
    if kind == "float":
        vals = draw(
            st.lists(
                st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=n, max_size=n
            )
        )
        return pd.Series([np.nan if m else v for v, m in zip(vals, miss)], dtype="float64")
    if kind in ("int", "Int64"):
        vals = draw(st.lists(st.integers(-(2**24), 2**24), min_size=n, max_size=n))
        return pd.Series(
            [None if m else v for v, m in zip(vals, miss)],
            dtype=kind.lower() if kind == "int" else "Int64",
        )
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    labels = st.sampled_from(LABELS)
    if kind == "object":
        labels = st.one_of(labels, st.integers(-3, 3))
    vals = [None if m else v for v, m in zip(draw(st.lists(labels, min_size=n, max_size=n)), miss)]
    if kind == "str":
        return pd.Series(vals, dtype="str")
    if kind == "object":  # missing object cells come back as NaN, not None
        return pd.Series([np.nan if m else v for v, m in zip(vals, miss)], dtype=object)
    return pd.Series(pd.Categorical(vals, categories=LABELS, ordered=draw(st.booleans())))


@st.composite
def frames(draw):
    n = draw(st.integers(2, 12))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
    data = {f"{kind}_{j}": draw(column(kind, n)) for j, kind in enumerate(kinds)}
    y = draw(
        st.lists(st.sampled_from(["no", "yes", "maybe"]), min_size=n, max_size=n).filter(
            lambda v: len(set(v)) >= 2
        )
    )
    data["target"] = pd.Series(y, dtype="str")
    position = draw(st.integers(0, len(kinds)))  # target anywhere
    names = list(data)[:-1]
    names.insert(position, "target")
    return pd.DataFrame(data)[names]


@settings(max_examples=50, deadline=None)
@given(frames())
def test_round_trip_property(df):
    t = Table.from_pandas(df, target="target")
    pd.testing.assert_frame_equal(t.to_pandas(), df)  # names, order, dtypes, labels, NaN
    np.testing.assert_array_equal(t.missing, df.isna().to_numpy())
    assert np.isfinite(t.values).all() and t.values.dtype == np.float32
    for j, name in enumerate(df.columns):
        observed, gaps = df[name].dropna(), t.missing[:, j]
        col = t.columns[j]
        if col.kind == "categorical":
            assert np.all(t.values[:, j] == np.round(t.values[:, j]))
            assert 0 <= t.values[:, j].min() and t.values[:, j].max() < col.n_levels
            counts = collections.Counter(observed.tolist())
            top = max(counts.values())
            for label in t.to_pandas(restore_missing=False)[name][gaps]:
                assert counts[label] == top  # imputed with a most frequent label
        elif gaps.any():
            fill = t.values[gaps, j]
            assert np.all(fill == fill[0])
            assert observed.min() <= fill[0] <= observed.max()
            lower = np.sum(observed.to_numpy(float) <= fill[0])
            assert 2 * lower >= len(observed)  # the fill is at or above half of the rows


def test_round_trip_of_a_table_subset_keeps_labels():
    df = pd.DataFrame({"c": ["x", "y", "z", "x"], "y": [0, 1, 0, 1]})
    t = Table.from_pandas(df, target="y").take([0, 3])
    pd.testing.assert_frame_equal(t.to_pandas(), df.iloc[[0, 3]].reset_index(drop=True))
