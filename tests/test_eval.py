"""Metrics against scikit-learn / scipy, and the append-only store's resume behaviour."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from causaljax.eval import metrics
from causaljax.eval.report import domain_table, summary_markdown, summary_table
from causaljax.eval.study import ResultsStore, run_grid, run_id, shard


@pytest.mark.parametrize("seed", range(5))
def test_binary_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60).astype(float)  # many ties
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    p = np.column_stack([1 - s / 6, s / 6])  # [n, 2] probabilities: column 1 scores
    assert metrics.roc_auc(y, p) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_auc_equals_sklearn_ovr_macro(seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(80) % 4)
    p = rng.dirichlet(np.ones(4), 80)
    p[:10] = p[10:20]  # ties
    want = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert metrics.roc_auc(y, p) == pytest.approx(want, abs=1e-12)


def test_auc_undefined_is_nan():
    assert np.isnan(metrics.roc_auc(np.zeros(5, int), np.arange(5.0)))
    assert np.isnan(metrics.roc_auc([0, 1, 0], [0.1, np.nan, 0.3]))


@pytest.mark.parametrize("seed", range(5))
def test_spearman_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, 30).astype(float)
    b = a + rng.integers(0, 4, 30)
    assert metrics.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert metrics.val_test_gap(a, b) == pytest.approx(1 - spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_constant_is_nan():
    assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize("seed", range(4))
def test_val_test_gap_breaks_auc_ties_by_log_loss(seed):
    """The gap ranks checkpoints as selection does: ROC-AUC, equal ROC-AUC by lower log loss.
    Independent answer: scipy's Spearman of one composite score per checkpoint."""
    rng = np.random.default_rng(seed)
    n = 9
    va = rng.choice([0.9, 0.95, 1.0], n)  # a coarse 16-row validation AUC: many ties
    vl = rng.uniform(0.1, 0.5, n)
    te = rng.choice([0.80, 0.82, 0.84], n)
    tl = rng.uniform(0.3, 0.4, n)
    # composite: AUC first, then minus the loss (the loss ranges are narrower than 10x an
    # AUC step, so they only order equal AUCs)
    want = 1 - spearmanr(va * 10 - vl, te * 10 - tl).statistic
    assert metrics.val_test_gap(va, te, vl, tl) == pytest.approx(want, abs=1e-12)


def test_val_test_gap_is_defined_for_two_or_more_checkpoints():
    # the validation AUC is 1.0 at every checkpoint (breast_w at 16 validation rows): the
    # AUC-only correlation is undefined, the selection ranking (log loss) is not
    va, vl = [1.0, 1.0, 1.0, 1.0], [0.30, 0.20, 0.25, 0.10]
    te = [0.990, 0.992, 0.991, 0.993]
    assert np.isnan(metrics.spearman(va, te)) and metrics.val_test_gap(va, te) == 1.0
    assert metrics.val_test_gap(va, te, vl) == pytest.approx(0.0)  # same order: no gap
    assert metrics.val_test_gap(va, te[::-1], vl) == pytest.approx(2.0)  # reversed
    assert metrics.val_test_gap([0.7, 0.8], [0.6, 0.5]) == pytest.approx(2.0)  # two suffice
    # validation cannot tell the checkpoints apart at all (unchanged weights): rho 0, gap 1
    assert metrics.val_test_gap([0.8] * 3, [0.6, 0.7, 0.5], [0.4] * 3) == 1.0
    # one checkpoint (zero-shot), or one with finite AUCs: undefined
    assert np.isnan(metrics.val_test_gap([0.8], [0.7], [0.3], [0.4]))
    assert np.isnan(metrics.val_test_gap([0.8, np.nan], [0.7, 0.6], [0.3, 0.2]))


def test_improvements_known_values():
    assert metrics.relative_improvement(0.88, 0.8) == pytest.approx(10.0)
    assert metrics.headroom_improvement(0.9, 0.8) == pytest.approx(0.5)
    assert metrics.headroom_improvement(0.7, 0.8) == pytest.approx(-0.5)
    assert np.isnan(metrics.headroom_improvement(0.9, 1.0))


def test_ranks_and_win_rate():
    r = metrics.ranks([[0.9, 0.8, 0.9], [0.5, np.nan, 0.7]])
    np.testing.assert_allclose(r, [[1.5, 3, 1.5], [2, 3, 1]])
    assert metrics.win_rate([0.9, 0.8, 0.7, 0.6], [0.8, 0.8, 0.9, np.nan]) == pytest.approx(0.5)


