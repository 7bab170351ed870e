"""Fidelity of synthetic rows: how close they are to held-out real rows of the same split.

All functions take rows in a ``causaljax.data.Table``'s encoded space (f[n, d], categorical
columns as level codes) and ``n_levels`` int[d] (0 = numeric). Three families of scores, the
ones SDMetrics reports (column shapes, column-pair trends, detection), computed here with
SciPy / scikit-learn because SDMetrics pins pandas < 3 (this package runs on pandas 3):

* ``marginal_distances``: per column, the Kolmogorov-Smirnov statistic of a numeric column
  (SDMetrics' KSComplement is 1 - this) or the total-variation distance of a categorical
  column's level frequencies (TVComplement is 1 - this). 0 = same marginal, 1 = disjoint.
* ``correlation_errors``: |Pearson(real) - Pearson(synthetic)| per pair of columns, on the
  encoded values (a binary column's code gives the point-biserial correlation). The issue-23
  target reads its maximum over the truly adjacent pairs of a simulated DAG.
  ``contingency_errors``: for pairs with a categorical column, the total-variation distance
  of the two-way frequency tables, numeric columns cut at quintiles of the real rows
  (SDMetrics' ContingencySimilarity is 1 - this).
* ``detection_auc``: a classifier two-sample test. Real and synthetic rows (as many of
  each) are labelled 0 / 1 and a gradient-boosted tree classifier (scikit-learn
  HistGradientBoosting, categorical columns as categorical features) predicts the label
  out of fold (stratified K-fold); the ROC-AUC of those predictions is 0.5 when the two
  sets cannot be told apart and 1 when they are separable. Trees see nonlinear and
  interaction differences that SDMetrics' LogisticDetection misses, so this is the stricter
  reading.

``score`` bundles them into one dict; ``generator_fidelity`` scores every generator of the
package (each fitted DAG's SCM alone, the SCM ensemble, copula, TabEBM, CTGAN when installed)
against held-out rows; ``simulate`` draws a table from a random DAG with known structure
(the ground truth of the tests and of ``experiments/fidelity.py --simulate``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
from scipy.stats import ks_2samp

SCORES = ("marginal", "marginal_max", "corr_error", "corr_error_max", "contingency",
          "detection_auc")


def _as_float(rows) -> np.ndarray:
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2:
        raise ValueError(f"rows must be 2-D [n, d], got shape {rows.shape}")
    return rows


def _check(real, syn, n_levels):
    real, syn = _as_float(real), _as_float(syn)
    n_levels = np.asarray(n_levels, np.int64)
    if real.shape[1] != syn.shape[1] or n_levels.shape != (real.shape[1],):
        raise ValueError(f"column mismatch: real {real.shape}, synthetic {syn.shape}, "
                         f"n_levels {n_levels.shape}")
    if len(real) < 2 or len(syn) < 2:
        raise ValueError("need at least 2 real and 2 synthetic rows")
    return real, syn, n_levels


def _frequencies(codes, levels: int) -> np.ndarray:
    codes = np.clip(np.round(codes), 0, levels - 1).astype(np.int64)
    return np.bincount(codes, minlength=levels) / len(codes)


def marginal_distances(real, syn, n_levels) -> np.ndarray:
    """f64[d]: KS statistic (numeric) or total-variation distance (categorical) per column."""
    real, syn, n_levels = _check(real, syn, n_levels)
    out = np.empty(real.shape[1])
    for j, L in enumerate(n_levels):
        if L > 0:
            out[j] = 0.5 * np.abs(_frequencies(real[:, j], L) - _frequencies(syn[:, j], L)).sum()
        else:
            out[j] = ks_2samp(real[:, j], syn[:, j]).statistic
    return out


def correlations(rows) -> np.ndarray:
    """f64[d, d] Pearson correlations of the encoded columns; a constant column correlates 0
    with everything (and 1 with itself)."""
    x = _as_float(rows)
    x = x - x.mean(0)
    sd = np.sqrt((x * x).mean(0))
    z = np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)
    c = z.T @ z / len(z)
    np.fill_diagonal(c, 1.0)
    return np.clip(c, -1.0, 1.0)


def correlation_errors(real, syn) -> np.ndarray:
    """f64[d, d]: |corr(real) - corr(synthetic)|, zero diagonal."""
    return np.abs(correlations(real) - correlations(syn))


def _bin_codes(real_col, syn_col, levels: int, bins: int):
    if levels > 0:
        r = np.clip(np.round(real_col), 0, levels - 1).astype(np.int64)
        s = np.clip(np.round(syn_col), 0, levels - 1).astype(np.int64)
        return r, s, levels
    edges = np.unique(np.quantile(real_col, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, real_col), np.searchsorted(edges, syn_col), len(edges) + 1


def contingency_errors(real, syn, n_levels, *, bins: int = 5) -> np.ndarray:
    """f64[d, d]: total-variation distance of the two-way frequency tables for pairs with at
    least one categorical column (numeric columns in ``bins`` quantile bins of the real
    rows); NaN for numeric-numeric pairs and on the diagonal."""
    real, syn, n_levels = _check(real, syn, n_levels)
    d = real.shape[1]
    out = np.full((d, d), np.nan)
    coded = [_bin_codes(real[:, j], syn[:, j], n_levels[j], bins) for j in range(d)]
    for i in range(d):
        for j in range(i + 1, d):
            if n_levels[i] == 0 and n_levels[j] == 0:
                continue
            (ri, si, li), (rj, sj, lj) = coded[i], coded[j]
            fr = np.bincount(ri * lj + rj, minlength=li * lj) / len(ri)
            fs = np.bincount(si * lj + sj, minlength=li * lj) / len(si)
            out[i, j] = out[j, i] = 0.5 * np.abs(fr - fs).sum()
    return out


def detection_auc(real, syn, n_levels, *, seed: int = 0, folds: int = 3,
                  max_rows: int = 1000) -> float:
    """Out-of-fold ROC-AUC of a boosted-tree classifier telling synthetic from real rows
    (module docstring). Both sets are subsampled to the same size, at most ``max_rows``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    real, syn, n_levels = _check(real, syn, n_levels)
    rng = np.random.default_rng(seed)
    m = min(len(real), len(syn), int(max_rows))
    real = real[rng.choice(len(real), m, replace=False)]
    syn = syn[rng.choice(len(syn), m, replace=False)]
    x = np.concatenate([real, syn])
    y = np.r_[np.zeros(m), np.ones(m)]
    categorical = n_levels > 0
    for j in np.flatnonzero(categorical):  # codes as they are; HGB wants them in 0..L-1
        x[:, j] = np.clip(np.round(x[:, j]), 0, n_levels[j] - 1)
    categorical &= n_levels <= 255
    clf = HistGradientBoostingClassifier(
        max_iter=60, learning_rate=0.1, max_leaf_nodes=15, early_stopping=False,
        categorical_features=categorical if categorical.any() else None, random_state=seed)
    cv = StratifiedKFold(n_splits=min(folds, m), shuffle=True, random_state=seed)
    # one OpenMP thread: at <= 2000 rows the boosting is fast on one core, and its threads
    # spin-wait on a busy machine (9 s per fit measured on 2 shared cores, < 1 s with one);
    # the fit does not depend on the thread count
    with threadpool_limits(limits=1, user_api="openmp"):
        p = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def score(real, syn, n_levels, *, adjacent=None, seed: int = 0, detection: bool = True) -> dict:
    """The fidelity scores of ``SCORES`` (means and maxima over columns / pairs; with a
    bool[d, d] ``adjacent`` mask the correlation scores cover only those pairs)."""
    real, syn, n_levels = _check(real, syn, n_levels)
    d = real.shape[1]
    marg = marginal_distances(real, syn, n_levels)
    err = correlation_errors(real, syn)
    pairs = np.triu(np.ones((d, d), bool), 1)
    if adjacent is not None:
        a = np.asarray(adjacent, bool)
        pairs &= a | a.T
    cont = contingency_errors(real, syn, n_levels)[np.triu(np.ones((d, d), bool), 1)]
    cont = cont[np.isfinite(cont)]
    return dict(
        marginal=float(marg.mean()), marginal_max=float(marg.max()),
        corr_error=float(err[pairs].mean()) if pairs.any() else np.nan,
        corr_error_max=float(err[pairs].max()) if pairs.any() else np.nan,
        contingency=float(cont.mean()) if cont.size else np.nan,
        detection_auc=detection_auc(real, syn, n_levels, seed=seed) if detection else np.nan)


