"""Cross-domain transfer: fine-tune with (real + synthetic) rows of one domain, evaluate
robustness on another (research question 4 of docs/method.md).

Commands:
    python experiments/transfer.py                   # health vs finance, ~2 min on 2 CPU cores
    python experiments/transfer.py --sources pima breast_w credit_g credit_card churn \
        --targets pima breast_w birthwt credit_g credit_card churn wells --folds 3 --volume 4

Each run fine-tunes one method (standard fine-tuning `real`, CausalMixFT `causalmix`, or any
method of scale_volume.py) on a low-data split of a source dataset, with early stopping on the
source's validation rows, then scores the fine-tuned weights in context on the same-index split
of every target dataset (its training rows as context, no gradient step) next to the
pretrained weights on that split. The summary reports the effect on the source, on targets of
the same domain and on targets of other domains (domains: the suite's `domain` column).

Output in --out (default runs/transfer): runs/<run_id>.parquet (one file per finished run;
resumable: killed at any point and rerun, it ends with the same runs, none twice),
results.parquet, transfer.csv (one row per run and target), summary.md.
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
    add_finetune_arguments,
    add_split_arguments,
    base_config,
    check_common_arguments,
    current_rows,
    load_inputs,
    parse_list,
    parse_methods,
    positive_ints,
    print_report,
    run_study,
    scm_options,
    write_results,
)

DEFAULT_SOURCES = ("pima", "breast_w", "credit_g", "credit_card")  # two health, two finance


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES),
                   help="suite datasets to fine-tune on")
    p.add_argument("--targets", nargs="+", default=None,
                   help="suite datasets to evaluate on (default: the sources)")
    p.add_argument("--methods", default="real,causalmix", help="comma separated")
    p.add_argument("--volume", type=float, default=1.0,
                   help="synthetic rows per real row of the synthetic methods")
    add_split_arguments(p)
    p.add_argument("--k-scms", type=int, default=8, help="fitted SCMs (DAGs) per fold")
    add_finetune_arguments(p, out="runs/transfer")
    args = p.parse_args(argv)
    args.datasets, args.csv, args.target = args.sources, None, None  # for the common checks
    return args


def check_args(args):
    """-> (methods, shard)."""
    shard = check_common_arguments(args)
    positive_ints(k_scms=args.k_scms)
    if "zeroshot" in parse_list(args.methods, str, "methods"):
        raise BadInput("--methods: 'zeroshot' does not fine-tune; the pretrained weights are "
                       "the reference of every run already")
    methods = parse_methods(args.methods, args.model)[1:]  # without the zeroshot it puts first
    if not (math.isfinite(args.volume) and args.volume > 0):
        raise BadInput(f"--volume must be finite and > 0, got {args.volume}")
    args.targets = list(dict.fromkeys(args.targets or args.sources))
    for source in args.sources:
        if not set(args.targets) - {source}:
            raise BadInput(f"--targets must name a dataset besides the source {source!r}")
    return methods, shard


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        methods, (shard_i, shard_n) = check_args(args)
        tables, params, mc, model_id, families = load_inputs(
            args, list(dict.fromkeys(args.sources + args.targets)))
    except BadInput as e:
        print(f"transfer.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.data import domain
    from causaljax.eval.files import write_atomically
    from causaljax.eval.study import shard
    from causaljax.eval.transfer import TransferStudy, grid, summary_markdown, transfer_table

    base = base_config(args, model_id, families, args.k_scms, study="transfer")
    configs = shard(grid(args.sources, args.folds, methods, args.volume, args.targets, base),
                    shard_i, shard_n)
    opts = scm_options(args, args.k_scms, families)
    study = TransferStudy(tables, params, mc, generator_options=opts)
    store, ran, seconds = run_study(configs, study.run, args.out, progress=not args.no_progress,
                                     report_only=args.report_only)
    with store.outputs_lock():
        df, text, out = current_rows(store.read(), base), "", Path(args.out)  # these settings
        if not df.empty:
            domains = {name: domain(name) for name in tables}
            text = summary_markdown(df, domains, notes="One row per run and target: "
                                    "transfer.csv.")
            write_results(out, df, text)
            table = transfer_table(df, domains)
            write_atomically(out / "transfer.csv", lambda tmp: table.to_csv(tmp, index=False))
    print_report(text, store, ran, configs, seconds, out)
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
