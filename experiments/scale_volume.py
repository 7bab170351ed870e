"""How does the volume of SCM-synthetic data during fine-tuning change the gain over zero-shot
and over standard fine-tuning? (research question 1 of research/method.md)

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
                            ranks, win rates, val-test gap, next to the paper's numbers
    improvement_vs_volume.png, gap_vs_volume.png

Resuming: the run id is a hash of the run's config; finished runs are skipped, every run
file is written to a temp file and renamed, so a study killed at any point (even SIGKILL)
and rerun ends with the same runs as an uninterrupted one, none twice.
Devices: JAX runs every run on its default device. To use several devices (GPUs, or hosts),
start one process per device with --shard i/n (e.g. CUDA_VISIBLE_DEVICES=i) and the same
--out: shards hold disjoint (dataset, fold) groups and write to the same store.
Bad input (unknown dataset / target / method, a one-class target, too few rows, negative
volumes, a table the TFM cannot take): a message and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

DEFAULT_DATASETS = ("pima", "breast_w", "swiss_labor")
DEFAULT_METHODS = "real,causalmix,scm,copula"
DEFAULT_VOLUMES = "0,1,4"


class BadInput(Exception):
    """A user error: reported with exit code 2."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=None,
                   help=f"suite dataset names (default: {' '.join(DEFAULT_DATASETS)})")
    p.add_argument("--csv", help="a CSV file of your own (with --target)")
    p.add_argument("--target", help="target column of --csv")
    p.add_argument("--folds", type=int, default=1)
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-val", type=int, default=None, help="default: n_train // 4")
    p.add_argument("--volumes", default=DEFAULT_VOLUMES,
                   help="synthetic rows per real row, comma separated (0 = standard fine-tuning)")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="comma separated; zeroshot always runs (it is the reference)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--patience", type=int, default=8, help="evaluations without improvement")
    p.add_argument("--pool-rows", type=int, default=None,
                   help="draw synthetic rows from a fixed pool of this many rows (default: fresh "
                        "SCM rows every step)")
    p.add_argument("--k-scms", type=int, default=8, help="fitted SCMs (DAGs) per fold")
    p.add_argument("--n-bootstrap", type=int, default=5, help="PC/FCI bootstrap resamples")
    p.add_argument("--families", default="linear,trees", help="SCM mechanism families")
    p.add_argument("--max-test", type=int, default=1024, help="test rows per fold (subsampled)")
    p.add_argument("--checkpoint", default="default",
                   help="TFM weights: 'default' (shipped), a .msgpack path, or 'random-tiny' "
                        "(an untrained tiny model: smoke tests only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/scale_volume")
    p.add_argument("--shard", default="0/1", help="i/n: run the i-th of n shards")
    p.add_argument("--vmap-folds", action="store_true",
                   help="run the folds of each (dataset, method, volume) as one vmapped program "
                        "(for accelerators; on a CPU it measured slower)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def parse_list(text: str, kind, what: str) -> list:
    try:
        items = [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise BadInput(f"--{what}: cannot parse {text!r} ({e})") from None
    if not items:
        raise BadInput(f"--{what} is empty")
    return items


def check_args(args):
    """Everything that can be checked without data -> (volumes, methods, shard)."""
    from causaljax.finetune import methods as methods_lib

    volumes = parse_list(args.volumes, float, "volumes")
    bad = [v for v in volumes if not math.isfinite(v) or v < 0]
    if bad:
        raise BadInput(f"--volumes must be finite and >= 0, got {bad}")
    methods = parse_list(args.methods, str, "methods")
    for m in methods:
        try:
            methods_lib.get(m)
        except ValueError as e:
            raise BadInput(str(e)) from None
    if "ctgan" in methods and importlib.util.find_spec("ctgan") is None:
        raise BadInput("method ctgan needs the optional extra: pip install -e .[ctgan]")
    methods = ["zeroshot"] + [m for m in dict.fromkeys(methods) if m != "zeroshot"]
    for name, value, low in (("folds", args.folds, 1), ("steps", args.steps, 1),
                             ("eval-every", args.eval_every, 1), ("patience", args.patience, 1),
                             ("k-scms", args.k_scms, 1), ("n-bootstrap", args.n_bootstrap, 1)):
        if value < low:
            raise BadInput(f"--{name} must be >= {low}, got {value}")
    if args.pool_rows is not None and args.pool_rows < 1:
        raise BadInput(f"--pool-rows must be >= 1, got {args.pool_rows}")
    try:
        i, n = (int(t) for t in args.shard.split("/"))
        assert n >= 1 and 0 <= i < n
    except (ValueError, AssertionError):
        raise BadInput(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}") from None
    if args.csv and not args.target:
        raise BadInput("--csv needs --target COLUMN")
    if args.target and not args.csv:
        raise BadInput("--target is only used with --csv")
    if args.csv and args.datasets:
        raise BadInput("give either --datasets or --csv, not both")
    return volumes, methods, (i, n)


def load_tables(args) -> dict:
    """name -> Table; BadInput for unknown names, unreadable files, bad targets."""
    import pandas as pd

    from causaljax import data

    if args.csv:
        path = Path(args.csv)
        if not path.is_file():
            raise BadInput(f"--csv: no such file {path}")
        try:
            df = pd.read_csv(path)
        except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
            raise BadInput(f"--csv: cannot read {path}: {e}") from None
        if args.target not in df.columns:
            raise BadInput(f"--target {args.target!r} is not a column of {path}; columns: "
                           f"{', '.join(map(str, df.columns))}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return {path.stem: data.Table.from_pandas(df, target=args.target)}
        except (ValueError, TypeError) as e:
            raise BadInput(f"--csv {path}: {e}") from None
    names = args.datasets or list(DEFAULT_DATASETS)
    unknown = [n for n in names if n not in data.names()]
    if unknown:
        raise BadInput(f"unknown dataset(s) {unknown}; valid: {', '.join(data.names())}")
    return {n: data.load(n) for n in dict.fromkeys(names)}


def check_tables(tables: dict, args, mc) -> None:
    """Every table fits the model and has enough rows for the requested splits."""
    from causaljax.data import low_data_splits
    from causaljax.finetune.loop import check_fits_model

    for name, table in tables.items():
        try:
            check_fits_model(table, mc)
            low_data_splits(table, args.n_train, args.n_val, args.folds, args.seed)
        except (ValueError, TypeError) as e:
            raise BadInput(f"dataset {name!r} ({table.n_rows} rows): {e}") from None


def load_model(checkpoint: str):
    import jax

    from causaljax.tfm.model import ModelConfig, init_params

    if checkpoint == "random-tiny":
        mc = ModelConfig(width=32, depth=2, heads=2)
        return init_params(mc, jax.random.key(0)), mc, "random-tiny"
    from causaljax.tfm.checkpoint import CheckpointError, load_weights

    try:
        params, mc, meta = load_weights(checkpoint)
    except CheckpointError as e:
        raise BadInput(f"{e}\n(export pretrained weights with experiments/pretrain_tfm.py "
                       "--export, or pass --checkpoint PATH.msgpack)") from None
    return params, mc, f"{checkpoint}@{meta.get('sha256', '')[:12]}"


def write_outputs(out: Path, store, volumes) -> str:
    """results.parquet, summary.md and plots from every stored run (atomic writes)."""
    from causaljax.eval.plots import plot_study
    from causaljax.eval.report import summary_markdown

    df = store.read()
    if df.empty:
        return ""
    tmp = out / ".results.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / "results.parquet")
    text = summary_markdown(df, notes="Plots: improvement_vs_volume.png, gap_vs_volume.png.")
    tmp = out / ".summary.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "summary.md")
    plot_study(df, str(out))
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        volumes, methods, (shard_i, shard_n) = check_args(args)
        args.n_val = args.n_train // 4 if args.n_val is None else args.n_val
        tables = load_tables(args)
        params, mc, model_id = load_model(args.checkpoint)
        check_tables(tables, args, mc)
    except BadInput as e:
        print(f"scale_volume.py: error: {e}", file=sys.stderr)
        return 2

    from causaljax.eval.study import ResultsStore, run_grid, shard
    from causaljax.eval.volume import VolumeStudy, fold_group, grid

    families = parse_list(args.families, str, "families")
    base = dict(n_train=args.n_train, n_val=args.n_val, steps=args.steps, lr=args.lr,
                eval_every=args.eval_every, patience=args.patience, pool_rows=args.pool_rows,
                max_test=args.max_test, seed=args.seed, model=model_id, k_scms=args.k_scms,
                n_bootstrap=args.n_bootstrap, families=",".join(families))
    if args.csv:
        base["source"] = f"csv:{Path(args.csv).resolve()}"
    by_dataset = (lambda c: c["dataset"]) if args.vmap_folds else None  # keep folds together
    configs = shard(grid(list(tables), args.folds, methods, volumes, base), shard_i, shard_n,
                    group=by_dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out)
    opts = {"scm": dict(k=args.k_scms, n_bootstrap=args.n_bootstrap, families=tuple(families))}
    study = VolumeStudy(tables, params, mc, generator_options=opts)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ran = run_grid(configs, study.run, store, progress=not args.no_progress,
                       group=fold_group if args.vmap_folds else None,
                       run_group=study.run_group if args.vmap_folds else None)
    text = write_outputs(out, store, volumes)
    print(text)
    print(json.dumps(dict(ran=len(ran), stored=len(store.done()), grid=len(configs),
                          seconds=round(time.perf_counter() - t0, 1), out=str(out))))
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
