"""Does scaling synthetic volume help for regression too (mean absolute error), and across
domains? (research question 3 of docs/method.md; for classification, scale_volume.py's
summary has the by-domain table.)

Commands:
    python experiments/regression_volume.py         # default study, ~2.5 min on 2 CPU cores
    python experiments/regression_volume.py --datasets diabetes carseats cps1985 concrete \
        auto_mpg --folds 5 --volumes 0,1,4,16 --methods real,causalmix,scm,copula
    python experiments/regression_volume.py --csv my.csv --target price --out runs/mine_reg

The TFM is an in-context classifier: per fold, the numeric target is cut into at most --n-bins
quantile bins of the training rows and the prediction is the mean over the predicted bins
(causaljax/data/regression.py, causaljax/eval/regression.py); checkpoints are selected by
validation MAE. Everything else is scale_volume.py: stratified low-data splits, zero-shot,
standard fine-tuning (volume 0) and every synthetic method at every volume > 0.

Output in --out (default runs/regression_volume): runs/<run_id>.parquet (one file per finished
run; resumable: killed at any point and rerun, it ends with the same runs, none twice),
results.parquet, summary.md (MAE reduction over zero-shot per method and volume with CIs,
ranks, win rates, by domain), mae_reduction_vs_volume.png.
Bad input (unknown dataset / target / method, a non-numeric or constant target, too few rows,
negative volumes): a message and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax.eval.cli import (
    BadInput,
    add_data_arguments,
    add_finetune_arguments,
    base_config,
    check_common_arguments,
    check_tables,
    current_rows,
    load_model,
    parse_list,
    parse_methods,
    parse_volumes,
    positive_ints,
    print_report,
    read_csv,
    run_study,
    scm_options,
    write_results,
)

DEFAULT_DATASETS = ("diabetes", "housing", "concrete")  # health, finance, science


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, DEFAULT_DATASETS)
    p.add_argument("--volumes", default="0,1,4",
                   help="synthetic rows per real row, comma separated (0 = standard fine-tuning)")
    p.add_argument("--methods", default="real,causalmix,scm,copula",
                   help="comma separated; zeroshot always runs (it is the reference)")
    p.add_argument("--k-scms", type=int, default=8, help="fitted SCMs (DAGs) per fold")
    p.add_argument("--n-bins", type=int, default=10, help="target quantile bins (2..10)")
    add_finetune_arguments(p, out="runs/regression_volume")
    return p.parse_args(argv)


def load_frames(args) -> dict:
    """name -> (DataFrame, target) of the regression suite's --datasets or of --csv."""
    from causaljax import data
    from causaljax.data.regression import regression_frame

    if args.csv:
        raw = {Path(args.csv).stem: (read_csv(args.csv), args.target)}
    else:
        names = args.datasets or list(DEFAULT_DATASETS)
        valid = data.names("regression")
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise BadInput(f"unknown regression dataset(s) {unknown}; valid: {', '.join(valid)}")
        raw = {n: (data.load_frame(n), data.target(n)) for n in dict.fromkeys(names)}
    frames = {}
    for name, (df, target) in raw.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames[name] = (regression_frame(df, target), target)
        except ValueError as e:
            raise BadInput(f"dataset {name!r}: {e}") from None
    return frames


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        volumes = parse_volumes(args.volumes)
        methods = parse_methods(args.methods, args.model)
        shard_i, shard_n = check_common_arguments(args)
        positive_ints(k_scms=args.k_scms)
        if not 2 <= args.n_bins <= 10:
            raise BadInput(f"--n-bins must be in 2..10, got {args.n_bins}")
        families = parse_list(args.families, str, "families")
        frames = load_frames(args)
        params, mc, model_id = load_model(args.checkpoint, getattr(args, "model", "row-token"))
        from causaljax.eval.regression import RegressionStudy

        opts = scm_options(args, args.k_scms, families)
        try:
            study = RegressionStudy(frames, params, mc, n_bins=args.n_bins, generator_options=opts)
        except ValueError as e:
            raise BadInput(str(e)) from None
        check_tables(study.tables, mc, n_train=args.n_train, n_val=args.n_val, folds=args.folds,
                     seed=args.seed)
    except BadInput as e:
        print(f"regression_volume.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.data import domain
    from causaljax.eval.regression import plot_reduction, summary_markdown
    from causaljax.eval.study import shard
    from causaljax.eval.volume import grid

    base = base_config(args, model_id, families, args.k_scms, study="regression",
                       n_bins=args.n_bins, select="val_mae")
    configs = shard(grid(list(frames), args.folds, methods, volumes, base), shard_i, shard_n)
    store, ran, seconds = run_study(configs, study.run, args.out, progress=not args.no_progress,
                                     report_only=args.report_only)
    with store.outputs_lock():
        df, text, out = current_rows(store.read(), base), "", Path(args.out)  # these settings
        if not df.empty:
            df["domain"] = [domain(n, default="your data") for n in df.dataset]
            text = summary_markdown(df, notes="Plot: mae_reduction_vs_volume.png.")
            write_results(out, df, text)
            plot_reduction(df, str(out / "mae_reduction_vs_volume.png"))
    print_report(text, store, ran, configs, seconds, out)
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
