"""Does the structural depth of the fitted SCMs (longest path in the DAG) correlate with the
convergence stability of fine-tuning (variance across seeds, val-test gap)? (research question
2 of docs/method.md)

Commands:
    python experiments/depth_stability.py           # default study, ~2.5 min on 2 CPU cores
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
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax.eval.cli import (
    BadInput,
    add_data_arguments,
    add_finetune_arguments,
    base_config,
    check_common_arguments,
    current_rows,
    dag_settings,
    load_inputs,
    positive_ints,
    print_report,
    run_study,
    scm_options,
    write_results,
)

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
    from causaljax.eval.files import write_atomically

    df = current_rows(store.read(), dag_settings(args))  # rows of these SCM settings
    if df.empty or not (df.method == "causalmix").any():
        return ""
    text = summary_markdown(df, alpha=args.alpha, n_perm=args.n_perm,
                            notes="Plot: depth_vs_stability.png; units: units.csv.")
    write_results(out, df, text)
    write_atomically(out / "units.csv", lambda tmp: unit_table(df).to_csv(tmp, index=False))
    plot_depth(df, str(out / "depth_vs_stability.png"))
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        shard_i, shard_n = check_args(args)
        tables, params, mc, model_id, families = load_inputs(
            args, args.datasets or list(DEFAULT_DATASETS))
    except BadInput as e:
        print(f"depth_stability.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.eval.depth import DepthStudy, grid
    from causaljax.eval.study import shard

    base = base_config(args, model_id, families, args.dags, study="depth")
    configs = shard(grid(list(tables), args.folds, args.dags, args.seeds, args.volume, base),
                    shard_i, shard_n)
    opts = scm_options(args, args.dags, families)
    study = DepthStudy(tables, params, mc, generator_options=opts)
    store, ran, seconds = run_study(configs, study.run, args.out, progress=not args.no_progress,
                                     report_only=args.report_only)
    with store.outputs_lock():
        text = write_outputs(Path(args.out), store, args)
    print_report(text, store, ran, configs, seconds, args.out)
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
