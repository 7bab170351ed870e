"""Research question 4: cross-domain transfer. Fine-tune on (real + synthetic) rows of one
dataset, then use the fine-tuned weights in context on datasets of the same and of other
domains: does fine-tuning help or hurt elsewhere, and does CausalMixFT hurt less than standard
fine-tuning?

A run fine-tunes one method on one fold of one *source* dataset (early stopping on the
source's validation rows, as in the volume study) and scores the best weights on the test rows
of every *target* dataset's fold of the same index (its n_train training rows as context, no
gradient step). The transfer effect on a target is delta = AUC(fine-tuned weights) -
AUC(pretrained weights), both on the same target split; on the source itself it is the usual
gain over zero-shot. Domains come from the suite (``causaljax.data.suite``).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from causaljax.eval.metrics import bootstrap_ci, win_rate
from causaljax.eval.volume import VolumeStudy
from causaljax.finetune import methods as methods_lib
from causaljax.finetune.loop import scores

HARM = 0.01  # a target counts as harmed when its ROC-AUC drops by more than this


def grid(sources, folds: int, methods, volume: float, targets, base: dict) -> list[dict]:
    """One config per (source, fold, method); synthetic methods at ``volume``."""
    out = []
    for source in sources:
        for fold in range(folds):
            for name in methods:
                vol = float(volume) if methods_lib.get(name).synthetic else 0.0
                out.append(dict(base, dataset=source, fold=fold, method=name, volume=vol,
                                targets=",".join(t for t in targets if t != source)))
    return out


class TransferStudy(VolumeStudy):
    """``VolumeStudy`` whose runs also score their fine-tuned weights on the config's
    ``targets`` (comma-separated dataset names, each in ``tables``)."""

    def run(self, cfg: dict) -> dict:
        t0 = time.perf_counter()
        result, n_syn = self.fit(cfg)
        row = self._row(cfg, result, n_syn)
        weights = self.params if result is None else result.params
        names = [t for t in cfg["targets"].split(",") if t]
        at = [dict(cfg, dataset=t) for t in names]
        row.update(target_names=names,
                   target_aucs=[scores(weights, self.mc, self.task(c), "test")[0] for c in at],
                   target_zero_shot_aucs=[self.zero_shot(c)["test_auc"] for c in at],
                   seconds=time.perf_counter() - t0)
        return row


def transfer_table(df: pd.DataFrame, domains: dict) -> pd.DataFrame:
    """Long table, one row per (run, target) plus one per run for its source itself
    (``target == source``): source, target, their domains, fold, method, volume, kind
    ('source' | 'same domain' | 'other domain'), auc, zero_shot_auc, delta."""
    rows = []
    for r in df.itertuples():
        rows.append(dict(source=r.dataset, target=r.dataset, fold=r.fold, method=r.method,
                         volume=r.volume, auc=r.test_auc, zero_shot_auc=r.zero_shot_auc))
        for t, auc, zs in zip(r.target_names, r.target_aucs, r.target_zero_shot_aucs):
            rows.append(dict(source=r.dataset, target=t, fold=r.fold, method=r.method,
                             volume=r.volume, auc=auc, zero_shot_auc=zs))
    long = pd.DataFrame(rows)
    long["source_domain"] = long.source.map(domains)
    long["target_domain"] = long.target.map(domains)
    long["kind"] = np.where(long.source == long.target, "source",
                            np.where(long.source_domain == long.target_domain, "same domain",
                                     "other domain"))
    long["delta"] = long.auc - long.zero_shot_auc
    return long


def effect_table(long: pd.DataFrame, *, n_boot: int = 1000) -> pd.DataFrame:
    """Per method and kind: median delta with a bootstrap CI over source datasets, mean
    delta, share of targets harmed (delta < -HARM), pairs."""
    rows = []
    for (method, kind), g in long.groupby(["method", "kind"], sort=True):
        by_source = [s.delta.to_numpy(np.float64) for _, s in g.groupby("source", sort=True)]
        med, lo, hi = bootstrap_ci(by_source, n_boot=n_boot)
        rows.append(dict(method=method, kind=kind, pairs=len(g), sources=g.source.nunique(),
                         delta_median=med, delta_lo=lo, delta_hi=hi,
                         delta_mean=float(g.delta.mean()),
                         harmed=float((g.delta < -HARM).mean())))
    return pd.DataFrame(rows)


def paired_table(long: pd.DataFrame, baseline: str = "real") -> pd.DataFrame:
    """Each other method against ``baseline`` on the same (source, fold, target): win rate
    (ties half) and median paired AUC difference, per kind."""
    key = ["source", "fold", "target"]
    base = long[long.method == baseline].set_index(key)
    rows = []
    for (method, kind), g in long[long.method != baseline].groupby(["method", "kind"], sort=True):
        b = base.auc.reindex(pd.MultiIndex.from_frame(g[key])).to_numpy(np.float64)
        a = g.auc.to_numpy(np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        rows.append(dict(method=method, kind=kind, pairs=int(ok.sum()),
                         win_rate=win_rate(a, b),
                         diff_median=float(np.median(a[ok] - b[ok])) if ok.any() else np.nan))
    return pd.DataFrame(rows)


def domain_matrix(long: pd.DataFrame, method: str) -> pd.DataFrame:
    """Median delta of ``method`` per (source domain, target domain), the source rows left out."""
    g = long[(long.method == method) & (long.kind != "source")]
    return g.pivot_table(index="source_domain", columns="target_domain", values="delta",
                         aggfunc="median")


def _in_kind_order(t: pd.DataFrame) -> pd.DataFrame:
    """Rows by method, then source / same domain / other domain."""
    if t.empty:
        return t
    order = {"source": 0, "same domain": 1, "other domain": 2}
    return t.sort_values(["method", "kind"], key=lambda c: c.map(order) if c.name == "kind" else c)


def summary_markdown(df: pd.DataFrame, domains: dict, *, notes: str = "") -> str:
    long = transfer_table(df, domains)
    eff = _in_kind_order(effect_table(long))
    lines = ["# Cross-domain transfer of fine-tuning (research question 4)", "",
             f"{df.dataset.nunique()} source datasets, {long.target.nunique()} datasets in all, "
             f"{df.fold.nunique()} fold(s), {len(df)} fine-tuning runs. delta = test ROC-AUC with "
             "the fine-tuned weights - with the pretrained weights, on the same split; "
             "'source' is the dataset fine-tuned on. CIs: bootstrap over source datasets.", "",
             "| method | on | pairs | median delta [95% CI] | mean delta "
             f"| harmed (delta < -{HARM}) |", "|---|---|---|---|---|---|"]
    for r in eff.itertuples():
        ci = (f"[{r.delta_lo:+.4f}, {r.delta_hi:+.4f}]" if r.sources > 1
              else "(one source: no CI)")
        lines.append(f"| {r.method} | {r.kind} | {r.pairs} | {r.delta_median:+.4f} {ci} "
                     f"| {r.delta_mean:+.4f} | {r.harmed:.0%} |")
    paired = _in_kind_order(paired_table(long))
    if not paired.empty:
        lines += ["", "Against standard fine-tuning (`real`) on the same source, fold and target:",
                  "", "| method | on | pairs | win rate | median AUC difference |",
                  "|---|---|---|---|---|"]
        for r in paired.itertuples():
            lines.append(f"| {r.method} | {r.kind} | {r.pairs} | {r.win_rate:.2f} "
                         f"| {r.diff_median:+.4f} |")
    for method in sorted(long.method.unique()):
        m = domain_matrix(long, method)
        if m.empty:
            continue
        lines += ["", f"Median delta of `{method}`, source domain (rows) -> target domain "
                  "(columns):", "", "| source \\ target | " + " | ".join(m.columns) + " |",
                  "|---" * (len(m.columns) + 1) + "|"]
        for dom, vals in m.iterrows():
            lines.append(f"| {dom} | " + " | ".join(
                "" if not np.isfinite(v) else f"{v:+.4f}" for v in vals) + " |")
    return "\n".join(lines + ([""] + [notes] if notes else [])) + "\n"
