"""Research question 2 (causaljax/eval/depth.py, experiments/depth_stability.py): the
within-fold permutation test against scipy and at its false-alarm rate, and the script."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, spearmanr
from scripts import bad_input_exits_2, load_script

from causaljax.eval.depth import grid, holm, unit_table, within_fold_test

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--checkpoint", "random-tiny", "--datasets", "pima", "--folds", "1", "--n-train", "32",
        "--steps", "2", "--eval-every", "1", "--dags", "3", "--seeds", "2", "--n-bootstrap", "2",
        "--families", "linear", "--max-test", "128", "--n-perm", "99", "--no-progress"]


def _script():
    return load_script("experiments", "depth_stability")


def _units(rng, folds=4, dags=6, metric=None):
    rows = []
    for f in range(folds):
        depth = rng.integers(1, 6, dags)
        value = rng.normal(size=dags) if metric is None else metric(depth, rng)
        rows += [dict(dataset="d", fold=f, dag=g, depth=int(depth[g]), seed_std=value[g])
                 for g in range(dags)]
    return pd.DataFrame(rows)


def test_rho_is_the_mean_of_scipys_within_fold_spearman():
    units = _units(np.random.default_rng(1))
    units.loc[units.fold == 3, "depth"] = 2  # one depth only: no information, left out
    want = np.mean([spearmanr(g.depth, g.seed_std)[0]
                    for f, g in units.groupby("fold") if f != 3])
    t = within_fold_test(units, "seed_std", n_perm=99)
    assert t["folds"] == 3 and t["units"] == 18
    np.testing.assert_allclose(t["rho"], want, rtol=1e-12)


def test_a_monotone_relation_is_found():
    noisy = lambda depth, rng: depth + 0.1 * rng.normal(size=depth.size)  # noqa: E731
    units = _units(np.random.default_rng(2), metric=noisy)
    t = within_fold_test(units, "seed_std", n_perm=999)
    assert t["rho"] > 0.8 and t["p"] <= 0.01


def test_false_alarm_rate_under_the_null():
    """Unrelated depth and metric: rejections at alpha = 0.1 over 200 independent studies stay
    within the binomial(200, 0.1) range (a false failure once in ~1e4 runs)."""
    rng = np.random.default_rng(3)
    p = np.array([within_fold_test(_units(rng, folds=3, dags=5), "seed_std", n_perm=199,
                                   seed=i)["p"] for i in range(200)])
    rejected = int((p <= 0.1).sum())
    lo, hi = binom.ppf(5e-5, 200, 0.1), binom.isf(5e-5, 200, 0.1)
    assert lo <= rejected <= hi, rejected


def test_holm_against_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.031, 0.323, 0.538, 0.004, 0.2])
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])


def test_grid_and_units():
    configs = grid(["a"], 1, dags=2, seeds=2, volume=1.0, base={})
    assert [c["method"] for c in configs].count("causalmix") == 4
    assert [c["method"] for c in configs].count("real") == 2
    with pytest.raises(ValueError, match="volume"):
        grid(["a"], 1, dags=2, seeds=2, volume=0.0, base={})
    df = pd.DataFrame([dict(dataset="a", fold=0, method="causalmix", dag=g, depth=g + 1,
                            n_edges=3, run_seed=s, test_auc=0.5 + 0.1 * g * s,
                            val_test_gap=0.2, headroom=0.0) for g in range(2) for s in range(2)])
    units = unit_table(df)
    np.testing.assert_allclose(units.seed_std, [0.0, np.std([0.5, 0.6], ddof=1)])
    assert units.depth.tolist() == [1, 2]


def test_script_runs_writes_and_resumes(tmp_path):
    out = tmp_path / "out"
    mod = _script()
    assert mod.main(TINY + ["--out", str(out)]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 1 + 2 + 3 * 2  # zero-shot, real x seeds, causalmix x dags x seeds
    mix = df[df.method == "causalmix"]
    assert mix.depth.notna().all() and (mix.depth >= 0).all() and df.run_id.is_unique
    assert set(mix.run_seed) == {0, 1} and set(mix.dag) == {0, 1, 2}
    units = pd.read_csv(out / "units.csv")
    assert len(units) == 3 and (units.seeds == 2).all()
    n_cols = 8  # pima: 7 features + the target
    assert (units.depth <= units.n_edges).all() and (units.depth < n_cols).all()
    assert "within-fold rho" in (out / "summary.md").read_text()
    assert (out / "depth_vs_stability.png").stat().st_size > 0
    runs = sorted((out / "runs").glob("*.parquet"))
    assert mod.main(TINY + ["--out", str(out)]) == 0  # resumes: nothing left, nothing twice
    assert sorted((out / "runs").glob("*.parquet")) == runs


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1"], "--seeds"), (["--volume", "0"], "--volume"),
    (["--datasets", "nope"], "unknown dataset"), (["--alpha", "1.5"], "--alpha"),
    (["--dags", "0"], "--dags")])
def test_bad_input_exits_2(tmp_path, capsys, args, message):
    err = bad_input_exits_2("experiments", "depth_stability", TINY + args, tmp_path / "out", capsys)
    assert message in err