# ---------------------------------------------------------------------------------------
# every generator of the package


def generators_available() -> tuple[str, ...]:
    """The generators ``generator_fidelity`` scores by default (CTGAN only if installed)."""
    base = ("scm", "copula", "tabebm")
    return base + (("ctgan",) if importlib.util.find_spec("ctgan") is not None else ())


def generator_fidelity(train, heldout_rows, *, key, generators=None, n_rows: int = 1024,
                       tfm=None, options: dict | None = None, per_dag: bool = True,
                       adjacent=None, seed: int = 0, keep_rows: bool = False) -> list[dict]:
    """One dict per scored generator (``generator`` name + ``score``'s keys) for generators
    fitted to the Table ``train``, against the real rows ``heldout_rows`` (encoded).

    "scm" yields the ensemble (rows cycling through the k SCMs, as fine-tuning draws them)
    and, with ``per_dag``, each DAG's SCM alone ("scm[s]", with its ``edges`` and
    ``depth``). TabEBM needs ``tfm`` (it is skipped without one). ``options``: generator ->
    keyword options of its ``make_source``. ``keep_rows``: each dict also holds the scored
    synthetic ``rows``."""
    import jax

    from causaljax.finetune.generators import make_source
    from causaljax.sampler import sample

    generators = generators_available() if generators is None else tuple(generators)
    options = options or {}
    n_levels = train.n_levels
    out = []
    for g, name in enumerate(generators):
        if name == "tabebm" and tfm is None:
            continue
        gkey, dkey = jax.random.split(jax.random.fold_in(key, g))
        src = make_source(name, train, key=gkey, n_rows=n_rows, tfm=tfm,
                          **options.get(name, {}))
        rows = np.asarray(src.draw(dkey, n_rows))
        out.append(dict(generator=name if name != "scm" else "scm ensemble",
                        **score(heldout_rows, rows, n_levels, adjacent=adjacent, seed=seed),
                        **({"rows": rows} if keep_rows else {})))
        if name == "scm" and per_dag:
            per = np.asarray(sample(src.scm, jax.random.fold_in(dkey, 1), n_rows))  # [k, n, d]
            parents, depth = np.asarray(src.scm.parents), np.asarray(src.scm.depth)
            for s in range(per.shape[0]):
                out.append(dict(generator=f"scm[{s}]", edges=int(parents[s].sum()),
                                depth=int(depth[s]),
                                **score(heldout_rows, per[s], n_levels, adjacent=adjacent,
                                        seed=seed),
                                **({"rows": per[s]} if keep_rows else {})))
    return out


