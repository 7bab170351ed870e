"""Input handling shared by the study scripts in ``experiments/``: a user error is a
``BadInput`` (the scripts print it and exit with code 2 before anything is written)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

PORTS = ("tabicl", "tabpfn", "mitra")  # = causaljax.tfm.batch_model.PORTS (not imported: no JAX here)

MIN_CHECKPOINTS = 5  # = FinetuneConfig.min_checkpoints (checked in the tests)
EDGE_RULES = ("adjacency", "legacy")  # discovery.edge_probabilities(edge_rule=)
DAG_SAMPLERS = ("runs", "pairs")  # finetune.generators.scm.fit_scms(dag_sampler=)
REPAIR_ALPHA = 0.05  # finetune.generators.scm.fit_scms(repair_alpha=); 0 = no Markov repair
# The SCM settings of the studies before issue 23: a run config holds a setting only when it
# differs from these, so folders written before then resume with --edge-rule legacy
# --dag-sampler pairs --repair-alpha 0, and any other setting gets run ids (and summary rows)
# of its own.
PRE_ISSUE_23 = {"edge_rule": "legacy", "dag_sampler": "pairs", "repair_alpha": 0.0}


class BadInput(Exception):
    """A user error: reported with exit code 2."""


def add_data_arguments(p, default_datasets, *, folds: int = 1, n_train: int = 64) -> None:
    """--datasets / --csv / --target and the low-data split options."""
    p.add_argument("--datasets", nargs="+", default=None,
                   help=f"suite dataset names (default: {' '.join(default_datasets)})")
    p.add_argument("--csv", help="a CSV file of your own (with --target)")
    p.add_argument("--target", help="target column of --csv")
    add_split_arguments(p, folds=folds, n_train=n_train)


def add_split_arguments(p, *, folds: int = 1, n_train: int = 64) -> None:
    """The low-data split options: --folds, --n-train, --n-val."""
    p.add_argument("--folds", type=int, default=folds)
    p.add_argument("--n-train", type=int, default=n_train)
    p.add_argument("--n-val", type=int, default=None, help="default: n_train // 4")


def add_finetune_arguments(p, *, out: str) -> None:
    """Fine-tuning, SCM fitting, model, seed, output and shard options of a study."""
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--patience", type=int, default=8, help="evaluations without improvement")
    p.add_argument("--min-checkpoints", type=int, default=MIN_CHECKPOINTS,
                   help="evaluations (step 0 included) every fine-tuning run records before "
                        "early stopping may stop it, so that its val-test gap is defined "
                        f"(default {MIN_CHECKPOINTS}; with fewer steps: every evaluation)")
    p.add_argument("--n-bootstrap", type=int, default=5, help="PC/FCI bootstrap resamples")
    p.add_argument("--families", default="linear,trees", help="SCM mechanism families")
    p.add_argument("--edge-rule", default="adjacency", choices=EDGE_RULES,
                   help="how PC/FCI edges count toward P (causaljax.discovery.structure); "
                        "'legacy': the rule before issue 23")
    p.add_argument("--dag-sampler", default="runs", choices=DAG_SAMPLERS,
                   help="'runs': each DAG one discovery run's graph, consistently extended; "
                        "'pairs': per-pair draws from P (before issue 23)")
    p.add_argument("--repair-alpha", type=float, default=REPAIR_ALPHA,
                   help="level of the Markov repair of each sampled DAG on the training rows "
                        "(causaljax.discovery.repair); 0 = the DAGs as sampled")
    p.add_argument("--max-test", type=int, default=1024, help="test rows per fold (subsampled)")
    p.add_argument("--checkpoint", default="default",
                   help="TFM weights: 'default' (shipped), a .msgpack path, or 'random-tiny' "
                        "(an untrained tiny model: smoke tests only); with --model tabicl / "
                        "tabpfn / mitra: the path of that model's checkpoint file (mitra: "
                        "the folder of config.json + model.safetensors)")
    p.add_argument("--model", default="row-token", choices=("row-token", *PORTS),
                   help="the TFM to fine-tune: our row-token model (default) or a port "
                        "(causaljax.tfm.tabicl / tabpfn / mitra) loaded from --checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out)
    p.add_argument("--shard", default="0/1", help="i/n: run the i-th of n shards")
    p.add_argument("--report-only", action="store_true",
                   help="write the outputs (results.parquet, summary.md, plots) from the runs "
                        "stored so far and run nothing: a study in progress, or one stopped "
                        "mid-fold, reported as it stands")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they go to stderr, and only when it is a terminal)")
    p.add_argument("--compile-cache", default=None,
                   help="directory of JAX's persistent compilation cache (default "
                        "$CAUSALJAX_COMPILE_CACHE or ~/.cache/causaljax/xla; 'none': off)")


def check_common_arguments(args) -> tuple[int, int]:
    """The options of ``add_data_arguments`` / ``add_finetune_arguments`` that need no data;
    sets the default --n-val; -> the shard (i, n)."""
    positive_ints(folds=args.folds, steps=args.steps, eval_every=args.eval_every,
                  patience=args.patience, n_bootstrap=args.n_bootstrap)
    if getattr(args, "min_checkpoints", MIN_CHECKPOINTS) < 2:
        raise BadInput(f"--min-checkpoints must be >= 2 (a val-test gap needs two), got "
                       f"{args.min_checkpoints}")
    if args.csv and not args.target:
        raise BadInput("--csv needs --target COLUMN")
    if args.target and not args.csv:
        raise BadInput("--target is only used with --csv")
    if args.csv and args.datasets:
        raise BadInput("give either --datasets or --csv, not both")
    args.n_val = args.n_train // 4 if args.n_val is None else args.n_val
    try:
        i, n = (int(t) for t in args.shard.split("/"))
        assert n >= 1 and 0 <= i < n
    except (ValueError, AssertionError):
        raise BadInput(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}") from None
    return i, n


def parse_list(text: str, kind, what: str) -> list:
    """Comma-separated values of option ``--what`` converted by ``kind``."""
    try:
        items = [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise BadInput(f"--{what}: cannot parse {text!r} ({e})") from None
    if not items:
        raise BadInput(f"--{what} is empty")
    return items


def parse_volumes(text: str) -> list[float]:
    """--volumes: comma-separated synthetic rows per real row, each finite and >= 0."""
    import math

    volumes = parse_list(text, float, "volumes")
    bad = [v for v in volumes if not math.isfinite(v) or v < 0]
    if bad:
        raise BadInput(f"--volumes must be finite and >= 0, got {bad}")
    return volumes


def parse_methods(text: str, model: str = "row-token") -> list[str]:
    """--methods: known method names, de-duplicated, with ``zeroshot`` (the reference) first;
    ``model``: the --model they run on (tabebm needs the row-token model)."""
    import importlib.util

    from causaljax.finetune import methods as methods_lib

    methods = parse_list(text, str, "methods")
    for m in methods:
        try:
            methods_lib.get(m)
        except ValueError as e:
            raise BadInput(str(e)) from None
    if "tabebm" in methods and model != "row-token":
        raise BadInput(f"method tabebm runs on the row-token model only, not --model {model}")
    if "ctgan" in methods and importlib.util.find_spec("ctgan") is None:
        raise BadInput("method ctgan needs the optional extra: pip install -e .[ctgan]")
    return ["zeroshot"] + [m for m in dict.fromkeys(methods) if m != "zeroshot"]


def read_csv(path):
    """The user's --csv file as a DataFrame; BadInput if it is missing or unreadable, or if
    its header names a column twice (pandas would silently rename the second ``a`` to
    ``a.1``, so the header is read as a plain row first)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--csv: no such file {path}")
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
        df = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise BadInput(f"--csv: cannot read {path}: {e}") from None
    names = [n for n in header.iloc[0].tolist() if n != ""] if len(header) else []
    dup = list(dict.fromkeys(n for i, n in enumerate(names) if n in names[:i]))
    if dup:
        raise BadInput(f"--csv {path}: duplicate column names {dup} in the header; give every "
                       "column a distinct name")
    return df


