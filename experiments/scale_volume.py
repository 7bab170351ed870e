"""How does the volume of SCM-synthetic data during fine-tuning change the gain over zero-shot
and over standard fine-tuning? (research question 1 of docs/method.md)

Commands:
    python experiments/scale_volume.py                       # default study, <= 10 min on 2 CPU cores
    python experiments/scale_volume.py --datasets pima credit_g --folds 5 --n-train 64 \
        --volumes 0,0.5,1,2,4,8,16,64 --methods real,causalmix,scm,copula,tabebm --steps 100
    python experiments/scale_volume.py --csv my.csv --target label --out runs/mine
    python experiments/scale_volume.py --shard 0/2 --out runs/big &   # one process per device
    python experiments/scale_volume.py --shard 1/2 --out runs/big &

For every dataset and fold: a stratified low-data split (n_train train, n_val validation, the
rest test), the pretrained TFM's zero-shot score, standard fine-tuning on real rows (volume 0)
and every synthetic method at every volume > 0 (volume = synthetic rows per real row in each
step). Early stopping on the real validation split; test ROC-AUC at the best checkpoint.

Output in --out (default runs/scale_volume):
    runs/<run_id>.parquet   one file per finished run (append-only; read together)
    results.parquet         all runs in one table
    summary.md              median normalized improvement per method and volume with CIs,
                            ranks, win rates, val-test gap, next to the paper's numbers, and
                            the fidelity of each method's synthetic rows against held-out rows
                            (fid_* columns, causaljax.eval.fidelity)
    improvement_vs_volume.png, gap_vs_volume.png
    critical_difference.png autorank's critical-difference diagram of the arms over datasets
                            (with >= 5 datasets; its test and ranks in summary.md)

Resuming: the run id is a hash of the run's config; finished runs are skipped, every run
file is written to a temp file and renamed, so a study killed at any point (even SIGKILL)
and rerun ends with the same runs as an uninterrupted one, none twice. --edge-rule,
--dag-sampler and --repair-alpha are part of the id (when not legacy / pairs / 0, the settings
before issue 23, so older folders resume with those three flags); summary.md reports the rows
of the current ones. --report-only writes the outputs from the runs stored so far.
Devices: JAX runs every run on its default device. To use several devices (GPUs, or hosts),
start one process per device with --shard i/n (e.g. CUDA_VISIBLE_DEVICES=i) and the same
--out: shards hold disjoint (dataset, fold) groups and write to the same store.
Bad input (unknown dataset / target / method, a one-class target, too few rows, negative
volumes, a table the TFM cannot take): a message and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
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
    load_inputs,
    parse_methods,
    parse_volumes,
    positive_ints,
    print_report,
    run_study,
    scm_options,
    write_results,
)

DEFAULT_DATASETS = ("pima", "breast_w", "swiss_labor")
DEFAULT_METHODS = "real,causalmix,scm,copula"
DEFAULT_VOLUMES = "0,1,4"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, DEFAULT_DATASETS)
    p.add_argument("--volumes", default=DEFAULT_VOLUMES,
                   help="synthetic rows per real row, comma separated (0 = standard fine-tuning)")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="comma separated; zeroshot always runs (it is the reference)")
    p.add_argument("--pool-rows", type=int, default=None,
                   help="draw synthetic rows from a fixed pool of this many rows (default: fresh "
                        "SCM rows every step)")
    p.add_argument("--k-scms", type=int, default=8, help="fitted SCMs (DAGs) per fold")
    add_finetune_arguments(p, out="runs/scale_volume")
    p.add_argument("--vmap-folds", action="store_true",
                   help="run the folds of each (dataset, method, volume) as one vmapped program "
                        "(for accelerators; on a CPU it measured slower)")
    return p.parse_args(argv)


def check_args(args):
    """Everything that can be checked without data -> (volumes, methods, shard)."""
    volumes, methods = parse_volumes(args.volumes), parse_methods(args.methods, args.model)
    shard = check_common_arguments(args)
    positive_ints(k_scms=args.k_scms)
    if args.pool_rows is not None and args.pool_rows < 1:
        raise BadInput(f"--pool-rows must be >= 1, got {args.pool_rows}")
    return volumes, methods, shard


def write_outputs(out: Path, store, volumes, base: dict | None = None) -> str:
    """results.parquet, summary.md and plots from every stored run (atomic writes); with
    ``base``, only the runs with its edge rule / DAG sampler (``cli.current_rows``)."""
    from causaljax.data import domain
    from causaljax.eval.plots import plot_study
    from causaljax.eval.critical_difference import critical_difference
    from causaljax.eval.fidelity import fidelity_markdown
    from causaljax.eval.report import summary_markdown

    df = store.read()
    if base is not None and not df.empty:
        df = current_rows(df, base)
    if df.empty:
        return ""
    df["domain"] = [domain(n, default="your data") for n in df.dataset]
    cd_lines, _ = critical_difference(df, str(out / "critical_difference.png"))
    notes = "\n\n".join(filter(None, [
        fidelity_markdown(df), "\n".join(cd_lines),
        "Plots: improvement_vs_volume.png, gap_vs_volume.png."]))
    text = summary_markdown(df, notes=notes)
    write_results(out, df, text)
    plot_study(df, str(out))
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        volumes, methods, (shard_i, shard_n) = check_args(args)
        tables, params, mc, model_id, families = load_inputs(
            args, args.datasets or list(DEFAULT_DATASETS))
    except BadInput as e:
        print(f"scale_volume.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.eval.fidelity import with_fidelity
    from causaljax.eval.study import shard
    from causaljax.eval.volume import VolumeStudy, fold_group, grid

    base = base_config(args, model_id, families, args.k_scms, pool_rows=args.pool_rows)
    by_dataset = (lambda c: c["dataset"]) if args.vmap_folds else None  # keep folds together
    configs = shard(grid(list(tables), args.folds, methods, volumes, base), shard_i, shard_n,
                    group=by_dataset)
    opts = scm_options(args, args.k_scms, families)
    study = VolumeStudy(tables, params, mc, generator_options=opts)
    run, _ = with_fidelity(study, study.run)
    _, run_group = with_fidelity(study, study.run_group)
    store, ran, seconds = run_study(
        configs, run, args.out, progress=not args.no_progress, report_only=args.report_only,
        group=fold_group if args.vmap_folds else None,
        run_group=run_group if args.vmap_folds else None)
    with store.outputs_lock():
        text = write_outputs(Path(args.out), store, volumes, base)
    print_report(text, store, ran, configs, seconds, args.out)
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
