"""Cross-domain transfer: fine-tune with (real + synthetic) rows of one domain, evaluate
robustness on another (research question 4 of research/method.md).

Commands:
    python experiments/transfer.py                   # health vs finance, ~5 min on 2 CPU cores
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
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax.eval.cli import (BadInput, add_finetune_arguments, check_common_arguments,
                                check_tables, load_model, load_tables, parse_list,
                                positive_ints, write_results)

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
    p.add_argument("--folds", type=int, default=1)
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-val", type=int, default=None, help="default: n_train // 4")
    p.add_argument("--k-scms", type=int, default=8, help="fitted SCMs (DAGs) per fold")
    add_finetune_arguments(p, out="runs/transfer")
    args = p.parse_args(argv)
    args.datasets, args.csv, args.target = args.sources, None, None  # for the common checks
    return args


def check_args(args):
    """-> (methods, shard)."""
    from causaljax.finetune import methods as methods_lib

    shard = check_common_arguments(args)
    positive_ints(k_scms=args.k_scms)
    methods = parse_list(args.methods, str, "methods")
    for m in methods:
        try:
            if not methods_lib.get(m).finetune:
                raise BadInput(f"--methods: {m!r} does not fine-tune; the pretrained weights "
                               "are the reference of every run already")
        except ValueError as e:
            raise BadInput(str(e)) from None
    if not (math.isfinite(args.volume) and args.volume > 0):
        raise BadInput(f"--volume must be finite and > 0, got {args.volume}")
    args.targets = list(dict.fromkeys(args.targets or args.sources))
    if not set(args.targets) - ({args.sources[0]} if len(args.sources) == 1 else set()):
        raise BadInput("--targets must name at least one dataset besides the source")
    return list(dict.fromkeys(methods)), shard


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        methods, (shard_i, shard_n) = check_args(args)
        families = parse_list(args.families, str, "families")
        tables = load_tables(list(dict.fromkeys(args.sources + args.targets)))
        params, mc, model_id = load_model(args.checkpoint)
        check_tables(tables, mc, n_train=args.n_train, n_val=args.n_val, folds=args.folds,
                     seed=args.seed)
    except BadInput as e:
        print(f"transfer.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.data import domain
    from causaljax.eval.study import ResultsStore, run_grid, shard
    from causaljax.eval.transfer import TransferStudy, grid, summary_markdown, transfer_table

    base = dict(study="transfer", n_train=args.n_train, n_val=args.n_val, steps=args.steps,
                lr=args.lr, eval_every=args.eval_every, patience=args.patience,
                max_test=args.max_test, seed=args.seed, model=model_id, k_scms=args.k_scms,
                n_bootstrap=args.n_bootstrap, families=",".join(families))
    configs = shard(grid(args.sources, args.folds, methods, args.volume, args.targets, base),
                    shard_i, shard_n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out)
    opts = {"scm": dict(k=args.k_scms, n_bootstrap=args.n_bootstrap, families=tuple(families))}
    study = TransferStudy(tables, params, mc, generator_options=opts)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ran = run_grid(configs, study.run, store, progress=not args.no_progress)
    df, text = store.read(), ""
    if not df.empty:
        domains = {name: domain(name) for name in tables}
        text = summary_markdown(df, domains, notes="One row per run and target: transfer.csv.")
        write_results(out, df, text)
        tmp = out / ".transfer.csv.tmp"
        transfer_table(df, domains).to_csv(tmp, index=False)
        os.replace(tmp, out / "transfer.csv")
    print(text)
    print(json.dumps(dict(ran=len(ran), stored=len(store.done()), grid=len(configs),
                          seconds=round(time.perf_counter() - t0, 1), out=str(out))))
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
