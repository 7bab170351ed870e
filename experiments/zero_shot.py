"""Zero-shot ROC-AUC of the shipped TFM against classical baselines on the public suite.

    python experiments/zero_shot.py                                    # full: hours on 2 CPUs
    python experiments/zero_shot.py --datasets iris wine --n-train 64 --folds 2   # ~2 min
    python experiments/zero_shot.py --half test --n-train 64 256 --folds 5 --out results/zs_test.csv

--half dev / test: only that half of the suite (causaljax.data.suite: every choice about the
TFM is made on the dev half; the test half is reported separately).
--model tabicl / tabpfn / mitra --checkpoint PATH: a ported TFM (causaljax.tfm.api) with the
weights at PATH instead of the shipped row-token model; a missing file exits 2 naming where
the model's authors publish it (nothing is downloaded).

For every dataset that fits the TFM (<= 100 features, <= 10 classes) and n_train in
--n-train, --folds stratified low-data splits (causaljax.data.low_data_splits, no validation
rows): the TFM (TFMClassifier, training rows as context, no gradient step), logistic
regression (standardized, categorical columns one-hot), random forest and histogram gradient
boosting (categorical columns as codes) are scored by ROC-AUC on the test rows (one-vs-rest
macro average for multiclass). Writes --out (CSV: dataset, n_train, fold, model, roc_auc,
seconds), rewritten atomically after every (dataset, n_train), so a rerun with the same --out
resumes where an interrupted run stopped; then the table ``<out>.md`` (median / mean ROC-AUC
and mean rank per model and n_train) and the plot ``<out>.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax.data import load, low_data_splits, suite
from causaljax.data.suite import HALVES
from causaljax.eval.cli import PORTS
from causaljax.eval.files import write_atomically
from causaljax.tfm import MAX_CLASSES, MAX_FEATURES
from causaljax.tfm.classifier import TFMClassifier


def baselines(is_cat: np.ndarray, seed: int) -> dict:
    cat = np.flatnonzero(is_cat)
    num = np.flatnonzero(~is_cat)
    lr_prep = ColumnTransformer([("num", StandardScaler(), num),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    return {
        "logistic_regression": make_pipeline(lr_prep, LogisticRegression(max_iter=2000)),
        "random_forest": RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1),
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            categorical_features=is_cat if is_cat.any() else None, random_state=seed),
    }


def roc_auc(y_true, proba, n_classes: int) -> float:
    if n_classes == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                               labels=np.arange(n_classes)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--half", choices=HALVES, default=None,
                    help="only this half of the suite (default: every dataset)")
    ap.add_argument("--n-train", nargs="*", type=int, default=[64, 256, 1024])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--checkpoint", default="default",
                    help="row-token weights ('default' = shipped, or a .msgpack path); with "
                         "--model: the port's checkpoint file (mitra: its folder)")
    ap.add_argument("--model", default="row-token", choices=("row-token", *PORTS),
                    help="the TFM: our row-token model (default) or a port")
    ap.add_argument("--n-estimators", type=int, default=4)
    ap.add_argument("--preprocessing", nargs="*", default=["none", "quantile"],
                    help="feature transforms the TFM's ensemble members cycle through")
    ap.add_argument("--categorical-encoding", nargs="*", default=["ordinal", "onehot"],
                    help="encodings of categorical features the TFM's members cycle through")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--out", default="results/zero_shot.csv")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it goes to stderr, and only when it is a terminal)")
    ap.add_argument("--compare", nargs=2, metavar=("BASE_CSV", "NEW_CSV"),
                    help="only compare two result files of this script, paired by dataset, "
                         "n_train and fold (e.g. two checkpoints on the dev half), and exit")
    args = ap.parse_args(argv)
    if args.compare:
        table = compare(*(pd.read_csv(path) for path in args.compare))
        print(table.round(4).to_string())
        return table

    names = args.datasets or dataset_names(args.half)
    tfm = None
    if args.model != "row-token":
        from causaljax.tfm.api import from_checkpoint

        try:
            tfm = from_checkpoint(args.model, args.checkpoint)
        except ValueError as e:
            print(f"error: --model {args.model} --checkpoint {args.checkpoint}: {e}",
                  file=sys.stderr)
            return 2
    columns = ["dataset", "n_train", "fold", "model", "roc_auc", "seconds"]
    rows = (list(pd.read_csv(args.out).itertuples(index=False, name=None))
            if os.path.exists(args.out) else [])
    done_before = {(r[0], int(r[1])) for r in rows}
    from causaljax import progress

    for name in progress.bar(names, desc="datasets", unit="dataset", leave=True,
                             show=not args.no_progress):
        if all((name, n) in done_before for n in args.n_train):
            continue
        table = load(name)
        X = table.X.astype(np.float32)
        X_nan = X.copy()
        X_nan[table.missing[:, table.feature_indices]] = np.nan  # the TFM sees missing cells
        y = table.y
        n_classes = int(y.max()) + 1
        is_cat = table.is_categorical[table.feature_indices]
        for n_train in args.n_train:
            if (name, n_train) in done_before:
                continue
            try:
                splits = low_data_splits(table, n_train, 0, args.folds, seed=0)
            except ValueError as e:
                print(f"skip {name} n_train={n_train}: {e}", flush=True)
                continue
            for fold, split in enumerate(splits):
                tr, te = split.train, split.test
                t0 = time.perf_counter()
                clf = TFMClassifier(args.checkpoint, n_estimators=args.n_estimators,
                                    random_state=fold, preprocessing=tuple(args.preprocessing),
                                    categorical_features=is_cat,
                                    categorical_encoding=tuple(args.categorical_encoding),
                                    model=tfm)
                p = clf.fit(X_nan[tr], y[tr]).predict_proba(X_nan[te])
                full = np.zeros((len(te), n_classes))
                full[:, clf.classes_] = p
                rows.append((name, n_train, fold, "tfm" if tfm is None else args.model,
                             roc_auc(y[te], full, n_classes),
                             time.perf_counter() - t0))
                if not args.no_baselines:
                    for model, est in baselines(is_cat, fold).items():
                        t0 = time.perf_counter()
                        est.fit(X[tr], y[tr])
                        full = np.zeros((len(te), n_classes))
                        full[:, est.classes_] = est.predict_proba(X[te])
                        rows.append((name, n_train, fold, model,
                                     roc_auc(y[te], full, n_classes), time.perf_counter() - t0))
            done = save(rows, columns, args.out)
            cur = done[(done.dataset == name) & (done.n_train == n_train)]
            print(name, n_train, cur.groupby("model").roc_auc.mean().round(3).to_dict(),
                  flush=True)
    df = save(rows, columns, args.out)
    summary = summarize(df)
    stem = os.path.splitext(args.out)[0]
    with open(stem + ".md", "w") as f:
        half = f"; {args.half} half of the suite" if args.half else ""
        f.write(f"# Zero-shot ROC-AUC ({model_label(args)}{half}; mean over folds per "
                "dataset)\n\n"
                + markdown(summary) + "\n")
    plot(df, stem + ".png")
    print(summary.round(4).to_string())
    return df


def model_label(args) -> str:
    return args.checkpoint if args.model == "row-token" else f"{args.model} {args.checkpoint}"


def dataset_names(half: str | None = None) -> list[str]:
    """The suite datasets the TFM takes (<= MAX_FEATURES features, <= MAX_CLASSES classes),
    of one half ("dev" / "test") or all (None)."""
    spec = suite()
    fits = (spec.features <= MAX_FEATURES) & (spec.classes <= MAX_CLASSES)
    if half is not None:
        fits &= spec.half == half
    return spec.name[fits].tolist()


def save(rows: list, columns: list, path: str) -> pd.DataFrame:
    """All rows so far as a frame, written to ``path`` atomically (temp file + rename)."""
    df = pd.DataFrame(rows, columns=columns)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomically(path, lambda tmp: df.to_csv(tmp, index=False))
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (n_train, model): median / mean over datasets of the fold-mean ROC-AUC, the number
    of datasets, and the mean rank among the models (1 = best) over datasets."""
    per_dataset = df.groupby(["n_train", "model", "dataset"]).roc_auc.mean()
    ranks = per_dataset.groupby(["n_train", "dataset"]).rank(ascending=False)
    out = per_dataset.groupby(["n_train", "model"]).agg(["median", "mean", "count"])
    out["mean_rank"] = ranks.groupby(["n_train", "model"]).mean()
    return out


