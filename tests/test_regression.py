"""Regression (research question 3): the regression suite loads offline, target binning and
the mean prediction against independent answers, and experiments/regression_volume.py."""

import numpy as np
import pandas as pd
import pytest
from scripts import bad_input_exits_2, load_script
from sklearn.metrics import mean_absolute_error

from causaljax import data
from causaljax.data.regression import (
    bin_centers,
    bin_codes,
    binned_table,
    expected_value,
    mae,
    quantile_edges,
    regression_frame,
)

EXPECTED = {  # name: (rows, features), as listed in regression_suite.csv
    "diabetes": (442, 10), "birthweight": (189, 8), "carseats": (400, 10),
    "sacramento": (932, 6), "housing": (546, 11), "cps1985": (534, 10), "salaries": (397, 5),
    "concrete": (1030, 8), "biomass": (536, 5), "auto_mpg": (392, 7), "cpus": (209, 6)}
TINY = ["--checkpoint", "random-tiny", "--datasets", "cpus", "--n-train", "32", "--steps", "2",
        "--eval-every", "1", "--k-scms", "2", "--n-bootstrap", "2", "--families", "linear",
        "--max-test", "128", "--volumes", "0,1", "--methods", "real,causalmix", "--no-progress"]


def test_regression_suite_listing_and_separation():
    s = data.suite("regression")
    assert {r.name: (r.rows, r.features) for r in s.itertuples()} == EXPECTED
    assert "classes" not in s.columns and set(s.domain) <= {"health", "finance", "social",
                                                            "science", "technology"}
    assert not set(data.names("regression")) & set(data.names())
    with pytest.raises(ValueError, match="regression dataset"):
        data.load("diabetes")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_regression_dataset_loads_offline_with_listed_sizes(name, no_network):
    frame = regression_frame(data.load_frame(name), data.target(name))
    assert (len(frame), frame.shape[1] - 1) == EXPECTED[name]
    assert np.isfinite(frame[data.target(name)].to_numpy(np.float64)).all()


def test_bins_are_quantiles_with_every_bin_filled():
    y = np.random.default_rng(0).normal(size=1000)
    edges = quantile_edges(y, 10)
    np.testing.assert_allclose(edges, np.quantile(y, np.arange(1, 10) / 10))
    np.testing.assert_array_equal(bin_codes(y, edges), np.digitize(y, edges))
    counts = np.bincount(bin_codes(y, edges))
    assert len(counts) == 10 and counts.min() >= 99
    ties = np.array([0.0] * 80 + [1.0] * 15 + [2.0, 3.0, 4.0, 5.0, 6.0])  # heavy ties
    codes = bin_codes(ties, quantile_edges(ties, 10))
    assert np.bincount(codes).min() > 0 and codes.max() >= 1
    for bad in (np.ones(5), np.array([0.0, np.nan, 1.0]), np.array([0.0, np.inf])):
        with pytest.raises(ValueError):
            quantile_edges(bad)


def test_mean_prediction_and_mae_against_sklearn():
    rng = np.random.default_rng(1)
    y = rng.gamma(2.0, size=200)
    edges = quantile_edges(y, 5)
    codes = bin_codes(y, edges)
    centers = bin_centers(y, codes, 5)
    np.testing.assert_allclose(centers, [y[codes == b].mean() for b in range(5)])
    onehot = np.eye(5)[codes] * 3.0  # unnormalized: expected_value renormalizes
    pred = expected_value(onehot, centers)
    assert mae(y, pred) == pytest.approx(mean_absolute_error(y, centers[codes]))
    uniform = expected_value(np.ones((200, 5)), centers)
    np.testing.assert_allclose(uniform, centers.mean())


