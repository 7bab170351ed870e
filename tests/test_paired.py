"""eval.paired and experiments/compare_settings.py: paired differences of two study stores."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from scripts import load_script

from causaljax.eval.paired import paired_differences, paired_markdown
from causaljax.eval.study import ResultsStore


def _store(seed, shift, n_datasets=4, folds=3):
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_datasets):
        for f in range(folds):
            for method, volume in (("real", 0.0), ("causalmix", 4.0)):
                rows.append(dict(dataset=f"d{d}", fold=f, method=method, volume=volume,
                                 headroom=rng.normal() + (shift if method != "real" else 0),
                                 fid_detection_auc=0.8 - (shift if method != "real" else 0)))
    return pd.DataFrame(rows)


def test_differences_match_a_hand_computation():
    a, b = _store(0, 0.0), _store(1, 0.5)
    b = b.iloc[1:]  # B covers a subset: the missing cell is not paired
    t = paired_differences(a, b, ("headroom", "fid_detection_auc"), n_boot=200)
    row = t[(t.method == "causalmix") & (t.metric == "headroom")].iloc[0]
    cm = a[a.method == "causalmix"].merge(b[b.method == "causalmix"],
                                          on=["dataset", "fold", "method", "volume"])
    diff = cm.headroom_y - cm.headroom_x
    assert row.pairs == len(diff) == 12
    assert row["median"] == pytest.approx(np.median(diff))
    assert row["mean"] == pytest.approx(diff.mean())
    assert row.b_better == pytest.approx((diff > 0).mean())
    assert row.wilcoxon_p == pytest.approx(wilcoxon(diff).pvalue)
    assert row.low <= row["median"] <= row.high
    det = t[(t.method == "causalmix") & (t.metric == "fid_detection_auc")].iloc[0]
    assert det["median"] == pytest.approx(-0.5) and det.b_better == 1.0  # lower is better
    real = t[(t.method == "real") & (t.metric == "fid_detection_auc")].iloc[0]
    assert real.b_better == 0.5 and np.isnan(real.wilcoxon_p)  # all ties
    assert "| causalmix | 4 | headroom | 12 |" in paired_markdown(t)


def test_several_runs_of_one_cell_are_refused():
    a = _store(0, 0.0)
    with pytest.raises(ValueError, match="several runs"):
        paired_differences(pd.concat([a, a]), a)


def test_script_compares_two_folders(tmp_path, capsys):
    _store(0, 0.0).to_parquet(tmp_path / "a.parquet")  # a committed study: results only
    (tmp_path / "a").mkdir()
    (tmp_path / "a.parquet").rename(tmp_path / "a" / "results.parquet")
    store = ResultsStore(tmp_path / "b")  # a study in progress: runs/ only
    for i, row in _store(1, 0.5).iterrows():
        store.write(f"run{i}", row.to_dict())
    script = load_script("experiments", "compare_settings")
    out = tmp_path / "vs.md"
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--methods", "causalmix",
                        "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| causalmix | 4 | headroom | 12 |" in text and text == out.read_text() + "\n"
    assert "| real |" not in text
    assert script.main([str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "auc"]) == 2
