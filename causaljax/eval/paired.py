"""Two settings of one study compared run by run: paired differences per arm.

Two result stores (e.g. the same grid with and without the Markov repair) hold runs of the same
(dataset, fold, method, volume) cells. ``paired_differences(a, b)`` joins them on those cells
and reports, per arm (method, volume) and metric, the difference b - a: its median with a 95%
percentile bootstrap CI over datasets (a dataset's folds are resampled together), the mean,
the share of pairs where b is better (ties count ½) and the two-sided Wilcoxon signed-rank
p-value (scipy; zero differences dropped, "nan" with fewer than 2 nonzero pairs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from causaljax.eval.metrics import bootstrap_ci

CELL = ("dataset", "fold", "method", "volume")
# metric -> +1 where higher is better, -1 where lower is
METRICS = {"headroom": 1, "test_auc": 1, "fid_marginal": -1, "fid_corr_error": -1,
           "fid_corr_error_max": -1, "fid_contingency": -1, "fid_detection_auc": -1}


def pair_runs(a: pd.DataFrame, b: pd.DataFrame, metrics) -> pd.DataFrame:
    """One row per cell present in both stores: the cell, then ``<metric>_a``/``<metric>_b``."""
    for name, df in (("a", a), ("b", b)):
        missing = [c for c in CELL if c not in df]
        if missing:
            raise ValueError(f"store {name} lacks the columns {missing}")
        if df.duplicated(list(CELL)).any():
            raise ValueError(f"store {name} holds several runs of one (dataset, fold, method, "
                             "volume) cell; select one setting first (eval.cli.current_rows)")
    metrics = [m for m in metrics if m in a and m in b]
    left = a[list(CELL) + metrics]
    right = b[list(CELL) + metrics]
    return left.merge(right, on=list(CELL), suffixes=("_a", "_b"))


def paired_differences(a: pd.DataFrame, b: pd.DataFrame, metrics=tuple(METRICS), *,
                       n_boot: int = 2000) -> pd.DataFrame:
    """Per (method, volume, metric): pairs, median b - a [CI], mean, share b better, Wilcoxon
    p (module docstring). Arms without a value of the metric in both stores are left out."""
    pairs = pair_runs(a, b, metrics)
    rows = []
    for (method, volume), arm in pairs.groupby(["method", "volume"], sort=True):
        for metric, sign in METRICS.items():
            if f"{metric}_a" not in arm:
                continue
            diff = (arm[f"{metric}_b"] - arm[f"{metric}_a"]).to_numpy(np.float64)
            ok = np.isfinite(diff)
            if not ok.any():
                continue
            diff, datasets = diff[ok], arm["dataset"].to_numpy()[ok]
            by_dataset = [diff[datasets == name] for name in dict.fromkeys(datasets)]
            median, low, high = bootstrap_ci(by_dataset, n_boot=n_boot)
            better = np.mean(np.where(diff * sign > 0, 1.0, np.where(diff == 0, 0.5, 0.0)))
            nonzero = diff[diff != 0]
            p = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else float("nan")
            rows.append(dict(method=method, volume=volume, metric=metric, pairs=len(diff),
                             median=median, low=low, high=high, mean=float(diff.mean()),
                             b_better=float(better), wilcoxon_p=p))
    return pd.DataFrame(rows)


def paired_markdown(table: pd.DataFrame, a_name: str = "a", b_name: str = "b") -> str:
    """The table as markdown: one line per arm and metric."""
    head = (f"Paired differences {b_name} - {a_name} per (dataset, fold) cell: median [95% "
            f"bootstrap CI over datasets], mean, share of cells where {b_name} is better "
            "(ties ½), Wilcoxon signed-rank p.")
    lines = [head, "",
             "| method | volume | metric | pairs | median [CI] | mean | b better | p |",
             "|---|---:|---|---:|---|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.method} | {r.volume:g} | {r.metric} | {r.pairs} | "
                     f"{r.median:+.4f} [{r.low:+.4f}, {r.high:+.4f}] | {r.mean:+.4f} | "
                     f"{r.b_better:.2f} | {r.wilcoxon_p:.3g} |")
    return "\n".join(lines) + "\n"
