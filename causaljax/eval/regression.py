"""Research question 3, the regression half: does more SCM-synthetic data help fine-tuning when
the target is numeric (mean absolute error), and does it help across domains?

``RegressionStudy`` is the volume study on regression datasets: per fold, the numeric target is
cut into quantile bins of that fold's *training* rows (``causaljax.data.regression``), so the
TFM, the fitted SCMs (the target a categorical node over the bins) and fine-tuning run as for
classification; each run scores the MAE of the mean prediction on the test rows, with the
pretrained weights (zero-shot) and with the fine-tuned ones. Checkpoints are selected (early
stopping, best weights) by the validation MAE. The split is stratified on bins of the whole
column (the split only).

Result columns added to the volume study's: mae, zero_shot_mae, mae_reduction (% of the
zero-shot MAE removed; > 0 is better), mae_val_test_gap (1 - Spearman rho of validation vs
test MAE across checkpoints), n_bins. The study's auc columns are over the bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from causaljax.data.regression import (
    MAX_BINS,
    bin_centers,
    bin_codes,
    binned_table,
    expected_value,
    mae,
    quantile_edges,
)
from causaljax.eval.metrics import bootstrap_ci, ranks, val_test_gap, win_rate
from causaljax.eval.report import METHOD_ORDER
from causaljax.eval.volume import VolumeStudy
from causaljax.finetune.loop import scored_test_rows


class RegressionStudy(VolumeStudy):
    """``VolumeStudy`` over ``frames``: name -> (DataFrame with a finite numeric target, its
    target column)."""

    def __init__(self, frames: dict, params, mc, *, n_bins: int = MAX_BINS,
                 generator_options: dict | None = None):
        strata = {name: binned_table(df, t, quantile_edges(df[t], n_bins))
                  for name, (df, t) in frames.items()}  # for the stratified split only
        super().__init__(strata, params, mc, generator_options=generator_options)
        self.frames, self.n_bins = frames, n_bins
        self._folds = {}

    def _fold(self, cfg) -> tuple:
        """(Table binned at the fold's training quantiles, bin centers f64[B])."""
        key = self.fold_id(cfg)
        if key not in self._folds:
            df, target = self.frames[cfg["dataset"]]
            y_train = df[target].to_numpy(np.float64)[self.split(cfg).train]
            edges = quantile_edges(y_train, self.n_bins)
            centers = bin_centers(y_train, bin_codes(y_train, edges), len(edges) + 1)
            self._folds[key] = (binned_table(df, target, edges), centers)
        return self._folds[key]

    def table(self, cfg):
        return self._fold(cfg)[0]

    def mae(self, cfg, proba, which: str) -> float:
        """MAE of the mean prediction on the fold's 'val' or 'test' rows, from those rows'
        bin probabilities (``finetune.loop.probabilities``)."""
        df, target = self.frames[cfg["dataset"]]
        split = self.split(cfg)
        rows = (split.val if which == "val" else
                scored_test_rows(split, cfg.get("max_test"), cfg["seed"]))
        if len(rows) == 0:
            return float("nan")
        return mae(df[target].to_numpy(np.float64)[rows], expected_value(proba, self._fold(cfg)[1]))

    def selection(self, cfg):
        """Select checkpoints by validation MAE (as minus the MAE: higher is better)."""
        return lambda proba, which: -self.mae(cfg, proba, which)

    def _row(self, cfg: dict, r=None, n_syn: int = 0) -> dict:
        row = super()._row(cfg, r, n_syn)
        zero = -self.zero_shot(cfg)["test_select"]
        if r is None:
            row.update(mae=zero, mae_val_test_gap=np.nan)
        else:  # the history holds -MAE per checkpoint (selection scores)
            at_best = next(h for h in r.history if h["step"] == r.best_step)
            h = r.history  # selection ties: lower log loss (both sides, as in finetune)
            row.update(mae=-at_best["test_select"], mae_val_test_gap=val_test_gap(
                [e["val_select"] for e in h], [e["test_select"] for e in h],
                [e["val_loss"] for e in h], [e.get("test_loss") for e in h]))
        row["zero_shot_mae"] = zero
        row["mae_reduction"] = (zero - row["mae"]) / zero * 100 if zero > 0 else np.nan
        row["n_bins"] = len(self._fold(cfg)[1])
        return row


def summary_table(df: pd.DataFrame, *, n_boot: int = 1000) -> pd.DataFrame:
    """One row per (method, volume) arm: median MAE reduction over zero-shot with a bootstrap
    CI over datasets, mean rank by MAE within a fold (1 = lowest), win rate against ``real``
    (lower MAE wins), median val-test gap."""
    wide = df.pivot_table(index=["dataset", "fold"], columns=["method", "volume"], values="mae",
                          aggfunc="first")
    r = np.where(np.isfinite(wide.to_numpy()), ranks(-wide.to_numpy()), np.nan)
    mean_rank = pd.Series(np.nanmean(r, axis=0), index=wide.columns)
    real = df[df.method == "real"].set_index(["dataset", "fold"])["mae"]
    rows = []
    for (method, volume), g in df.groupby(["method", "volume"], sort=True):
        by_dataset = [d.mae_reduction.to_numpy(np.float64) for _, d in g.groupby("dataset")]
        med, lo, hi = bootstrap_ci(by_dataset, n_boot=n_boot)
        base = real.reindex(pd.MultiIndex.from_frame(g[["dataset", "fold"]])).to_numpy()
        rows.append(dict(method=method, volume=volume, runs=len(g),
                         mae_median=float(np.nanmedian(g.mae)),
                         reduction_median=med, reduction_lo=lo, reduction_hi=hi,
                         mean_rank=float(mean_rank.get((method, volume), np.nan)),
                         win_vs_real=(np.nan if method == "real"
                                      else win_rate(-g.mae.to_numpy(), -base)),
                         gap_median=float(np.nanmedian(g.mae_val_test_gap))
                         if g.mae_val_test_gap.notna().any() else np.nan,
                         gap_runs=int(g.mae_val_test_gap.notna().sum())))
    t = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    t["_o"] = t.method.map(lambda m: order.get(m, len(order)))
    return t.sort_values(["_o", "method", "volume"]).drop(columns="_o").reset_index(drop=True)


def _fmt(x, fmt: str) -> str:
    return fmt.format(x) if np.isfinite(x) else "–"


def summary_markdown(df: pd.DataFrame, *, notes: str = "") -> str:
    t = summary_table(df)
    lines = ["# Synthetic-volume study, regression (research question 3)", "",
             f"{len(df)} runs, {df.dataset.nunique()} datasets "
             f"({', '.join(sorted(df.dataset.unique()))}), folds per dataset: "
             f"{df.groupby('dataset').fold.nunique().max()}, n_train "
             f"{sorted(int(n) for n in df.n_train.unique())}, target bins per fold "
             f"{int(df.n_bins.min())}-{int(df.n_bins.max())}.", "",
             "MAE of the mean prediction over the target's quantile bins on the test rows. "
             "MAE reduction = (MAE_zero-shot - MAE) / MAE_zero-shot x 100 (> 0: better than "
             "the pretrained model), median with a 95% bootstrap CI over datasets. Rank: mean "
             "rank by MAE among all arms within a fold (1 = lowest). Win vs real: share of "
             "folds with a lower MAE than standard fine-tuning (ties 1/2). Val-test gap: 1 - "
             "Spearman rho of validation vs test MAE across checkpoints (selection is by "
             "validation MAE, ties by log loss); gap runs: the runs the gap median rests on "
             "(zero-shot has one checkpoint and no gap).", "",
             "| method | volume | runs | median MAE | MAE reduction % [CI] | mean rank "
             "| win vs real | val-test gap | gap runs |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in t.itertuples():
        ci = (f" [{r.reduction_lo:+.2f}, {r.reduction_hi:+.2f}]"
              if np.isfinite(r.reduction_lo) else "")
        lines.append(f"| {r.method} | {r.volume:g} | {r.runs} | {r.mae_median:.4g} "
                     f"| {_fmt(r.reduction_median, '{:+.2f}')}{ci} | {_fmt(r.mean_rank, '{:.2f}')} "
                     f"| {_fmt(r.win_vs_real, '{:.2f}')} | {_fmt(r.gap_median, '{:.2f}')} "
                     f"| {r.gap_runs} |")
    if "domain" in df.columns:
        per = df.groupby(["method", "volume", "domain", "dataset"]).mae_reduction.median()
        d = per.groupby(["method", "volume", "domain"]).median().unstack("domain")
        d = d.reindex(pd.MultiIndex.from_frame(t[["method", "volume"]]))
        lines += ["", "Median MAE reduction % by domain (median over each domain's datasets):",
                  "", "| method | volume | " + " | ".join(d.columns) + " |",
                  "|---|---:|" + "---:|" * len(d.columns)]
        for (method, volume), vals in d.iterrows():
            lines.append(f"| {method} | {volume:g} | "
                         + " | ".join(_fmt(v, "{:+.2f}") for v in vals) + " |")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def plot_reduction(df: pd.DataFrame, path: str) -> str:
    """mae_reduction_vs_volume.png: median MAE reduction vs volume per method, with CIs."""
    from causaljax.eval.plots import plot_curves

    t = summary_table(df, n_boot=500)
    return plot_curves(t, "reduction", "median MAE reduction over zero-shot (%)", path,
                       zero_line=True)
