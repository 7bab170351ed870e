"""Research question 2: does the structural depth of the fitted SCMs (the longest directed path
of the DAG) go with the stability of fine-tuning (spread across seeds, val-test gap)?

Design, within folds so that a dataset's difficulty and width do not stand in for depth: per
dataset and fold, CausalMixFT's SCM ensemble is fitted once (k sampled DAGs, whose depths
differ); each DAG's SCM *alone* is the synthetic source of S fine-tuning runs that differ only
in their run seed (step batches and synthetic draws; same split, same fitted SCM), and standard
fine-tuning (``real``) runs with the same S seeds as the reference spread.

A unit is (dataset, fold, dag): its depth and edge count, the standard deviation of test
ROC-AUC over the S seeds (``seed_std``), the mean val-test gap and the mean headroom
improvement over zero-shot. The test statistic is the mean over folds of the within-fold
Spearman rho(depth, metric) (folds whose DAGs share one depth carry no information and are
left out); its p-value comes from permuting the depths within each fold (two-sided), so a
fixed alpha is the false-alarm rate under "depth and metric are unrelated".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from causaljax.eval.volume import VolumeStudy
from causaljax.finetune.sources import scm_source

METRICS = ("seed_std", "gap_mean", "headroom_mean")
METRIC_TEXT = {"seed_std": "std of test ROC-AUC across seeds",
               "gap_mean": "mean val-test gap (1 - Spearman rho over checkpoints)",
               "headroom_mean": "mean headroom improvement over zero-shot"}


def grid(datasets, folds: int, dags: int, seeds: int, volume: float, base: dict) -> list[dict]:
    """Run configs: per dataset and fold, zero-shot once, ``real`` with each run seed, and
    ``causalmix`` with each of the ``dags`` fitted SCMs alone and each run seed."""
    if volume <= 0:
        raise ValueError(f"the depth study needs synthetic rows: volume must be > 0, got {volume}")
    out = []
    for dataset in datasets:
        for fold in range(folds):
            at = dict(base, dataset=dataset, fold=fold)
            out.append(dict(at, method="zeroshot", volume=0.0))
            out += [dict(at, method="real", volume=0.0, run_seed=s) for s in range(seeds)]
            out += [dict(at, method="causalmix", volume=float(volume), dag=g, run_seed=s)
                    for g in range(dags) for s in range(seeds)]
    return out


class DepthStudy(VolumeStudy):
    """``VolumeStudy`` whose ``causalmix`` runs draw from one DAG's SCM of the fold's ensemble
    (config key ``dag``) and record that DAG's depth and edge count."""

    def source(self, cfg, generator: str, n_rows: int):
        ensemble = super().source(cfg, generator, n_rows)  # fitted once per fold
        if "dag" not in cfg:
            return ensemble
        if not 0 <= cfg["dag"] < ensemble.scm.k:
            raise ValueError(f"dag {cfg['dag']} is outside the fold's {ensemble.scm.k} SCMs")
        return scm_source(ensemble.scm.select(int(cfg["dag"])))

    def run(self, cfg: dict) -> dict:
        row = super().run(cfg)
        if "dag" in cfg:
            scm = self.source(cfg, "scm", 0).scm
            row.update(depth=int(scm.depth[0]), n_edges=int(np.asarray(scm.parents[0]).sum()))
        return row


def unit_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, fold, dag) of the causalmix runs: depth, n_edges, seeds,
    seed_std, gap_mean, headroom_mean, auc_mean."""
    mix = df[df.method == "causalmix"].astype({"dag": int, "depth": int, "n_edges": int})
    g = mix.groupby(["dataset", "fold", "dag"], sort=True)
    return pd.DataFrame(dict(
        depth=g.depth.first(), n_edges=g.n_edges.first(), seeds=g.test_auc.size(),
        seed_std=g.test_auc.std(ddof=1), gap_mean=g.val_test_gap.mean(),
        headroom_mean=g.headroom.mean(), auc_mean=g.test_auc.mean())).reset_index()


def _fold_groups(units: pd.DataFrame, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(depths, metric values) of each fold with >= 2 finite units, more than one depth and
    more than one metric value (a constant has no ranks to correlate)."""
    out = []
    for _, g in units.groupby(["dataset", "fold"], sort=True):
        g = g[np.isfinite(g[metric].to_numpy(np.float64))]
        if len(g) >= 2 and g.depth.nunique() > 1 and g[metric].nunique() > 1:
            out.append((g.depth.to_numpy(np.float64), g[metric].to_numpy(np.float64)))
    return out


def _permuted_rhos(x, y, rng, n_perm: int) -> np.ndarray:
    """Spearman rho of (x, y), then of (x permuted, y) for n_perm random permutations:
    f[1 + n_perm]. Ranks are taken once: the ranks of a permuted x are its ranks permuted."""
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    perms = np.argsort(rng.random((n_perm, len(x))), axis=1)
    rx_pxn = np.vstack([rx, rx[perms]])
    return rx_pxn @ ry / np.sqrt((rx**2).sum() * (ry**2).sum())


