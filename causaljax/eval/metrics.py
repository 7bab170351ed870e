"""Metrics of the fine-tuning study: ROC-AUC, normalized improvement, ranks, win rates,
validation-test gap and bootstrap confidence intervals (NumPy, scipy's rankdata,
scikit-learn's roc_auc_score).

ROC-AUC is scikit-learn's ``roc_auc_score`` (one definition everywhere: the studies,
``zero_shot.py``, the classifier); multiclass is one-vs-rest, macro-averaged over the classes
that occur in ``y_true`` (scikit-learn's ``multi_class="ovr", average="macro"`` when every
class occurs); NaN where it is undefined (one class, non-finite scores).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(y_true, scores) -> float:
    """ROC-AUC of int labels y_true[n] and scores: f[n] (binary, score of class 1) or f[n, K]
    (class probabilities / scores, one-vs-rest macro). NaN if fewer than two classes occur."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, np.float64)
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim == 1:
        return _binary_auc(y == 1, s) if np.unique(y).size == 2 else float("nan")
    present = [c for c in range(s.shape[1]) if 0 < (y == c).sum() < len(y)]
    if len(present) < 2:
        return float("nan")
    return float(np.mean([_binary_auc(y == c, s[:, c]) for c in present]))


def _binary_auc(positive_n, score_n) -> float:
    from sklearn.metrics import roc_auc_score

    if not np.isfinite(score_n).all():
        return float("nan")
    n_pos = int(positive_n.sum())
    if n_pos == 0 or n_pos == len(positive_n):
        return float("nan")
    return float(roc_auc_score(positive_n, score_n))


def spearman(a, b) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); NaN if either is
    constant or shorter than 2."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        return float("nan")
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def selection_ranks(scores, losses=None) -> np.ndarray:
    """Average ranks (1 = worst) of checkpoints ordered as checkpoint selection orders them:
    higher score first, equal scores by lower log loss (``losses``; NaN counts as the worst
    loss); checkpoints equal in both share their average rank."""
    s = np.asarray(scores, np.float64)
    if losses is None:
        return rankdata(s)
    loss = np.asarray(losses, np.float64)
    neg = np.where(np.isfinite(loss), -loss, -np.inf)
    key = rankdata(s, method="dense") * (len(s) + 1) + rankdata(neg, method="dense")
    return rankdata(key)


def val_test_gap(val_aucs, test_aucs, val_losses=None, test_losses=None) -> float:
    """1 - Spearman rho between the validation and the test ranking of a run's checkpoints
    (0: validation ranks the checkpoints exactly as test does; 1: unrelated; 2: reversed).

    Each side ranks the checkpoints the way fine-tuning selects them: ROC-AUC, and among equal
    ROC-AUCs the lower log loss (when ``val_losses`` / ``test_losses`` are given). The
    tie-break matters: on a small validation split the ROC-AUC takes few values (16 rows:
    steps of 1/63 or coarser) and is often the same at every checkpoint (e.g. 1.0), where the
    plain ROC-AUC correlation is undefined. Checkpoints whose ROC-AUC is not finite on either
    side are left out.

    Defined for every run with at least two checkpoints (NaN with fewer: zero-shot has one).
    If one side cannot tell the checkpoints apart at all (every checkpoint tied even after the
    tie-break, e.g. weights that never changed), rho = 0 and the gap is 1: validation carries
    no information about the test order."""
    va, te = np.asarray(val_aucs, np.float64), np.asarray(test_aucs, np.float64)
    if va.shape != te.shape:
        raise ValueError(f"{va.shape} validation vs {te.shape} test scores")
    ok = np.isfinite(va) & np.isfinite(te)
    if ok.sum() < 2:
        return float("nan")
    pick = lambda x: None if x is None else np.asarray(x, np.float64)[ok]
    rv = selection_ranks(va[ok], pick(val_losses)) - (ok.sum() + 1) / 2
    rt = selection_ranks(te[ok], pick(test_losses)) - (ok.sum() + 1) / 2
    denom = np.sqrt((rv**2).sum() * (rt**2).sum())
    return float(1.0 - ((rv * rt).sum() / denom if denom > 0 else 0.0))


def relative_improvement(auc, auc_zero_shot):
    """(AUC_m / AUC_zs - 1) * 100, in percent."""
    return (np.asarray(auc, np.float64) / np.asarray(auc_zero_shot, np.float64) - 1.0) * 100.0


def headroom_improvement(auc, auc_zero_shot):
    """(AUC_m - AUC_zs) / (1 - AUC_zs): share of the zero-shot model's headroom closed
    (NaN where zero-shot is already perfect)."""
    auc, zs = np.asarray(auc, np.float64), np.asarray(auc_zero_shot, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(zs < 1.0, (auc - zs) / (1.0 - zs), np.nan)


def ranks(scores_TxM) -> np.ndarray:
    """Rank of each method (column) within each task (row), 1 = best (highest score); ties
    share the average rank; NaN scores rank last. -> f[T, M]."""
    s = np.asarray(scores_TxM, np.float64)
    s = np.where(np.isfinite(s), s, -np.inf)
    return np.vstack([rankdata(-row) for row in s]) if len(s) else np.zeros_like(s)


def win_rate(scores_n, baseline_n) -> float:
    """Share of tasks where a method beats the baseline; ties count one half. NaN pairs are
    left out."""
    a, b = np.asarray(scores_n, np.float64), np.asarray(baseline_n, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan")
    return float(np.mean((a[ok] > b[ok]) + 0.5 * (a[ok] == b[ok])))


def bootstrap_ci(values_by_group, stat=np.median, *, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(stat, low, high): percentile bootstrap over groups (datasets). ``values_by_group`` is a
    1-d array (one value per dataset) or a list of arrays (several values per dataset, e.g.
    folds: the groups are resampled whole and their values pooled)."""
    groups = [np.atleast_1d(np.asarray(g, np.float64)) for g in values_by_group]
    groups = [g[np.isfinite(g)] for g in groups]
    groups = [g for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    point = float(stat(np.concatenate(groups)))
    if len(groups) == 1:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    boot = np.array([stat(np.concatenate([groups[i] for i in p])) for p in picks])
    alpha = (1 - level) / 2
    return point, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))