def load_tables(datasets, *, csv: str | None = None, target: str | None = None) -> dict:
    """name -> Table of suite ``datasets``, or of the user's ``csv`` file with column
    ``target``; BadInput for unknown names, unreadable files, bad targets."""
    from causaljax import data

    if csv:
        path, df = Path(csv), read_csv(csv)
        if target not in df.columns:
            raise BadInput(f"--target {target!r} is not a column of {path}; columns: "
                           f"{', '.join(map(str, df.columns))}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return {path.stem: data.Table.from_pandas(df, target=target)}
        except (ValueError, TypeError) as e:
            raise BadInput(f"--csv {path}: {e}") from None
    unknown = [n for n in datasets if n not in data.names()]
    if unknown:
        raise BadInput(f"unknown dataset(s) {unknown}; valid: {', '.join(data.names())}")
    return {n: data.load(n) for n in dict.fromkeys(datasets)}


def check_tables(tables: dict, mc, *, n_train: int, n_val: int, folds: int, seed: int) -> None:
    """Every table fits the model and has enough rows for the requested splits."""
    from causaljax.data import low_data_splits
    from causaljax.finetune.loop import check_fits_model

    for name, table in tables.items():
        try:
            check_fits_model(table, mc)
            low_data_splits(table, n_train, n_val, folds, seed)
        except (ValueError, TypeError) as e:
            raise BadInput(f"dataset {name!r} ({table.n_rows} rows): {e}") from None


def load_model(checkpoint: str, model: str = "row-token"):
    """(params, model spec, model id) of the TFM weights ``checkpoint``: for the row-token
    model 'default' (shipped), a .msgpack path, or 'random-tiny' (an untrained tiny model: smoke
    tests only); for ``model`` 'tabicl' / 'tabpfn' / 'mitra' the path of that model's checkpoint
    (the spec is a ``causaljax.tfm.batch_model.Ported``)."""
    import jax

    from causaljax.tfm.model import ModelConfig, init_params

    if model in PORTS:
        from causaljax.tfm.batch_model import load_ported

        try:
            return load_ported(model, checkpoint)
        except ValueError as e:
            raise BadInput(f"--model {model} --checkpoint {checkpoint}: {e}") from None
    if model != "row-token":
        raise BadInput(f"unknown --model {model!r}; known: row-token, {', '.join(PORTS)}")
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


def positive_ints(**values) -> None:
    """BadInput naming the first option (``--name``) whose value is < 1."""
    for name, value in values.items():
        if value < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def write_results(out: Path, df, summary: str) -> None:
    """``out/results.parquet`` (every stored run) and ``out/summary.md``, each written to a
    temp file and renamed, so a reader never sees half a file."""
    from causaljax.eval.files import write_atomically

    write_atomically(out / "results.parquet", lambda tmp: df.to_parquet(tmp, index=False))
    write_atomically(out / "summary.md", lambda tmp: tmp.write_text(summary))


def load_inputs(args, datasets) -> tuple:
    """Tables (suite ``datasets``, or ``args.csv``), the TFM and the SCM families of a study
    whose options come from ``add_finetune_arguments``; checks every table fits the model
    and the splits. -> (tables, params, mc, model id, families); BadInput on any problem."""
    import time

    from causaljax import progress

    from causaljax.runtime import use_compilation_cache

    t0 = time.perf_counter()
    STAGES.clear()
    progress.take_times()
    use_compilation_cache(getattr(args, "compile_cache", None))
    families = parse_list(args.families, str, "families")
    tables = load_tables(datasets, csv=getattr(args, "csv", None),
                         target=getattr(args, "target", None))
    params, mc, model_id = load_model(args.checkpoint, getattr(args, "model", "row-token"))
    check_tables(tables, mc, n_train=args.n_train, n_val=args.n_val, folds=args.folds,
                 seed=args.seed)
    log_stage("inputs", time.perf_counter() - t0, f"{len(tables)} table(s) and the TFM "
              "loaded and checked")
    return tables, params, mc, model_id, families


def scm_options(args, k: int, families) -> dict:
    """``generator_options`` of a study for the SCM generator: k DAGs per fold, the
    bootstrap count and the mechanism families of the command line."""
    return {"scm": dict(k=k, n_bootstrap=args.n_bootstrap, families=tuple(families),
                        **dag_settings(args))}


def dag_settings(args) -> dict:
    """--edge-rule / --dag-sampler / --repair-alpha (their defaults where a script lacks
    them)."""
    return {"edge_rule": getattr(args, "edge_rule", EDGE_RULES[0]),
            "dag_sampler": getattr(args, "dag_sampler", DAG_SAMPLERS[0]),
            "repair_alpha": float(getattr(args, "repair_alpha", REPAIR_ALPHA))}


def current_rows(df, base: dict):
    """The rows of a study's store that were run with ``base``'s SCM settings (edge rule,
    DAG sampler, repair level; a missing column or value = the setting before issue 23), so
    that a folder resumed with other settings reports only the runs of this one."""
    import pandas as pd

    keep = pd.Series(True, index=df.index)
    for key, old in PRE_ISSUE_23.items():
        col = df[key].fillna(old) if key in df else pd.Series(old, index=df.index)
        keep &= col == base.get(key, old)
    return df[keep]


def base_config(args, model_id: str, families, k_scms: int, **extra) -> dict:
    """The settings every run of a study shares (part of each run's id)."""
    base = dict(extra, n_train=args.n_train, n_val=args.n_val, steps=args.steps, lr=args.lr,
                eval_every=args.eval_every, patience=args.patience, max_test=args.max_test,
                seed=args.seed, model=model_id, k_scms=k_scms, n_bootstrap=args.n_bootstrap,
                families=",".join(families))
    base.update({k: v for k, v in dag_settings(args).items() if v != PRE_ISSUE_23[k]})
    if getattr(args, "min_checkpoints", MIN_CHECKPOINTS) != MIN_CHECKPOINTS:
        base["min_checkpoints"] = args.min_checkpoints  # the default keeps earlier run ids
    if getattr(args, "csv", None):
        base["source"] = f"csv:{Path(args.csv).resolve()}"
    return base


def run_study(configs, run, out, *, progress: bool, report_only: bool = False,
              **grid_options):
    """Run the configs not yet stored in ``out`` (``causaljax.eval.study.run_grid``), library
    warnings silenced; with ``report_only`` none. -> (store, ids run by this call, seconds)."""
    import time

    from causaljax import progress as progress_lib
    from causaljax.eval.study import ResultsStore, run_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out)
    restored = store.restore(out / "results.parquet")
    if restored:
        log_stage("restore", 0.0, f"{restored} run(s) of results.parquet missing from runs/")
    t0 = time.perf_counter()
    progress_lib.take_times()
    with warnings.catch_warnings(), progress_lib.disabled(not progress):
        warnings.simplefilter("ignore")
        ran = [] if report_only else run_grid(configs, run, store, progress=progress,
                                              **grid_options)
    seconds = time.perf_counter() - t0
    parts = progress_lib.take_times()
    log_stage("runs", seconds, f"{len(ran)} run(s)" + "".join(
        f"; {name} {sec:.1f} s" for name, sec in sorted(parts.items())))
    _MARK[0] = time.perf_counter()
    return store, ran, seconds


