"""Plots of a volume study: improvement vs volume per method, val-test gap vs volume."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from causaljax.eval.files import write_atomically
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


MARKERS = ("s", "^", "D", "v", "P", "X", "<", ">")  # synthetic methods; "real" is a star
OFFSET_POINTS = 4.0  # horizontal shift between the methods' markers, in points


def draw_curves(ax, t, value: str) -> dict:
    """One line per method on ``ax``, each with its own marker and a small horizontal shift
    (in points, so it does not depend on the axis scale), and "real" drawn last, on top, as
    a large star: every arm stays visible where the curves share a point (each synthetic
    curve starts at the volume-0 "real" point). -> method: Line2D."""
    from matplotlib.transforms import offset_copy

    curves = list(_curves(t, value))
    curves.sort(key=lambda c: c[0] == "real")  # real last: drawn on top
    lines, synthetic = {}, 0
    for i, (method, vol, y) in enumerate(curves):
        shift = (i - (len(curves) - 1) / 2) * OFFSET_POINTS
        trans = offset_copy(ax.transData, fig=ax.figure, x=shift, y=0.0, units="points")
        med, lo, hi = y[:, 0], y[:, 1], y[:, 2]
        if method == "real":
            style = dict(marker="*", markersize=13, color="black", zorder=5, ls="none",
                         markeredgecolor="white")
        else:
            style = dict(marker=MARKERS[synthetic % len(MARKERS)], markersize=6, zorder=3,
                         alpha=0.9)
            synthetic += 1
        line, = ax.plot(vol, med, label=method, transform=trans, **style)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any() and method != "real":
            ax.fill_between(vol[ok], lo[ok], hi[ok], alpha=0.1, color=line.get_color(),
                            transform=trans)
        elif ok.any():  # one point: its CI as an error bar
            ax.errorbar(vol[ok], med[ok], yerr=[med[ok] - lo[ok], hi[ok] - med[ok]],
                        fmt="none", ecolor="black", capsize=3, zorder=4, transform=trans)
        lines[method] = line
        pts = np.column_stack([np.r_[vol, vol, vol], np.r_[med, lo, hi]])
        ax.update_datalim(pts[np.isfinite(pts).all(1)])  # shifted artists skip autoscaling
    ax.autoscale_view()
    return lines


def plot_curves(t, value: str, ylabel: str, path: str, zero_line: bool) -> str:
    """Median of column family ``value`` (``value``_median / _lo / _hi of a summary table) vs
    volume, one line per method with its CI band (``draw_curves``); written atomically to
    ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_curves(ax, t, value)
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
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
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