def test_binned_table_and_regression_frame():
    df = pd.DataFrame({"x": np.arange(50.0), "c": list("ab") * 25, "y": np.arange(50.0) ** 2})
    table = binned_table(df, "y", quantile_edges(df.y, 4))
    assert table.columns[table.target_index].levels == (0, 1, 2, 3)
    np.testing.assert_array_equal(table.y, bin_codes(df.y, quantile_edges(df.y, 4)))
    with pytest.warns(UserWarning, match="dropped 1 rows"):
        assert len(regression_frame(df.assign(y=[np.nan] + list(df.y[1:])), "y")) == 49
    with pytest.raises(ValueError, match="not numeric"):
        regression_frame(df, "c")
    with pytest.raises(ValueError, match="constant"):
        regression_frame(df.assign(y=1.0), "y")


def test_fold_bins_come_from_training_rows_only(tmp_path):
    from causaljax.eval.cli import load_model
    from causaljax.eval.regression import RegressionStudy

    params, mc, _ = load_model("random-tiny")
    frame = regression_frame(data.load_frame("cpus"), "perf")
    study = RegressionStudy({"cpus": (frame, "perf")}, params, mc, n_bins=6)
    cfg = dict(dataset="cpus", fold=0, n_train=32, n_val=8, seed=0)
    train = study.split(cfg).train
    y = frame.perf.to_numpy(np.float64)
    table, centers = study._fold(cfg)
    edges = quantile_edges(y[train], 6)
    np.testing.assert_array_equal(table.y, bin_codes(y, edges))
    np.testing.assert_allclose(centers, bin_centers(y[train], bin_codes(y[train], edges), 6))
    # zero-shot MAE: the right test rows, the fold's centers, the sign of the selection score
    from causaljax.finetune.loop import probabilities, scored_test_rows

    cfg["max_test"] = 64
    rows = scored_test_rows(study.split(cfg), 64, 0)
    proba = probabilities(params, mc, study.task(cfg), "test")
    want = mean_absolute_error(y[rows], np.average(np.broadcast_to(centers, proba.shape),
                                                   weights=proba, axis=1))
    assert -study.zero_shot(cfg)["test_select"] == pytest.approx(want, rel=1e-9)


def test_script_runs_writes_and_resumes(tmp_path):
    out = tmp_path / "out"
    script = load_script("experiments", "regression_volume")
    assert script.main(TINY + ["--out", str(out)]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df.method) == ["causalmix", "real", "zeroshot"] and df.run_id.is_unique
    assert (df.mae > 0).all() and (df.zero_shot_mae == df.zero_shot_mae.iloc[0]).all()
    tuned = df[df.method != "zeroshot"]
    assert tuned.mae_val_test_gap.between(0, 2).all()  # every fine-tuned run has a gap
    assert df[df.method == "zeroshot"].mae_val_test_gap.isna().all()
    assert (df["select"] == "val_mae").all()
    zs = df[df.method == "zeroshot"].iloc[0]
    assert zs.mae == zs.zero_shot_mae and zs.mae_reduction == 0
    assert "| causalmix | 1 |" in (out / "summary.md").read_text()
    assert (out / "mae_reduction_vs_volume.png").stat().st_size > 0
    runs = sorted((out / "runs").glob("*.parquet"))
    assert script.main(TINY + ["--out", str(out)]) == 0  # resumes: nothing left, nothing twice
    assert sorted((out / "runs").glob("*.parquet")) == runs


@pytest.mark.parametrize("args, message", [
    (["--datasets", "iris"], "unknown regression dataset"), (["--volumes", "-1"], "--volumes"),
    (["--methods", "nope"], "unknown method"), (["--n-bins", "11"], "--n-bins")])
def test_bad_input_exits_2(tmp_path, capsys, args, message):
    err = bad_input_exits_2("experiments", "regression_volume", TINY + args, tmp_path / "out",
                            capsys)
    assert message in err


def test_csv_with_a_non_numeric_target_exits_2(tmp_path, capsys):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"a": range(80), "label": ["x", "y"] * 40}).to_csv(path, index=False)
    args = [a for a in TINY if a not in ("--datasets", "cpus")]
    assert load_script("experiments", "regression_volume").main(
        args + ["--csv", str(path), "--target", "label", "--out", str(tmp_path / "o")]) == 2
    assert "not numeric" in capsys.readouterr().err