STAGES: list[str] = []  # the timing lines of this process's study (see log_stage)
_MARK = [0.0]  # when run_study finished: the outputs stage runs from there to print_report


def log_stage(name: str, seconds: float, detail: str = "") -> str:
    """One timing line of a study stage, printed to stderr now and written to the study's
    ``log.txt`` by ``print_report``."""
    import sys

    line = f"stage {name}: {seconds:.1f} s" + (f" ({detail})" if detail else "")
    STAGES.append(line)
    print(line, file=sys.stderr, flush=True)
    return line


def print_report(text: str, store, ran, configs, seconds: float, out) -> None:
    """The summary, then one JSON line: runs done now, stored, in the grid, seconds, out.
    Appends the stage timing lines (inputs, runs, outputs) to ``out/log.txt``."""
    import sys
    import time

    if _MARK[0]:
        log_stage("outputs", time.perf_counter() - _MARK[0], "results.parquet, summary.md, "
                  "plots")
        _MARK[0] = 0.0
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(Path(out) / "log.txt", "a") as f:
        f.write(f"{stamp} {' '.join(sys.argv)}\n" + "".join(f"  {s}\n" for s in STAGES))
    STAGES.clear()
    print(text)
    print(json.dumps(dict(ran=len(ran), stored=len(store.done()), grid=len(configs),
                          seconds=round(seconds, 1), out=str(out))))