def compare(base: pd.DataFrame, new: pd.DataFrame, model: str = "tfm") -> pd.DataFrame:
    """``model``'s ROC-AUC in two result frames, paired: per n_train, over the datasets both
    hold (fold means, same folds), the medians of each, the mean and median difference
    (new - base), the datasets where new is higher, and the two-sided Wilcoxon signed-rank
    p-value of the per-dataset differences (scipy)."""
    from scipy.stats import wilcoxon

    keys = ["dataset", "n_train", "fold"]
    pair = base[base.model == model].merge(new[new.model == model], on=keys,
                                           suffixes=("_base", "_new"))
    per_dataset = pair.groupby(["n_train", "dataset"])[["roc_auc_base", "roc_auc_new"]].mean()
    rows = {}
    for n_train, g in per_dataset.groupby("n_train"):
        diff = g.roc_auc_new - g.roc_auc_base
        p = wilcoxon(diff).pvalue if len(diff) > 1 and diff.abs().sum() > 0 else float("nan")
        rows[n_train] = {"datasets": len(g), "median_base": g.roc_auc_base.median(),
                         "median_new": g.roc_auc_new.median(), "mean_diff": diff.mean(),
                         "median_diff": diff.median(), "new_higher": int((diff > 0).sum()),
                         "wilcoxon_p": p}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("n_train")


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a markdown table (no extra dependency)."""
    lines = ["| n_train | model | median | mean | datasets | mean rank |", "|---|---|---|---|---|---|"]
    for (n_train, model), r in summary.iterrows():
        lines.append(f"| {n_train} | {model} | {r['median']:.4f} | {r['mean']:.4f} | "
                     f"{int(r['count'])} | {r['mean_rank']:.2f} |")
    return "\n".join(lines)


def plot(df: pd.DataFrame, path: str) -> None:
    """Median ROC-AUC over datasets vs n_train per model, with the per-dataset means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_dataset = df.groupby(["n_train", "model", "dataset"]).roc_auc.mean().reset_index()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    models = sorted(per_dataset.model.unique())
    for i, model in enumerate(models):
        g = per_dataset[per_dataset.model == model]
        offset = 1 + 0.04 * (i - (len(models) - 1) / 2)  # spread the points on the log axis
        ax.scatter(g.n_train * offset, g.roc_auc, s=8, alpha=0.35, color=f"C{i}")
        med = g.groupby("n_train").roc_auc.median()
        ax.plot(med.index * offset, med.values, "o-", color=f"C{i}", label=model)
    ax.set(xscale="log", xlabel="training rows (n_train)", ylabel="ROC-AUC",
           title="Zero-shot TFM vs baselines (median over datasets)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    out = main()
    sys.exit(out if isinstance(out, int) else 0)
