"""Paper-style summary of a study's results table (one row per run).

Per (method, volume): median normalized improvement over zero-shot (relative % and headroom)
with bootstrap CIs over datasets, mean rank, win rate against standard fine-tuning, median
validation-test gap, next to the paper's headline numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from causaljax.eval.metrics import bootstrap_ci, ranks, win_rate

# Bühler, Purucker, Hutter (arXiv 2601.04110): median normalized ROC-AUC improvement over
# zero-shot and median validation-test correlation gap (copied from docs/method.md).
PAPER_IMPROVEMENT = {"causalmix": 0.12, "real": 0.10, "ctgan": -0.01, "tabebm": -0.04,
                     "copula": -0.09}  # copula stands in for the paper's "TableAugment"
PAPER_GAP = {"real": 0.67, "causalmix": 0.30}
METHOD_ORDER = ("zeroshot", "real", "causalmix", "scm", "copula", "tabebm", "ctgan")


def _by_dataset(df: pd.DataFrame, column: str) -> list[np.ndarray]:
    return [g[column].to_numpy(np.float64) for _, g in df.groupby("dataset", sort=True)]


def arm_ranks(df: pd.DataFrame) -> pd.Series:
    """Mean rank of every (method, volume) arm by test AUC within each (dataset, fold),
    1 = best; an arm missing from a fold is left out of that fold."""
    wide = df.pivot_table(index=["dataset", "fold"], columns=["method", "volume"],
                          values="test_auc", aggfunc="first")
    r = ranks(wide.to_numpy())
    r = np.where(np.isfinite(wide.to_numpy()), r, np.nan)
    return pd.Series(np.nanmean(r, axis=0), index=wide.columns)


def summary_table(df: pd.DataFrame, *, n_boot: int = 1000) -> pd.DataFrame:
    """One row per (method, volume) arm."""
    mean_rank = arm_ranks(df)
    real = df[df.method == "real"].set_index(["dataset", "fold"])["test_auc"]
    rows = []
    for (method, volume), g in df.groupby(["method", "volume"], sort=True):
        rel = bootstrap_ci(_by_dataset(g, "rel_improvement"), n_boot=n_boot)
        head = bootstrap_ci(_by_dataset(g, "headroom"), n_boot=n_boot)
        gap = bootstrap_ci(_by_dataset(g, "val_test_gap"), n_boot=n_boot)
        base = real.reindex(pd.MultiIndex.from_frame(g[["dataset", "fold"]]))
        rows.append(dict(
            method=method, volume=volume, runs=len(g), datasets=g.dataset.nunique(),
            test_auc=float(np.nanmedian(g.test_auc)),
            rel_median=rel[0], rel_lo=rel[1], rel_hi=rel[2],
            headroom_median=head[0], headroom_lo=head[1], headroom_hi=head[2],
            mean_rank=float(mean_rank.get((method, volume), np.nan)),
            win_vs_real=(np.nan if method == "real"
                         else win_rate(g.test_auc.to_numpy(), base.to_numpy())),
            gap_median=gap[0], gap_lo=gap[1], gap_hi=gap[2],
            gap_runs=int(g.val_test_gap.notna().sum()),
            gap_datasets=int(g.dataset[g.val_test_gap.notna()].nunique()),
            paper_improvement=PAPER_IMPROVEMENT.get(method, np.nan),
            paper_gap=PAPER_GAP.get(method, np.nan),
            seconds=float(g.seconds.sum())))
    t = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    t["_o"] = t.method.map(lambda m: order.get(m, len(order)))
    return t.sort_values(["_o", "method", "volume"]).drop(columns="_o").reset_index(drop=True)


def _ci(m, lo, hi, fmt="{:+.3f}") -> str:
    if not np.isfinite(m):
        return "–"
    s = fmt.format(m)
    return s + (f" [{fmt.format(lo)}, {fmt.format(hi)}]" if np.isfinite(lo) else "")


def _num(x, fmt="{:.2f}") -> str:
    return fmt.format(x) if np.isfinite(x) else "–"


def summary_markdown(df: pd.DataFrame, *, title: str = "Synthetic-volume study",
                     notes: str = "") -> str:
    t = summary_table(df)
    lines = [f"# {title}", "",
             f"{len(df)} runs, {df.dataset.nunique()} datasets "
             f"({', '.join(sorted(df.dataset.unique()))}), folds per dataset: "
             f"{df.groupby('dataset').fold.nunique().max()}, "
             f"n_train {sorted(int(n) for n in df.n_train.unique())}.",
             "",
             "Improvement over zero-shot test ROC-AUC: relative % = (AUC/AUC_zs - 1) x 100 and "
             "headroom = (AUC - AUC_zs)/(1 - AUC_zs); medians with 95% bootstrap CIs over "
             "datasets. Rank: mean rank by test AUC among all arms within a fold (1 = best). "
             "Win vs real: share of folds beating standard fine-tuning (ties 1/2). "
             "Val-test gap: 1 - Spearman rho of validation vs test ROC-AUC across checkpoints "
             "(ties broken by log loss, as checkpoint selection does; zero-shot has one "
             "checkpoint and no gap); gap runs: the runs (datasets) the gap median rests on. "
             "Volume: synthetic rows per real row in each step. Paper: median normalized "
             "improvement and val-test gap of arXiv 2601.04110 (33 TabArena datasets; its "
             "normalization is not stated; copula stands in for TableAugment).", "",
             "| method | volume | runs | median test AUC | rel. impr. % [CI] | headroom [CI] "
             "| mean rank | win vs real | val-test gap [CI] | gap runs | paper impr. "
             "| paper gap |",
             "|---|---:|---:|---:|---|---|---:|---:|---|---:|---:|---:|"]
    for r in t.itertuples():
        lines.append(
            f"| {r.method} | {r.volume:g} | {r.runs} | {_num(r.test_auc, '{:.3f}')} | "
            f"{_ci(r.rel_median, r.rel_lo, r.rel_hi, '{:+.2f}')} | "
            f"{_ci(r.headroom_median, r.headroom_lo, r.headroom_hi)} | {_num(r.mean_rank)} | "
            f"{_num(r.win_vs_real)} | {_ci(r.gap_median, r.gap_lo, r.gap_hi, '{:.2f}')} | "
            f"{r.gap_runs} ({r.gap_datasets}) | "
            f"{_num(r.paper_improvement, '{:+.2f}')} | {_num(r.paper_gap)} |")
    if "domain" in df.columns:
        lines += _domain_lines(df)
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def domain_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median headroom improvement per (method, volume) arm (rows) and domain (columns): the
    median over the domain's datasets of each dataset's median over folds."""
    per_dataset = df.groupby(["method", "volume", "domain", "dataset"]).headroom.median()
    t = per_dataset.groupby(["method", "volume", "domain"]).median().unstack("domain")
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return t.sort_index(key=lambda c: c.map(lambda m: order.get(m, len(order)))
                        if c.name == "method" else c)


def _domain_lines(df: pd.DataFrame) -> list[str]:
    t = domain_table(df)
    counts = df.groupby("domain").dataset.nunique()
    lines = ["", "Median headroom improvement by domain (datasets per domain: "
             + ", ".join(f"{d} {counts[d]}" for d in t.columns) + "):", "",
             "| method | volume | " + " | ".join(t.columns) + " |",
             "|---|---:|" + "---:|" * len(t.columns)]
    for (method, volume), row in t.iterrows():
        lines.append(f"| {method} | {volume:g} | "
                     + " | ".join(_num(v, "{:+.3f}") for v in row) + " |")
    return lines
