"""Smoke test of experiments/zero_shot.py: table, plot, and resume without recomputation."""

from pathlib import Path

import numpy as np
import pandas as pd
from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("experiments", "zero_shot")


def test_zero_shot_writes_table_plot_and_resumes(tmp_path):
    mod = _script()
    out = tmp_path / "zs.csv"
    args = ["--datasets", "iris", "--n-train", "32", "--folds", "2", "--n-estimators", "1",
            "--out", str(out)]
    df = mod.main(args)
    assert set(df.model) == {"tfm", "logistic_regression", "random_forest",
                             "hist_gradient_boosting"}
    assert len(df) == 8 and df.roc_auc.between(0, 1).all()
    table = (tmp_path / "zs.md").read_text()
    assert "| 32 | tfm |" in table and "mean rank" in table
    assert (tmp_path / "zs.png").stat().st_size > 0
    again = mod.main(args)  # resumes: nothing recomputed, same rows
    pd.testing.assert_frame_equal(again.reset_index(drop=True), pd.read_csv(out))
    # recomputed rows would have new timings; the CSV round trip only loses the last digits
    np.testing.assert_allclose(again.seconds.to_numpy(), df.seconds.to_numpy(), rtol=1e-9)


def test_halves_split_the_datasets_the_tfm_takes():
    script = _script()
    dev, test, every = (script.dataset_names(h) for h in ("dev", "test", None))
    assert sorted(dev + test) == sorted(every) and not set(dev) & set(test)
    assert "hepatic_qsar" not in every and "leaf_flavia" not in every  # too wide / many classes
    assert len(test) >= 8 and len(dev) >= 8


def test_compare_pairs_two_result_files(tmp_path):
    """--compare: per n_train, paired differences over datasets against a hand computation."""
    rng = np.random.default_rng(0)
    rows = [(f"d{i}", n, fold, "tfm", rng.uniform(0.6, 0.9), 1.0)
            for i in range(6) for n in (64, 256) for fold in range(3)]
    cols = ["dataset", "n_train", "fold", "model", "roc_auc", "seconds"]
    base = pd.DataFrame(rows, columns=cols)
    new = base.copy()
    shift = {f"d{i}": 0.01 * (i - 1) for i in range(6)}  # d0 lower, d1 equal, d2..d5 higher
    new["roc_auc"] += new.dataset.map(shift)
    other = base.assign(model="logistic_regression", roc_auc=0.5)  # other models are ignored
    paths = []
    for name, frame in (("a", pd.concat([base, other])), ("b", new)):
        paths.append(str(tmp_path / f"{name}.csv"))
        frame.to_csv(paths[-1], index=False)
    table = _script().main(["--compare", *paths])
    for n in (64, 256):
        r = table.loc[n]
        assert r.datasets == 6 and r.new_higher == 4
        np.testing.assert_allclose(r.mean_diff, np.mean(list(shift.values())), atol=1e-12)
        per = base[base.n_train == n].groupby("dataset").roc_auc.mean()
        np.testing.assert_allclose(r.median_base, per.median())
        assert 0 < r.wilcoxon_p < 1
