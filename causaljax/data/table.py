"""`Table`: a pandas frame as one float32 matrix plus per-column metadata.

Encoding (see notes/CONTRACTS.md):
  * numeric columns hold their raw value; categorical columns hold a level code 0..L-1.
  * object / str / string / category / bool columns are categorical; the target is
    always categorical (classification only). Other dtypes (datetime, timedelta,
    period, interval, complex) raise TypeError, as do object columns holding anything but
    str / bool / int / float labels (lists, dicts, dates, ...).

Missing-value policy:
  * numeric NaN -> median of the observed values (rounded to an integer when the
    column is integer-valued); categorical NaN -> the most frequent level (ties: the
    lowest code). `missing` keeps the mask, and `to_pandas()` puts NaN back there.
  * `to_pandas()` marks missing cells with the dtype's own NA (NaN, pd.NA, or NaN in
    object columns, where an original None becomes NaN).
  * rows whose target is missing are dropped with a UserWarning.
  * a column with no observed value (all-NaN) raises ValueError: drop it yourself.
  * +-inf in a numeric column raises ValueError. Constant columns are allowed silently.

Precision: values are float32, so float columns come back from `to_pandas()`
rounded to float32; integers with |x| <= 2**24 and all categorical labels are exact
(a UserWarning is raised when an integer column would lose precision).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

NUMERIC, CATEGORICAL = "numeric", "categorical"
_LABEL_TYPES = (str, bool, int, float, np.bool_, np.integer, np.floating)  # allowed in object


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: its kind, level labels (categorical) and original pandas dtype."""

    name: str
    kind: str  # "numeric" | "categorical"
    levels: tuple = ()  # original labels, code i <-> levels[i]; () if numeric
    dtype: str = "float64"  # original pandas dtype, as str(dtype)
    is_integer: bool = False  # numeric column holding only integers
    ordered: bool = False  # an ordered pandas Categorical

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """A table of n rows and d columns (target included), ready for JAX."""

    values: np.ndarray  # f32[n, d]
    missing: np.ndarray  # bool[n, d]
    columns: tuple  # tuple[Column, ...], length d
    target: str

    def __post_init__(self):
        values = np.asarray(self.values, dtype=np.float32)
        missing = np.asarray(self.missing, dtype=bool)
        columns = tuple(self.columns)
        if values.ndim != 2 or missing.shape != values.shape:
            raise ValueError(f"values {values.shape} and missing {missing.shape} must be equal 2-D")
        if len(columns) != values.shape[1]:
            raise ValueError(f"{len(columns)} columns for {values.shape[1]} value columns")
        if self.target not in [c.name for c in columns]:
            raise ValueError(f"target {self.target!r} is not one of the columns")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "missing", missing)
        object.__setattr__(self, "columns", columns)

    # ----- shape and metadata -------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def target_index(self) -> int:
        return self.names.index(self.target)

    @property
    def n_rows(self) -> int:
        return self.values.shape[0]

    @property
    def n_cols(self) -> int:
        return self.values.shape[1]

    @property
    def n_levels(self) -> np.ndarray:  # int32[d], 0 for numeric
        return np.array([c.n_levels for c in self.columns], dtype=np.int32)

    @property
    def is_categorical(self) -> np.ndarray:  # bool[d]
        return np.array([c.kind == CATEGORICAL for c in self.columns], dtype=bool)

    @property
    def feature_indices(self) -> np.ndarray:  # int64[d-1]
        return np.delete(np.arange(self.n_cols, dtype=np.int64), self.target_index)

    @property
    def X(self) -> np.ndarray:  # f32[n, d-1]
        return self.values[:, self.feature_indices]

    @property
    def y(self) -> np.ndarray:  # int64[n], target codes
        return self.values[:, self.target_index].astype(np.int64)

    def take(self, rows) -> Table:
        """The sub-table of the given row indices (or boolean mask)."""
        rows = np.asarray(rows)
        return Table(self.values[rows], self.missing[rows], self.columns, self.target)

    # ----- conversion -----------------------------------------------------------------
    @classmethod
    def from_pandas(
        cls, df: pd.DataFrame, target: str, *, categorical: Sequence[str] = ()
    ) -> Table:
        """Encode `df`; `categorical` names extra numeric columns to treat as categorical."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
        _check_names(df, target, categorical)
        keep = ~df[target].isna().to_numpy()
        if not keep.all():
            warnings.warn(f"dropped {int((~keep).sum())} rows with a missing target {target!r}")
            df = df.loc[keep]
        if len(df) == 0:
            raise ValueError(f"no rows with an observed target {target!r}")
        encoded = [_encode(df[name], name == target, name in categorical) for name in df.columns]
        columns = tuple(col for col, _, _ in encoded)
        values = np.stack([v for _, v, _ in encoded], axis=1)  # f32[n, d]
        missing = np.stack([m for _, _, m in encoded], axis=1)  # bool[n, d]
        if columns[list(df.columns).index(target)].n_levels < 2:
            raise ValueError(f"target {target!r} has a single class; need at least two")
        return cls(values, missing, columns, target)

    def to_pandas(self, *, restore_missing: bool = True) -> pd.DataFrame:
        """Decode to a frame with the original names, order, dtypes and labels.

        Cells that were missing come back as NaN (restore_missing=True) or as their
        imputed value (False). Codes are rounded and clipped to the valid range.
        """
        data = {
            col.name: _decode(col, self.values[:, j], self.missing[:, j] & restore_missing)
            for j, col in enumerate(self.columns)
        }
        return pd.DataFrame(data)


# ----- checks -----------------------------------------------------------------------
def _check_names(df: pd.DataFrame, target: str, categorical: Sequence[str]) -> None:
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"empty frame (shape {df.shape})")
    for name in df.columns:
        if not isinstance(name, str):
            raise TypeError(f"column names must be str; got {name!r} ({type(name).__name__})")
    dup = df.columns[df.columns.duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"duplicate column names: {dup}")
    if target not in df.columns:
        raise ValueError(f"target column {target!r} not in the frame; columns: {list(df.columns)}")
    unknown = [c for c in categorical if c not in df.columns]
    if unknown:
        raise ValueError(f"categorical names not in the frame: {unknown}")


# ----- per-column encoding ------------------------------------------------------------
def _is_categorical_dtype(dtype) -> bool:
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def _encode(s: pd.Series, is_target: bool, force_categorical: bool):
    """-> (Column, f32[n] values, bool[n] missing) for one column."""
    dtype = s.dtype
    if _is_categorical_dtype(dtype):
        return _encode_categorical(s, is_target)
    if not (pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype)):
        raise TypeError(f"column {s.name!r}: unsupported dtype {dtype}")
    if is_target or force_categorical:
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if is_target and not np.all(x[~np.isnan(x)] == np.round(x[~np.isnan(x)])):
            raise ValueError(f"target {s.name!r} has non-integer values; classification only")
        return _encode_categorical(s, is_target)
    return _encode_numeric(s)


def _encode_numeric(s: pd.Series):
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)  # f64[n]
    missing = np.isnan(x)
    if missing.all():
        raise ValueError(f"column {s.name!r} is entirely missing; drop it first")
    if np.isinf(x).any():
        raise ValueError(f"column {s.name!r} contains inf; replace it with a finite value or NaN")
    observed = x[~missing]
    is_integer = bool(np.all(observed == np.round(observed)))
    fill = np.median(observed)
    if is_integer:
        fill = np.floor(fill + 0.5)
        if np.any(observed.astype(np.float32) != observed):
            warnings.warn(f"column {s.name!r}: integers beyond 2**24 lose precision in float32")
    values = np.where(missing, fill, x).astype(np.float32)
    column = Column(str(s.name), NUMERIC, (), str(s.dtype), is_integer)
    return column, values, missing


def _encode_categorical(s: pd.Series, is_target: bool):
    missing = s.isna().to_numpy()
    if missing.all():
        raise ValueError(f"column {s.name!r} is entirely missing; drop it first")
    observed = s[~missing]
    if isinstance(s.dtype, pd.CategoricalDtype):
        levels = list(s.cat.categories)
        if is_target:  # a class must have rows
            present = set(observed)
            levels = [v for v in levels if v in present]
        ordered = bool(s.dtype.ordered)
    else:
        for v in observed:
            if not isinstance(v, _LABEL_TYPES):
                raise TypeError(f"column {s.name!r}: unsupported value of type {type(v).__name__}")
        levels, ordered = _sorted_levels(observed.unique()), False
    index = {v: i for i, v in enumerate(levels)}
    codes = np.array([index[v] for v in observed], dtype=np.int64)
    mode = np.bincount(codes, minlength=len(levels)).argmax()
    values = np.full(len(s), mode, dtype=np.float32)
    values[~missing] = codes
    levels = tuple(v.item() if isinstance(v, np.generic) else v for v in levels)
    column = Column(str(s.name), CATEGORICAL, levels, str(s.dtype), False, ordered)
    return column, values, missing


def _sorted_levels(uniques) -> list:
    try:
        return sorted(uniques)
    except TypeError:  # mixed label types
        return sorted(uniques, key=lambda v: (type(v).__name__, str(v)))


# ----- per-column decoding ------------------------------------------------------------
def _decode(col: Column, x: np.ndarray, missing: np.ndarray) -> pd.Series:
    """f32[n] values -> Series in the column's original dtype; NaN where `missing`."""
    if col.kind == NUMERIC:
        x = x.astype(np.float64)
        dtype = pd.api.types.pandas_dtype(col.dtype)
        if pd.api.types.is_integer_dtype(dtype):
            x = np.round(x)
            if missing.any() and isinstance(dtype, np.dtype):  # numpy ints hold no NaN
                dtype = np.float64
        return pd.Series(np.where(missing, np.nan, x)).astype(dtype)
    codes = np.clip(np.round(x), 0, col.n_levels - 1).astype(np.int64)
    if col.dtype == "category":
        codes = np.where(missing, -1, codes)
        cat = pd.Categorical.from_codes(codes, categories=list(col.levels), ordered=col.ordered)
        return pd.Series(cat)
    labels = np.empty(col.n_levels, dtype=object)
    labels[:] = list(col.levels)
    out = pd.Series(labels[codes], dtype=object)
    if missing.any():
        out[missing] = np.nan
        if col.dtype == "bool":
            return out  # a bool column with NaN stays object
    return out if col.dtype == "object" else out.astype(col.dtype)
