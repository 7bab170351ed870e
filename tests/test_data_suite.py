"""The public suite loads offline with the listed sizes."""

import socket

import numpy as np
import pandas as pd
import pytest

from causaljax.data import Table, load, load_frame, names, suite

# (rows, features, classes) as published for each dataset, typed in independently of the csv.
EXPECTED = {
    "breast_cancer": (569, 30, 2),
    "wine": (178, 13, 3),
    "iris": (150, 4, 3),
    "digits": (1797, 64, 10),
    "penguins": (344, 7, 3),
    "anes96": (944, 9, 2),
    "fair": (6366, 8, 2),
    "credit_g": (1000, 20, 2),
    "breast_w": (699, 9, 2),
    "pima": (532, 7, 2),
    "glass": (214, 9, 6),
    "birthwt": (189, 8, 2),
    "spam7": (4601, 6, 2),
    "churn": (5000, 19, 2),
    "credit_data": (4454, 13, 2),
    "hpc": (4331, 7, 4),
    "cells": (2019, 56, 2),
    "credit_card": (1319, 9, 2),
    "swiss_labor": (872, 6, 2),
    "titanic": (1309, 3, 2),
    "wells": (3020, 4, 2),
    "smarket": (1250, 7, 2),
    "contraception": (1934, 4, 2),
    "hepatic_qsar": (281, 376, 3),
    "leaf_flavia": (1907, 58, 32),
}


def test_no_network_fixture_blocks_connections(no_network):
    with pytest.raises(RuntimeError, match="network access is blocked"):
        socket.create_connection(("example.com", 80), timeout=1)
    with socket.socket() as s, pytest.raises(RuntimeError, match="network access is blocked"):
        s.connect(("127.0.0.1", 9))


def test_suite_listing():
    s = suite()
    assert list(s.columns) == ["name", "rows", "features", "classes", "source", "domain", "half"]
    assert set(s.domain) == {"health", "finance", "social", "science", "technology"}
    assert names() == s["name"].tolist()
    assert set(names()) == set(EXPECTED)
    got = {r.name: (r.rows, r.features, r.classes) for r in s.itertuples()}
    assert got == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_loads_offline_with_listed_sizes(name, no_network):
    t = load(name)
    rows, features, classes = EXPECTED[name]
    assert isinstance(t, Table)
    assert (t.n_rows, t.n_cols - 1, len(t.columns[t.target_index].levels)) == (
        rows,
        features,
        classes,
    )
    assert np.bincount(t.y).min() > 0 and t.y.max() == classes - 1  # every class has rows
    assert t.X.shape == (rows, features) and np.isfinite(t.values).all()
    frame = load_frame(name)
    assert "rownames" not in frame.columns
    # the table decodes back to the prepared frame (floats at float32 precision)
    floats = frame.select_dtypes("float").columns
    expected = frame.astype({c: np.float32 for c in floats}).astype(
        {c: frame[c].dtype for c in floats}
    )
    pd.testing.assert_frame_equal(t.to_pandas(), expected, check_column_type=False)


def test_dataset_specific_preparation(no_network):
    fair = load("fair")
    assert fair.target == "affairs>0" and "affairs" not in fair.names
    assert fair.columns[fair.target_index].levels == (False, True)
    raw = load_frame("fair")
    assert raw["affairs>0"].dtype == bool
    assert load("pima").n_rows == 200 + 332  # Pima.tr + Pima.te
    assert "ID" not in load("breast_w").names and "bwt" not in load("birthwt").names
    assert not {"share", "expenditure"} & set(load("credit_card").names)
    titanic = load("titanic")
    assert titanic.missing[:, titanic.names.index("age")].sum() == 263
    penguins = load("penguins")
    assert dict(zip(penguins.names, penguins.missing.sum(0))) == {
        "species": 0,
        "island": 0,
        "bill_length_mm": 2,
        "bill_depth_mm": 2,
        "flipper_length_mm": 2,
        "body_mass_g": 2,
        "sex": 11,
        "year": 0,
    }
    credit = load("credit_g")
    assert credit.is_categorical[credit.feature_indices].sum() == 13


def test_load_returns_independent_copies():
    frame = load_frame("iris")
    frame.iloc[0, 0] = 99.0
    assert load_frame("iris").iloc[0, 0] != 99.0
    t = load("iris")
    t.values[0, 0] = 99.0
    assert load("iris").values[0, 0] != 99.0


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*breast_cancer.*leaf_flavia"):
        load("mnist")


def test_dev_and_test_halves_follow_the_committed_rule():
    spec = suite()
    dev, test = names(half="dev"), names(half="test")
    assert set(dev) | set(test) == set(spec.name) and not set(dev) & set(test)
    # the rule of causaljax.data.suite's docstring, recomputed independently
    expected = {}
    for k, (_, group) in enumerate(sorted(spec.groupby("domain"), key=lambda t: t[0])):
        for j, name in enumerate(group.sort_values("rows", ascending=False).name):
            expected[name] = ("dev", "test")[(j + k) % 2]
    assert dict(zip(spec.name, spec.half)) == expected
    for _, group in spec.groupby("domain"):  # balanced by domain ...
        assert abs((group.half == "dev").sum() - (group.half == "test").sum()) <= 1
    rows = spec.set_index("name").rows  # ... and by size
    assert 0.5 < rows[dev].median() / rows[test].median() < 2
    with pytest.raises(ValueError, match="half"):
        names(half="validation")
    with pytest.raises(ValueError, match="half"):
        names("regression", half="dev")
