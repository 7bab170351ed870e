"""Decoding sampled rows to pandas and streaming them to Parquet."""

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scm_factory import mixed_table as _table
from scm_factory import scm_for_table as _scm_for

from causaljax import sampler


def test_to_pandas_restores_names_dtypes_and_labels():
    df, table = _table()
    rows = sampler.sample(_scm_for(table), jax.random.key(0), 300)
    out = sampler.to_pandas(rows, table)
    assert list(out.columns) == list(df.columns)
    assert len(out) == 600  # k = 2 SCMs flattened
    assert (out.dtypes == df.dtypes).all(), (out.dtypes, df.dtypes)
    assert set(out["city"]) <= {"Oslo", "Lima", "Pune"}
    assert set(out["label"]) <= {"good", "bad"}
    assert not out.isna().any().any()


def test_write_parquet_in_chunks(tmp_path):
    df, table = _table()
    path = tmp_path / "rows.parquet"
    n = sampler.write(_scm_for(table, k=3), table, path, 10_001, chunk_rows=1_000,
                      key=jax.random.key(1))
    assert n == 10_001
    back = pq.read_table(path).to_pandas()
    assert len(back) == 10_001 and list(back.columns) == list(df.columns)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1  # written chunk by chunk
    assert set(back["label"]) <= {"good", "bad"}


def test_to_arrow_equals_to_pandas_values():
    df, table = _table()
    rows = sampler.sample(_scm_for(table), jax.random.key(2), 100)
    want = sampler.to_pandas(rows, table)
    got = sampler.to_arrow(rows, table).to_pandas()
    assert list(got.columns) == list(want.columns)
    for name in want.columns:
        if isinstance(got[name].dtype, pd.CategoricalDtype):  # dictionary-encoded labels
            assert list(got[name].cat.categories) == list(table.columns[table.names.index(name)].levels)
            np.testing.assert_array_equal(got[name].astype(object).to_numpy(),
                                          want[name].astype(object).to_numpy())
        else:
            assert got[name].dtype == want[name].dtype, name
            np.testing.assert_array_equal(got[name].to_numpy(), want[name].to_numpy())