def test_bootstrap_ci_brackets_the_median():
    rng = np.random.default_rng(0)
    groups = [rng.normal(1.0, 1.0, 3) for _ in range(12)]
    med, lo, hi = metrics.bootstrap_ci(groups, n_boot=500)
    assert med == pytest.approx(np.median(np.concatenate(groups)))
    assert lo < med < hi
    assert np.isnan(metrics.bootstrap_ci([[1.0, 2.0]])[1])  # one dataset: no CI


# ----------------------------------------------------------------------------- store / resume
def _configs(n=8):
    return [dict(dataset=f"d{i % 3}", fold=i // 3, method="real", volume=0.0) for i in range(n)]


def _fake_run(cfg):
    return dict(test_auc=0.5 + 0.01 * cfg["fold"])


def test_run_id_is_stable_and_order_free():
    assert run_id({"a": 1, "b": 2}) == run_id({"b": 2, "a": 1})
    assert run_id({"a": 1}) != run_id({"a": 2})


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    full = ResultsStore(tmp_path / "full")
    run_grid(_configs(), _fake_run, full, progress=False)

    crashed = ResultsStore(tmp_path / "crash")

    def crash(i):
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(_configs(), _fake_run, crashed, progress=False, after_run=crash)
    assert len(crashed.done()) == 3
    (crashed.runs / ".leftover.123.tmp").write_bytes(b"partial")  # a torn write
    ran = run_grid(_configs(), _fake_run, crashed, progress=False)
    assert len(ran) == 5
    assert crashed.done() == full.done()
    df = crashed.read()
    assert len(df) == 8 and df.run_id.is_unique


def test_restore_from_the_results_table(tmp_path):
    """A fresh clone has the committed results.parquet but no runs/: restore writes back the
    missing runs (same rows), and nothing twice."""
    store = ResultsStore(tmp_path)
    run_grid(_configs(), _fake_run, store, progress=False)
    table = tmp_path / "results.parquet"
    store.read().to_parquet(table)
    before = store.read().sort_values("run_id", ignore_index=True)
    for path in sorted(store.runs.glob("*.parquet"))[:5]:
        path.unlink()
    assert store.restore(table) == 5 and store.restore(table) == 0
    after = store.read().sort_values("run_id", ignore_index=True)
    pd.testing.assert_frame_equal(after, before)
    assert run_grid(_configs(), _fake_run, store, progress=False) == []
    assert ResultsStore(tmp_path / "none").restore(tmp_path / "missing.parquet") == 0


def test_resume_after_sigkill(tmp_path):
    """A study process killed with SIGKILL mid-run, then rerun, ends with every run once."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from causaljax.eval.study import ResultsStore, run_grid
        configs = [dict(dataset="d", fold=i, method="m", volume=0.0) for i in range(6)]
        def kill(i):
            if sys.argv[1] == "kill" and i == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        run_grid(configs, lambda c: dict(test_auc=0.5), ResultsStore(sys.argv[2]),
                 progress=False, after_run=kill)
    """)
    out = str(tmp_path / "study")
    first = subprocess.run([sys.executable, "-c", script, "kill", out])
    assert first.returncode == -signal.SIGKILL
    assert len(ResultsStore(out).done()) == 2
    subprocess.run([sys.executable, "-c", script, "rerun", out], check=True)
    df = ResultsStore(out).read()
    assert sorted(df.fold) == list(range(6))


def test_shards_partition_the_grid():
    configs = _configs(9)
    parts = [shard(configs, i, 3) for i in range(3)]
    ids = [run_id(c) for p in parts for c in p]
    assert sorted(ids) == sorted(run_id(c) for c in configs)
    for p in parts:  # a (dataset, fold) group never straddles shards
        for c in p:
            assert all(run_id(o) in {run_id(x) for x in p}
                       for o in configs if (o["dataset"], o["fold"]) == (c["dataset"], c["fold"]))
    with pytest.raises(ValueError):
        shard(configs, 3, 3)


def test_summary_table():
    rows = []
    for d in ("a", "b", "c"):
        for method, vol, auc in (("zeroshot", 0.0, 0.8), ("real", 0.0, 0.85),
                                 ("causalmix", 1.0, 0.9)):
            rows.append(dict(dataset=d, fold=0, method=method, volume=vol, n_train=64,
                             test_auc=auc, zero_shot_auc=0.8, val_test_gap=0.5,
                             rel_improvement=(auc / 0.8 - 1) * 100,
                             headroom=(auc - 0.8) / 0.2, seconds=1.0))
    df = pd.DataFrame(rows)
    t = summary_table(df, n_boot=100).set_index("method")
    assert t.loc["causalmix", "headroom_median"] == pytest.approx(0.5)
    assert t.loc["causalmix", "mean_rank"] == 1 and t.loc["zeroshot", "mean_rank"] == 3
    assert t.loc["causalmix", "win_vs_real"] == 1.0
    assert "| causalmix | 1 |" in summary_markdown(df)
    # the gap rests on the runs that have one: zero-shot none, and a fine-tuned run without
    df.loc[df.method == "zeroshot", "val_test_gap"] = np.nan
    df.loc[(df.method == "causalmix") & (df.dataset == "c"), "val_test_gap"] = np.nan
    t = summary_table(df, n_boot=100).set_index("method")
    assert list(t.gap_runs) == [0, 3, 2] and list(t.gap_datasets) == [0, 3, 2]
    text = summary_markdown(df)
    assert "| gap runs |" in text and "| 0.50 [0.50, 0.50] | 2 (2) |" in text
    assert "| – | 0 (0) |" in text


def test_domain_table_medians_per_dataset_then_domain():
    rows = [dict(dataset=d, domain=dom, fold=f, method="real", volume=0.0, headroom=h)
            for d, dom, hs in (("a", "health", [0.1, 0.3, 0.2]), ("b", "health", [0.5, 0.5, 0.5]),
                               ("c", "finance", [-0.1, 0.0, 0.4]))
            for f, h in enumerate(hs)]
    t = domain_table(pd.DataFrame(rows))
    assert t.loc[("real", 0.0), "health"] == pytest.approx(np.median([0.2, 0.5]))
    assert t.loc[("real", 0.0), "finance"] == pytest.approx(0.0)


def test_volume_study_drops_caches_when_the_dataset_changes(monkeypatch):
    """Long studies must not keep every dataset's generators and compiled programs alive."""
    import jax

    from causaljax.eval.volume import VolumeStudy

    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(1))
    study = VolumeStudy({}, params=None, mc=None)
    study._enter("a")
    study._sources["a-fold0"] = object()
    study._enter("a")  # same dataset: kept
    assert "a-fold0" in study._sources and not cleared
    study._enter("b")
    assert not study._sources and not study._tasks and cleared == [1]


