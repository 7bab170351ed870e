"""Plots of a volume study: improvement vs volume per method, val-test gap vs volume."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from causaljax.eval.report import summary_table


def _curves(t, value: str):
    """Per method: volumes f[V] and (median, lo, hi) f[V, 3]; the volume-0 'real' point
    starts every synthetic method's curve (volume 0 = standard fine-tuning)."""
    real = t[t.method == "real"]
    cols = [f"{value}_median", f"{value}_lo", f"{value}_hi"]
    for method, g in t[t.method != "zeroshot"].groupby("method", sort=True):
        if method != "real":
            g = pd.concat([real, g]).sort_values("volume")
        yield method, g.volume.to_numpy(np.float64), g[cols].to_numpy(np.float64)


def plot_curves(t, value: str, ylabel: str, path: str, zero_line: bool) -> str:
    """Median of column family ``value`` (``value``_median / _lo / _hi of a summary table) vs
    volume, one line per method with its CI band; written atomically to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, vol, y in _curves(t, value):
        med, lo, hi = y[:, 0], y[:, 1], y[:, 2]
        line, = ax.plot(vol, med, marker="o", label=method)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(vol[ok], lo[ok], hi[ok], alpha=0.1, color=line.get_color())
    if zero_line:
        ax.axhline(0.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=0.5)
    ticks = sorted(set(t.volume))
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("synthetic rows per real row (volume)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_study(df, out_dir: str) -> list[str]:
    """Write improvement_vs_volume.png and gap_vs_volume.png into out_dir; returns paths."""
    t = summary_table(df, n_boot=500)
    return [
        plot_curves(t, "headroom", "median headroom improvement over zero-shot",
              os.path.join(out_dir, "improvement_vs_volume.png"), True),
        plot_curves(t, "gap", "median val-test gap (1 - Spearman)",
              os.path.join(out_dir, "gap_vs_volume.png"), False),
    ]
