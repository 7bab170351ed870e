"""Tabular data: the `Table` encoding, the public benchmark suite and low-data splits."""

from causaljax.data.splits import Split, low_data_splits
from causaljax.data.suite import domain, load, load_frame, names, suite, target
from causaljax.data.table import Column, Table

__all__ = ["Column", "Split", "Table", "domain", "load", "load_frame", "low_data_splits", "names",
           "suite", "target"]