# ---------------------------------------------------------------------------------------
# tables with a known DAG


def simulate(d: int = 15, n: int = 2000, *, kind: str = "linear", seed: int = 0,
             edge_prob: float | None = None, n_categorical: int = 3):
    """(Table, adjacency bool[d, d]) drawn from a random DAG over x0..x{d-1} in that
    order (expected 1.5·d edges unless ``edge_prob``). Each node is a weighted sum of its
    parents' (standardized) values plus noise, standardized; ``kind="nonlinear"`` passes each
    parent through a random monotone nonlinearity (tanh, softplus, cube root) and uses
    uniform noise. ``n_categorical`` nodes (spread over the order, the last one the target
    "y") are cut from their latent value: binary at a random quantile, or 3 levels;
    n_categorical >= 1 (the target is categorical)."""
    import pandas as pd

    from causaljax.data import Table

    if n_categorical < 1:
        raise ValueError("n_categorical must be >= 1 (the target y is categorical)")
    if kind not in ("linear", "nonlinear"):
        raise ValueError(f"kind must be 'linear' or 'nonlinear', got {kind!r}")
    rng = np.random.default_rng(seed)
    p = 3.0 / (d - 1) if edge_prob is None else edge_prob
    A = np.triu(rng.random((d, d)) < p, 1)
    cat_nodes = set(np.linspace(d // 3, d - 1, n_categorical).round().astype(int).tolist())
    funcs = (np.tanh, lambda x: np.log1p(np.exp(2 * x)), np.cbrt)
    X = np.zeros((n, d))
    levels = {}
    for j in range(d):
        noise = (rng.uniform(-1.7, 1.7, n) if kind == "nonlinear" else rng.normal(size=n))
        z = 0.6 * noise
        for i in np.flatnonzero(A[:, j]):
            w = rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
            xi = (X[:, i] - X[:, i].mean()) / X[:, i].std()
            if kind == "nonlinear":
                f = funcs[rng.integers(len(funcs))]
                xi = f(xi)
                xi = (xi - xi.mean()) / xi.std()
            z = z + w * xi
        z = (z - z.mean()) / z.std()
        if j in cat_nodes:
            L = 2 if (j == d - 1 or rng.random() < 0.5) else 3
            cuts = np.quantile(z, np.sort(rng.uniform(0.25, 0.75, L - 1)))
            X[:, j] = np.searchsorted(cuts, z)
            levels[j] = L
        else:
            X[:, j] = z
    names = [f"x{j}" for j in range(d - 1)] + ["y"]
    df = pd.DataFrame({names[j]: (pd.Categorical(X[:, j].astype(int)) if j in levels
                                  else X[:, j]) for j in range(d)})
    return Table.from_pandas(df, target="y"), A


# ---------------------------------------------------------------------------------------
# the volume study: one fidelity score per (fold, generator), reported per method

STUDY_ROWS = 512  # synthetic and held-out rows scored per fold and generator
STUDY_COLUMNS = ("marginal", "corr_error", "corr_error_max", "contingency", "detection_auc")


def study_columns(study, cfg: dict) -> dict:
    """``fid_*`` result columns of a volume-study run (``causaljax.eval.volume.VolumeStudy``):
    the run's generator as fitted for its fold (the study's cached source), STUDY_ROWS rows
    drawn from it against as many held-out test rows of the fold's split. Computed once per
    (fold, generator), so ``causalmix`` and ``scm`` share the SCM ensemble's score; {} for a
    method without synthetic rows."""
    from causaljax.finetune import methods as methods_lib

    m = methods_lib.get(cfg["method"])
    if not m.synthetic:
        return {}
    cache = study.__dict__.setdefault("_fidelity", {})
    fid = (*study.fold_id(cfg), m.generator)
    if fid not in cache:
        import jax

        sources = [s for k, s in study._sources.items() if tuple(k[:-1]) == fid]
        if not sources:
            return {}
        split, table = study.split(cfg), study.table(cfg)
        rng = np.random.default_rng([cfg["seed"], cfg["fold"]])
        held = table.values[rng.permutation(split.test)[:STUDY_ROWS]]
        key = jax.random.fold_in(study.fold_key(cfg), 0x6F1D)
        rows = np.asarray(sources[0].draw(key, len(held)))
        s = score(held, rows, table.n_levels, seed=cfg["seed"])
        cache[fid] = {f"fid_{k}": s[k] for k in STUDY_COLUMNS}
    return cache[fid]


def with_fidelity(study, run):
    """``run(cfg) -> dict`` (or ``run_group(cfgs) -> [dict]``) of ``study`` with the
    ``study_columns`` added to every result."""
    def one(cfg):
        return {**run(cfg), **study_columns(study, cfg)}

    def group(cfgs):
        return [{**r, **study_columns(study, c)} for c, r in zip(cfgs, run(cfgs), strict=True)]

    return one, group


def fidelity_table(df):
    """Per method with synthetic rows: folds scored and the median over them of each
    ``fid_*`` column (a study results frame; empty frame without fidelity columns)."""
    import pandas as pd

    cols = [f"fid_{k}" for k in STUDY_COLUMNS if f"fid_{k}" in df.columns]
    if not cols:
        return pd.DataFrame()
    per_fold = df.dropna(subset=cols, how="all").groupby(
        ["method", "dataset", "fold"])[cols].first()
    t = per_fold.groupby("method").median()
    t.insert(0, "folds", per_fold.groupby("method").size())
    return t


def fidelity_markdown(df) -> str:
    """The fidelity section of the volume study's summary.md ('' without fidelity columns)."""
    t = fidelity_table(df)
    if t.empty:
        return ""
    names = {"fid_marginal": "marginal dist.", "fid_corr_error": "corr. error (mean)",
             "fid_corr_error_max": "corr. error (max)", "fid_contingency": "contingency dist.",
             "fid_detection_auc": "detection AUC"}
    lines = ["Fidelity of the synthetic rows (causaljax.eval.fidelity): per fold, "
             f"{STUDY_ROWS} rows of the method's generator against as many held-out test rows; "
             "medians over folds. Marginal: mean KS / total-variation distance per column; "
             "corr. error: |Pearson(real) - Pearson(synthetic)| over column pairs; contingency: "
             "total-variation distance of two-way tables with a categorical column; detection "
             "AUC: out-of-fold ROC-AUC of a boosted-tree classifier telling synthetic from real "
             "rows (0.5 = indistinguishable).", "",
             "| method | folds | " + " | ".join(names[c] for c in t.columns[1:]) + " |",
             "|---|---:|" + "---:|" * (len(t.columns) - 1)]
    for method, row in t.iterrows():
        lines.append(f"| {method} | {int(row.folds)} | "
                     + " | ".join("–" if not np.isfinite(v) else f"{v:.3f}"
                                  for v in row.iloc[1:]) + " |")
    return "\n".join(lines)