def within_fold_test(units: pd.DataFrame, metric: str, *, n_perm: int = 2000,
                     seed: int = 0) -> dict:
    """Mean within-fold Spearman rho(depth, metric) and its two-sided permutation p-value
    (depths shuffled within each fold; p = (1 + #{|rho*| >= |rho|}) / (1 + n_perm))."""
    groups = _fold_groups(units, metric)
    if not groups:
        return dict(metric=metric, rho=float("nan"), p=float("nan"), folds=0, units=0)
    rng = np.random.default_rng(seed)
    mean_rhos = np.mean([_permuted_rhos(x, y, rng, n_perm) for x, y in groups], axis=0)
    rho, null = mean_rhos[0], mean_rhos[1:]
    hits = np.sum(np.abs(null) >= abs(rho) - 1e-12)
    return dict(metric=metric, rho=float(rho), p=float((1 + hits) / (1 + n_perm)),
                folds=len(groups), units=sum(len(x) for x, _ in groups))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN): reject where adjusted p <= alpha
    and the family-wise false-alarm rate stays at alpha."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, np.float64)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def _median(values) -> float:
    """Median of the finite values (NaN if none)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def spread_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, the median over folds (causalmix: over DAGs) of the std of test ROC-AUC
    across run seeds, and the median val-test gap: is CausalMixFT steadier than ``real``?"""
    rows = []
    for method, keys in (("real", ["dataset", "fold"]), ("causalmix", ["dataset", "fold", "dag"])):
        runs = df[df.method == method]
        if runs.empty:
            continue
        std = runs.groupby(keys).test_auc.std(ddof=1)
        rows.append(dict(method=method, runs=len(runs), groups=len(std),
                         seed_std_median=_median(std), gap_median=_median(runs.val_test_gap),
                         test_auc_median=_median(runs.test_auc)))
    return pd.DataFrame(rows)


def summary_markdown(df: pd.DataFrame, *, alpha: float = 0.05, n_perm: int = 2000,
                     notes: str = "") -> str:
    """The study's report: the within-fold tests, the per-DAG units and the spread of
    ``real`` vs ``causalmix``."""
    units = unit_table(df)
    lines = ["# Structural depth vs fine-tuning stability (research question 2)", "",
             f"{df.dataset.nunique()} datasets, {units.groupby(['dataset', 'fold']).ngroups} "
             f"folds, {len(units)} (fold, DAG) units, {len(df)} runs. Within-fold Spearman "
             f"rho(depth, metric), averaged over folds with more than one depth; permutation "
             f"p-value ({n_perm} within-fold shuffles); Holm's step-down adjustment over "
             f"the {len(METRICS)} metrics keeps the family-wise false-alarm rate at alpha = "
             f"{alpha}.", "",
             "| metric | mean within-fold rho | p | Holm p | folds | units | at alpha |",
             "|---|---|---|---|---|---|---|"]
    tests = [within_fold_test(units, metric, n_perm=n_perm) for metric in METRICS]
    for t, p_holm in zip(tests, holm([t["p"] for t in tests])):
        verdict = ("n/a" if not np.isfinite(p_holm) else
                   "related" if p_holm <= alpha else "no evidence")
        lines.append(f"| {METRIC_TEXT[t['metric']]} | {t['rho']:+.3f} | {t['p']:.3f} "
                     f"| {p_holm:.3f} | {t['folds']} | {t['units']} | {verdict} |")
    lines += ["", "Spread across run seeds (same split, same SCM; median over groups):", "",
              "| method | runs | groups | median std of test AUC | median val-test gap "
              "| median test AUC |", "|---|---|---|---|---|---|"]
    for r in spread_table(df).itertuples():
        lines.append(f"| {r.method} | {r.runs} | {r.groups} | {r.seed_std_median:.4f} "
                     f"| {r.gap_median:.3f} | {r.test_auc_median:.4f} |")
    lines += ["", "Units (one fitted DAG of one fold, its SCM alone as the synthetic source):", "",
              "| dataset | fold | dag | depth | edges | seeds | std of test AUC | val-test gap "
              "| headroom | mean test AUC |", "|---|---|---|---|---|---|---|---|---|---|"]
    for u in units.itertuples():
        lines.append(f"| {u.dataset} | {u.fold} | {u.dag} | {u.depth} | {u.n_edges} | {u.seeds} "
                     f"| {u.seed_std:.4f} | {u.gap_mean:.3f} | {u.headroom_mean:+.3f} "
                     f"| {u.auc_mean:.4f} |")
    return "\n".join(lines + ([""] + [notes] if notes else [])) + "\n"


def plot_depth(df: pd.DataFrame, path: str) -> None:
    """depth_vs_stability.png: each unit's depth against each metric, one colour per dataset
    (depths jittered a little so ties show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causaljax.eval.files import write_atomically

    units = unit_table(df)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, METRICS):
        for name, g in units.groupby("dataset", sort=True):
            ax.scatter(g.depth + rng.uniform(-0.12, 0.12, len(g)), g[metric], s=18, label=name)
        ax.set_xlabel("SCM depth (longest path)")
        ax.set_ylabel(METRIC_TEXT[metric], fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
