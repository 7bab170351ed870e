"""Does the structural depth of the fitted SCMs (longest path in the DAG) correlate with the
convergence stability of fine-tuning (variance across seeds, val-test gap)? (research question
2 of research/method.md)

Commands:
    python experiments/depth_stability.py                     # default study, ~10 min on 2 CPU cores
    python experiments/depth_stability.py --datasets pima credit_g wells --folds 3 --dags 6 \
        --seeds 5 --volume 2 --steps 60
    python experiments/depth_stability.py --csv my.csv --target label --out runs/mine_depth

Per dataset and fold (a stratified low-data split, as in scale_volume.py): the SCM ensemble
of CausalMixFT is fitted once (--dags sampled DAGs); CausalMixFT runs with each DAG's SCM alone
as its synthetic source, --seeds times (run seeds change only the step batches and the
synthetic draws), and standard fine-tuning runs with the same seeds as the reference spread.
The within-fold Spearman correlation of depth with the spread of test ROC-AUC across seeds,
the val-test gap and the improvement over zero-shot is tested against within-fold
permutations of the depths (see causaljax/eval/depth.py).

Output in --out (default runs/depth_stability): runs/<run_id>.parquet (one file per finished
run; resumable like scale_volume.py, killed at any point and rerun it ends with the same runs),
results.parquet, units.csv (one row per fold and DAG), summary.md, depth_vs_stability.png.
Bad input: a message and exit code 2 before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax.eval.cli import (BadInput, add_data_arguments, add_finetune_arguments,
                                check_common_arguments, check_tables, load_model, load_tables,
                                parse_list, positive_ints, write_results)

DEFAULT_DATASETS = ("pima", "breast_w", "swiss_labor")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, DEFAULT_DATASETS, folds=2)
    p.add_argument("--dags", type=int, default=4,
                   help="fitted SCMs (sampled DAGs) per fold, each the source of its own runs")
    p.add_argument("--seeds", type=int, default=3, help="run seeds per (fold, DAG) and for real")
    p.add_argument("--volume", type=float, default=1.0, help="synthetic rows per real row")
    p.add_argument("--alpha", type=float, default=0.05, help="false-alarm rate of the tests")
    p.add_argument("--n-perm", type=int, default=2000, help="permutations per test")
    add_finetune_arguments(p, out="runs/depth_stability")
    return p.parse_args(argv)


def check_args(args) -> tuple[int, int]:
    shard = check_common_arguments(args)
    positive_ints(dags=args.dags, n_perm=args.n_perm)
    if args.seeds < 2:
        raise BadInput(f"--seeds must be >= 2 (a spread needs two runs), got {args.seeds}")
    if not (math.isfinite(args.volume) and args.volume > 0):
        raise BadInput(f"--volume must be finite and > 0, got {args.volume}")
    if not 0 < args.alpha < 1:
        raise BadInput(f"--alpha must be in (0, 1), got {args.alpha}")
    return shard


def write_outputs(out: Path, store, args) -> str:
    from causaljax.eval.depth import plot_depth, summary_markdown, unit_table

    df = store.read()
    if df.empty or not (df.method == "causalmix").any():
        return ""
    text = summary_markdown(df, alpha=args.alpha, n_perm=args.n_perm,
                            notes="Plot: depth_vs_stability.png; units: units.csv.")
    write_results(out, df, text)
    tmp = out / ".units.csv.tmp"
    unit_table(df).to_csv(tmp, index=False)
    os.replace(tmp, out / "units.csv")
    plot_depth(df, str(out / "depth_vs_stability.png"))
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        shard_i, shard_n = check_args(args)
        families = parse_list(args.families, str, "families")
        tables = load_tables(args.datasets or list(DEFAULT_DATASETS), csv=args.csv,
                             target=args.target)
        params, mc, model_id = load_model(args.checkpoint)
        check_tables(tables, mc, n_train=args.n_train, n_val=args.n_val, folds=args.folds,
                     seed=args.seed)
    except BadInput as e:
        print(f"depth_stability.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.eval.depth import DepthStudy, grid
    from causaljax.eval.study import ResultsStore, run_grid, shard

    base = dict(study="depth", n_train=args.n_train, n_val=args.n_val, steps=args.steps,
                lr=args.lr, eval_every=args.eval_every, patience=args.patience,
                max_test=args.max_test, seed=args.seed, model=model_id, k_scms=args.dags,
                n_bootstrap=args.n_bootstrap, families=",".join(families))
    if args.csv:
        base["source"] = f"csv:{Path(args.csv).resolve()}"
    configs = shard(grid(list(tables), args.folds, args.dags, args.seeds, args.volume, base),
                    shard_i, shard_n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out)
    opts = {"scm": dict(k=args.dags, n_bootstrap=args.n_bootstrap, families=tuple(families))}
    study = DepthStudy(tables, params, mc, generator_options=opts)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ran = run_grid(configs, study.run, store, progress=not args.no_progress)
    text = write_outputs(out, store, args)
    print(text)
    print(json.dumps(dict(ran=len(ran), stored=len(store.done()), grid=len(configs),
                          seconds=round(time.perf_counter() - t0, 1), out=str(out))))
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
