"""Zero-shot ROC-AUC of the shipped TFM against classical baselines on the public suite.

    python experiments/zero_shot.py                                    # full: hours on 2 CPUs
    python experiments/zero_shot.py --datasets iris wine --n-train 64 --folds 2   # ~2 min

For every dataset that fits the TFM (<= 100 features, <= 10 classes) and n_train in
--n-train, --folds stratified low-data splits (causaljax.data.low_data_splits, no validation
rows): the TFM (TFMClassifier, training rows as context, no gradient step), logistic
regression (standardized, categorical columns one-hot), random forest and histogram gradient
boosting (categorical columns as codes) are scored by ROC-AUC on the test rows (one-vs-rest
macro average for multiclass). Writes --out (CSV: dataset, n_train, fold, model, roc_auc) and
prints the median / mean per model and n_train.
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
    ap.add_argument("--n-train", nargs="*", type=int, default=[64, 256, 1024])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--n-estimators", type=int, default=4)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--out", default="results/zero_shot.csv")
    args = ap.parse_args(argv)

    spec = suite()
    fits = (spec.features <= MAX_FEATURES) & (spec.classes <= MAX_CLASSES)
    names = args.datasets or spec.name[fits].tolist()
    rows = []
    for name in names:
        table = load(name)
        X = table.X.astype(np.float32)
        X_nan = X.copy()
        X_nan[table.missing[:, table.feature_indices]] = np.nan  # the TFM sees missing cells
        y = table.y
        n_classes = int(y.max()) + 1
        is_cat = table.is_categorical[table.feature_indices]
        for n_train in args.n_train:
            try:
                splits = low_data_splits(table, n_train, 0, args.folds, seed=0)
            except ValueError as e:
                print(f"skip {name} n_train={n_train}: {e}", flush=True)
                continue
            for fold, split in enumerate(splits):
                tr, te = split.train, split.test
                t0 = time.perf_counter()
                clf = TFMClassifier(args.checkpoint, n_estimators=args.n_estimators,
                                    random_state=fold)
                p = clf.fit(X_nan[tr], y[tr]).predict_proba(X_nan[te])
                full = np.zeros((len(te), n_classes))
                full[:, clf.classes_] = p
                rows.append((name, n_train, fold, "tfm", roc_auc(y[te], full, n_classes),
                             time.perf_counter() - t0))
                if not args.no_baselines:
                    for model, est in baselines(is_cat, fold).items():
                        t0 = time.perf_counter()
                        est.fit(X[tr], y[tr])
                        full = np.zeros((len(te), n_classes))
                        full[:, est.classes_] = est.predict_proba(X[te])
                        rows.append((name, n_train, fold, model,
                                     roc_auc(y[te], full, n_classes), time.perf_counter() - t0))
            done = pd.DataFrame(rows, columns=["dataset", "n_train", "fold", "model", "roc_auc",
                                               "seconds"])
            cur = done[(done.dataset == name) & (done.n_train == n_train)]
            print(name, n_train, cur.groupby("model").roc_auc.mean().round(3).to_dict(),
                  flush=True)
    df = pd.DataFrame(rows, columns=["dataset", "n_train", "fold", "model", "roc_auc", "seconds"])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    df.to_csv(args.out, index=False)
    per_dataset = df.groupby(["n_train", "model", "dataset"]).roc_auc.mean()
    summary = per_dataset.groupby(["n_train", "model"]).agg(["median", "mean", "count"])
    print(summary.round(4).to_string())
    return df


if __name__ == "__main__":
    main()
