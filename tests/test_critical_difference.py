"""Critical-difference analysis (autorank) of study arms over datasets."""

import numpy as np
import pandas as pd

from causaljax.eval.critical_difference import critical_difference, dataset_scores


def study_rows(n_datasets=8, folds=2, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_datasets):
        base = rng.uniform(0.6, 0.9)
        for f in range(folds):
            for method, volume, shift in (("real", 0.0, 0.0), ("causalmix", 4.0, 0.05),
                                          ("zeroshot", 0.0, -0.05)):
                rows.append(dict(dataset=f"d{d}", fold=f, method=method, volume=volume,
                                 test_auc=base + shift + rng.normal(0, 0.002)))
    return pd.DataFrame(rows)


def test_scores_are_fold_means_of_complete_folds():
    df = study_rows(n_datasets=2)
    df = df.drop(df.index[(df.dataset == "d1") & (df.fold == 1) & (df.method == "real")])
    s = dataset_scores(df)
    assert list(s.columns) == ["causalmix@4", "real@0", "zeroshot@0"]
    want = df[(df.dataset == "d1") & (df.fold == 0) & (df.method == "real")].test_auc.item()
    assert np.isclose(s.loc["d1", "real@0"], want)  # fold 1 of d1 is incomplete: left out


def test_clear_winner_ranks_first_and_diagram_is_written(tmp_path):
    lines, res = critical_difference(study_rows(), str(tmp_path / "cd.png"))
    ranks = res.rankdf["meanrank"]
    assert ranks["causalmix@4"] == 1.0 and ranks["zeroshot@0"] == 3.0
    assert res.pvalue < 0.05 and (tmp_path / "cd.png").stat().st_size > 1000
    table = [line for line in lines if line.startswith("| causalmix@4")]
    assert table and lines.index(table[0]) < lines.index(
        next(line for line in lines if line.startswith("| zeroshot@0")))


def test_too_few_datasets_says_so():
    lines, res = critical_difference(study_rows(n_datasets=3))
    assert res is None and "needs >= 5 datasets" in lines[0]