def test_plot_keeps_every_arm_visible():
    """Each method has its own marker and a horizontal shift, so the volume-0 point that
    every synthetic curve shares with "real" shows all of them; "real" is drawn on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causaljax.eval.plots import OFFSET_POINTS, draw_curves

    rows = [("zeroshot", 0.0, 0.0), ("real", 0.0, 0.1), ("causalmix", 1.0, 0.2),
            ("causalmix", 4.0, 0.3), ("scm", 1.0, 0.1), ("copula", 1.0, 0.05)]
    t = pd.DataFrame([dict(method=m, volume=v, headroom_median=y, headroom_lo=y - 0.05,
                           headroom_hi=y + 0.05) for m, v, y in rows])
    fig, ax = plt.subplots()
    ax.set_xscale("symlog", linthresh=0.5)
    lines = draw_curves(ax, t, "headroom")
    assert set(lines) == {"real", "causalmix", "scm", "copula"}  # zero-shot is the reference
    assert len({ln.get_marker() for ln in lines.values()}) == 4
    assert lines["real"].get_zorder() > max(ln.get_zorder() for m, ln in lines.items()
                                            if m != "real")
    lo, hi = ax.get_ylim()
    assert lo <= 0.0 and hi >= 0.35  # the limits hold every median and CI (0.0 ... 0.35)
    fig.canvas.draw()
    # display x of each line's volume-0 point (all at the same data point (0, 0.1))
    x0 = sorted(ln.get_transform().transform((0.0, 0.1))[0] for ln in lines.values())
    gaps_pt = np.diff(x0) * 72.0 / fig.dpi
    np.testing.assert_allclose(gaps_pt, OFFSET_POINTS, rtol=1e-6)
    plt.close(fig)
