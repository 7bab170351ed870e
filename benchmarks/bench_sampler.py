"""Sampler throughput: causaljax's compiled draw next to DoWhy ``gcm.draw_samples`` on the SAME
fitted model (converted with ``scm.from_dowhy``), measured in the same run.

    python benchmarks/bench_sampler.py            # quick grid, ~3-6 min on a 2-core CPU
    python benchmarks/bench_sampler.py --full     # n up to 1e7, d up to 50, k up to 1024

Runs under glibc's huge-page malloc (``causaljax.runtime``; both sides of every ratio; start
it with ``GLIBC_TUNABLES=`` to measure without).

Prints one line per measurement with the speed-up over DoWhy, writes ``bench_sampler.json``
and ``bench_sampler.png`` (throughput vs n) to ``--out``. Parts:

1. ``dowhy``: one 20-node SCM fitted by DoWhy on near-linear data (linear / logistic
   mechanisms, as GOOD auto-assignment picks there; ``--auto-assign`` runs the assignment
   itself) and one with HistGradientBoosting mechanisms; rows/s at 1e5 and 1e6 rows. The
   boosted trees are converted to lookup tables (``--tree-budget``; ``none``: traversal).
2. ``auto``: the models users have: DoWhy's auto-assigned GOOD (and, ``--full``, BETTER)
   models on near-linear and nonlinear data (20 nodes; ``--full`` adds 50), next to DoWhy on
   the same model, with the dense walk (the sampler before the compact layout) and the
   multiply-adds per row the model needs (``CompactSCM.multiply_adds``).
   ``datasets``: 64 SCMs × 512 rows × 20 nodes (linear) vs DoWhy's 512-row draws, datasets/s.
   ``fitted``: 64 SCMs fitted by our ``scm.fit`` (mixed families) on each of five suite
   datasets × 512 rows, datasets/s, next to DoWhy on the same DAG and rows (its GOOD
   mechanisms: DoWhy cannot load our SCMs).
3. ``grid``: random SCMs of each family (linear, MLP, trees) over n, d, k, both propagation
   strategies (topological walk vs ``depth`` parallel sweeps). On a GPU, the share of the
   memory-bandwidth roofline for the bytes written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from causaljax import sampler
from causaljax.runtime import malloc_note, reexec_with_hugepages
from causaljax.scm.random import random_scm
from causaljax.scm.types import as_jax

KEY = jax.random.key(0)  # made once: creating a key is not part of a draw
RNGS = ("key", "hash")  # JAX's threefry from the key, or the counter hash (sampler.hash_uniform)
PEAK_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # bytes/s (SXM parts)


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def simulate(n: int, d: int, seed: int, nonlinear: bool) -> pd.DataFrame:
    """A random DAG over d columns, linear(-ish) Gaussian numeric nodes and two binary
    categorical nodes (the last two columns) drawn by a logistic link."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d))
    cols = {}
    for j in range(d):
        parents = [i for i in range(j) if rng.random() < min(1.0, 2.5 / max(j, 1))]
        signal = sum(rng.normal(scale=0.8) * x[:, i] for i in parents) if parents else 0.0
        if nonlinear and parents:
            signal = np.sin(signal) + 0.5 * np.abs(signal)
        if j >= d - 2:  # binary: a logistic link of its parents (a fair coin without any)
            p = 1 / (1 + np.exp(-signal))
            x[:, j] = rng.random(n) < p
            cols[f"c{j}"] = np.where(x[:, j] > 0, "yes", "no")
        else:
            x[:, j] = signal + rng.normal(size=n)
            cols[f"x{j}"] = x[:, j]
    return pd.DataFrame(cols)


def fit_dowhy(df: pd.DataFrame, family: str, auto_assign: bool, seed: int,
              tree_budget: int | None = 2**13, quality: str = "good"):
    """DoWhy SCM on the true DAG-free graph learned from the columns' order (dense upper
    triangle thinned by correlation), fitted with the requested mechanisms."""
    import networkx as nx
    from dowhy import gcm

    from causaljax.data import Table
    from causaljax.scm.dowhy import dowhy_frame

    table = Table.from_pandas(df, target=df.columns[-1])
    frame = dowhy_frame(table)
    names = list(frame.columns)
    corr = np.abs(np.corrcoef(table.values.T))
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for j in range(len(names)):  # at most 3 strongest earlier parents: a sparse DAG
        for i in np.argsort(-corr[:j, j])[:3]:
            if corr[i, j] > 0.05:
                graph.add_edge(names[i], names[j])
    return fit_dowhy_on(graph, table, frame, family, auto_assign, seed, tree_budget, quality)


def fit_dowhy_on(graph, table, frame, family, auto_assign, seed, tree_budget=2**13,
                 quality="good"):
    """DoWhy gcm model on ``graph`` fitted to ``frame`` (``auto_assign``: its GOOD / BETTER
    assignment, else ``family``'s mechanisms), and its conversion ``from_dowhy``."""
    from dowhy import gcm

    from causaljax.scm.dowhy import from_dowhy

    names = list(frame.columns)
    model = gcm.StructuralCausalModel(graph)
    if auto_assign:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gcm.auto.assign_causal_mechanisms(
                model, frame, quality=getattr(gcm.auto.AssignmentQuality, quality.upper()))
    else:
        for node in names:
            if graph.in_degree(node) == 0:
                model.set_causal_mechanism(node, gcm.EmpiricalDistribution())
            elif table.columns[names.index(node)].kind == "categorical":
                clf = (gcm.ml.create_hist_gradient_boost_classifier() if family == "trees"
                       else gcm.ml.create_logistic_regression_classifier())
                model.set_causal_mechanism(node, gcm.ClassifierFCM(clf))
            else:
                reg = (gcm.ml.create_hist_gradient_boost_regressor() if family == "trees"
                       else gcm.ml.create_linear_regressor())
                model.set_causal_mechanism(node, gcm.AdditiveNoiseModel(reg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gcm.config.disable_progress_bars()
        gcm.fit(model, frame)
    return model, from_dowhy(model, table, seed=seed, tree_budget=tree_budget)


def bench_dowhy(args, results):
    from dowhy import gcm

    for family in args.dowhy_families.split(","):
        df = simulate(2000, 20, seed=1, nonlinear=family == "trees")
        model, ours = fit_dowhy(df, family, args.auto_assign, seed=0, tree_budget=args.tree_budget)
        trees = ("tables" if ours.tree_tables is not None else "traversal") + \
            f" + {ours.tree_feature.shape[2]} traversed trees/node"
        if family == "trees":
            print(f"[dowhy] trees: {trees}, depth {ours.tree_depth}"
                  + (f", tables {ours.tree_tables.sizes}" if ours.tree_tables is not None else ""))
        for n in args.dowhy_rows:
            t_dowhy = timed(lambda: gcm.draw_samples(model, n), 1 if n >= 1e6 else 2)
            for rng in args.rngs:
                t_ours = timed(lambda: sampler.sample(ours, KEY, n, rng=rng), 3)
                row = dict(part="dowhy", family=family, n=n, d=20, k=1, rng=rng, trees=trees,
                           strategy=sampler._plan(ours, "auto")[0],
                           dowhy_rows_per_s=n / t_dowhy, ours_rows_per_s=n / t_ours,
                           speedup=t_dowhy / t_ours)
                results.append(row)
                print(f"[dowhy] {family:7s} n={n:>9,d}  DoWhy {n / t_dowhy:12,.0f} rows/s  "
                      f"causaljax ({row['strategy']}, rng={rng:4s}) {n / t_ours:14,.0f} rows/s  "
                      f"speed-up {t_dowhy / t_ours:8.1f}x", flush=True)


def bench_datasets(args, results):
    from dowhy import gcm

    df = simulate(2000, 20, seed=2, nonlinear=False)
    model, one = fit_dowhy(df, "linear", args.auto_assign, seed=0)
    # the 64 SCMs live on the device, as a fitted ensemble does (not re-sent every call)
    ensemble = as_jax(jax.tree.map(lambda a: np.repeat(np.asarray(a), 64, axis=0), one))
    t_dowhy = timed(lambda: gcm.draw_samples(model, 512), 30)
    for rng in RNGS:
        t_ours = timed(lambda: sampler.sample(ensemble, KEY, 512, rng=rng), 100)
        row = dict(part="datasets", family="linear", n=512, d=20, k=64, rng=rng,
                   strategy=sampler._plan(ensemble, "auto")[0],
                   dowhy_datasets_per_s=1 / t_dowhy, ours_datasets_per_s=64 / t_ours,
                   speedup=64 * t_dowhy / t_ours)
        results.append(row)
        print(f"[datasets] 64 SCMs x 512 rows x 20 nodes: DoWhy {1 / t_dowhy:8.1f} datasets/s, "
              f"causaljax ({row['strategy']}, rng={rng:4s}) {64 / t_ours:10,.0f} datasets/s, "
              f"speed-up {row['speedup']:.0f}x", flush=True)


def mechanism_counts(model) -> str:
    """'EmpiricalDistribution 4, LinearRegression 14, ...': what DoWhy assigned per node."""
    names = []
    for node in model.graph.nodes:
        mech = model.causal_mechanism(node)
        inner = getattr(mech, "prediction_model", getattr(mech, "classifier_model", None))
        inner = getattr(inner, "sklearn_model", inner)
        if type(inner).__name__ == "Pipeline":
            names.append("+".join(type(st).__name__ for _, st in inner.steps))
        else:
            names.append(type(inner if inner is not None else mech).__name__)
    return ", ".join(f"{n} {c}" for n, c in pd.Series(names).value_counts().items())


def _work_line(ours, n, seconds) -> tuple[float, str]:
    """Multiply-adds per row the model needs (``CompactSCM.multiply_adds``) and the rate."""
    madds = sampler.as_compact(ours).multiply_adds()
    return madds, f"{madds:6.0f} madds/row, {madds * n / seconds / 1e9:6.2f} G madds/s"


def bench_auto(args, results):
    """DoWhy's auto-assigned models (the models users have), next to DoWhy on the same model."""
    from dowhy import gcm

    for quality, data_kind, d in args.auto_cases:
        df = simulate(2000, d, seed=3, nonlinear=data_kind == "nonlinear")
        t0 = time.perf_counter()
        model, ours = fit_dowhy(df, "linear", True, seed=0, tree_budget=args.tree_budget,
                                quality=quality)
        print(f"[auto] {quality} {data_kind} d={d}: assigned + fitted in "
              f"{time.perf_counter() - t0:.0f} s: {mechanism_counts(model)}", flush=True)
        for n in args.dowhy_rows:
            t_dowhy = timed(lambda: gcm.draw_samples(model, n), 1 if n >= 1e6 else 2)
            t_walk = timed(lambda: sampler.sample(ours, KEY, n, rng="hash", strategy="walk"), 1)
            t_ours = timed(lambda: sampler.sample(ours, KEY, n, rng="hash"), 3)
            madds, work = _work_line(ours, n, t_ours)
            row = dict(part="auto", quality=quality, data=data_kind, n=n, d=d, k=1, rng="hash",
                       mechanisms=mechanism_counts(model), strategy=sampler._plan(ours, "auto")[0],
                       dowhy_rows_per_s=n / t_dowhy, ours_rows_per_s=n / t_ours,
                       walk_rows_per_s=n / t_walk, speedup=t_dowhy / t_ours,
                       walk_speedup=t_dowhy / t_walk, madds_per_row=madds)
            results.append(row)
            print(f"[auto] {quality:6s} {data_kind:9s} d={d:<3d} n={n:>9,d}  DoWhy "
                  f"{n / t_dowhy:11,.0f} rows/s  causaljax ({row['strategy']}) {n / t_ours:12,.0f}"
                  f" rows/s  speed-up {row['speedup']:6.1f}x (dense walk {row['walk_speedup']:5.1f}x)"
                  f"  {work}", flush=True)


FITTED_DATASETS = ("pima", "anes96", "titanic", "smarket", "credit_g")


def bench_fitted(args, results):
    """64 SCMs fitted by our ``scm.fit`` (mixed families, as every study's) x 512 rows, per
    suite dataset; DoWhy alongside on the same problem: the ensemble's first DAG, GOOD
    mechanisms fitted on the same rows (DoWhy cannot load our SCMs, so not the same model)."""
    import networkx as nx
    from dowhy import gcm

    from causaljax import data
    from causaljax.finetune.generators.scm import fit_scms
    from causaljax.scm.dowhy import dowhy_frame

    for name in args.fitted_datasets:
        table = data.load(name)
        rows = np.random.default_rng(0).permutation(table.n_rows)[:512]
        train = table.take(np.sort(rows))
        t0 = time.perf_counter()
        k = args.fitted_k
        repair = {} if args.fitted_repair_alpha is None else {
            "repair_alpha": args.fitted_repair_alpha}
        ensemble = fit_scms(train, key=jax.random.key(0), k=k, n_bootstrap=5, **repair)
        fit_s = time.perf_counter() - t0
        compact = sampler.as_compact(ensemble)
        families = ", ".join(f"{g.family} {int((np.asarray(g.level) < 2**30).sum())}"
                             for g in compact.groups)
        graph = nx.DiGraph()
        graph.add_nodes_from(train.names)
        parents = np.asarray(ensemble.parents[0])
        graph.add_edges_from((train.names[i], train.names[j]) for i, j in zip(*np.nonzero(parents)))
        try:  # GOOD's cross-validation can fail on rare levels (sklearn's log_loss)
            model, _ = fit_dowhy_on(graph, train, dowhy_frame(train), "linear", True, 0)
            t_dowhy = timed(lambda: gcm.draw_samples(model, 512), 10)
        except ValueError as e:
            print(f"[fitted] {name}: DoWhy's GOOD assignment failed ({e}); no ratio", flush=True)
            t_dowhy = float("nan")
        for rng in args.rngs:
            t_walk = timed(lambda: sampler.sample(ensemble, KEY, 512, rng=rng, strategy="walk"), 5)
            t_ours = timed(lambda: sampler.sample(compact, KEY, 512, rng=rng), 30)
            madds, work = _work_line(compact, k * 512, t_ours)
            row = dict(part="fitted", dataset=name, n=512, d=train.n_cols, k=k, rng=rng,
                       edges=int(np.asarray(ensemble.parents).sum()),
                       families=families, fit_s=fit_s, dowhy_datasets_per_s=1 / t_dowhy,
                       ours_datasets_per_s=k / t_ours, walk_datasets_per_s=k / t_walk,
                       speedup=k * t_dowhy / t_ours, walk_speedup=k * t_dowhy / t_walk,
                       madds_per_row=madds)
            results.append(row)
            print(f"[fitted] {name:12s} d={train.n_cols:<3d} {k} SCMs ({families}) x 512 rows: "
                  f"DoWhy {1 / t_dowhy:6.1f} datasets/s, causaljax (grouped, rng={rng:4s}) "
                  f"{k / t_ours:8,.0f} datasets/s, speed-up {row['speedup']:5.0f}x "
                  f"(dense walk {row['walk_speedup']:4.0f}x)  {work}", flush=True)


def roofline(bytes_written: float, seconds: float) -> float | None:
    dev = jax.devices()[0]
    if dev.platform != "gpu":
        return None
    peak = next((v for name, v in PEAK_BANDWIDTH.items() if name in dev.device_kind), None)
    return None if peak is None else bytes_written / seconds / peak


FAMILY_KW = {"linear": {}, "mlp": {"hidden": 16}, "trees": {"n_trees": 20, "tree_depth": 4}}


DISTINCT_SCMS = 1024  # a larger grid k repeats these (building 1e5 SCMs on the host takes a minute)


def grid_scm(family: str, d: int, k: int):
    """k random SCMs of ``family`` over d columns (the last binary): at most DISTINCT_SCMS
    distinct ones, repeated up to k (the draw's cost does not depend on which SCM is where),
    with 1024-value noise pools (256 beyond DISTINCT_SCMS SCMs, to keep k x d x m in memory)."""
    kb = min(k, DISTINCT_SCMS)
    scm = random_scm(seed=d + k, k=kb, n_levels=(0,) * (d - 1) + (2,), edge_prob=3 / d,
                     m=1024 if k <= DISTINCT_SCMS else 256, **FAMILY_KW[family])
    if k == kb:
        return scm
    return jax.tree.map(lambda a: np.take(np.asarray(a), np.arange(k) % kb, axis=0), scm)


def bench_grid(args, results):
    for family in args.families:
        for d in args.d:
            for k in args.k:
                scm = grid_scm(family, d, k)
                for n in args.n:
                    if k * n * d > args.max_cells:
                        continue
                    for strategy in sampler.STRATEGIES:
                        if strategy == "solve" and family != "linear":
                            continue  # the closed-form solve is for linear/logistic SCMs
                        t = timed(lambda: sampler.sample(scm, KEY, n,
                                                         strategy=strategy), 3)
                        share = roofline(4.0 * k * n * d, t)
                        results.append(dict(part="grid", family=family, strategy=strategy, n=n,
                                            d=d, k=k, rows_per_s=k * n / t,
                                            datasets_per_s=k / t, roofline=share))
                        extra = f"  roofline {share:6.1%}" if share is not None else ""
                        print(f"[grid] {family:6s} {strategy:8s} d={d:<3d} k={k:<5d} n={n:>10,d} "
                              f"{k * n / t:14,.0f} rows/s {k / t:12,.1f} datasets/s{extra}")


def plot(results, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = pd.DataFrame([r for r in results if r["part"] == "grid"])
    if grid.empty:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (family, strategy, d, k), g in grid.groupby(["family", "strategy", "d", "k"]):
        if d != 20:
            continue
        ax.plot(g["n"], g["rows_per_s"], marker="o",
                ls={"walk": "-", "parallel": "--"}.get(strategy, "-."),
                label=f"{family} {strategy} k={k}")
    dowhy = [r for r in results if r["part"] == "dowhy"]
    for fam in ("linear", "trees"):
        pts = [(r["n"], r["dowhy_rows_per_s"]) for r in dowhy if r["family"] == fam]
        if pts:
            ax.plot(*zip(*pts), marker="x", color="k", ls=":", label=f"DoWhy {fam}")
    ax.set(xscale="log", yscale="log", xlabel="rows per SCM (n)", ylabel="rows / s",
           title=f"Sampler throughput, d = 20 ({jax.devices()[0].device_kind})")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="the whole grid (long on a CPU)")
    p.add_argument("--parts", default="dowhy,auto,datasets,fitted,grid")
    p.add_argument("--auto-cases", default=None,
                   help="quality:data:d,... for the auto part (default: good:near-linear:20,"
                        "good:nonlinear:20; --full adds better and d=50)")
    p.add_argument("--fitted-datasets", default=",".join(FITTED_DATASETS))
    p.add_argument("--fitted-k", type=int, default=64, help="SCMs per fitted ensemble")
    p.add_argument("--fitted-repair-alpha", type=float, default=None,
                   help="Markov repair level of the fitted ensembles' DAGs (0: none; default: "
                        "the SCM generator's)")
    p.add_argument("--auto-assign", action="store_true",
                   help="let DoWhy's GOOD auto-assignment choose the mechanisms")
    p.add_argument("--dowhy-families", default="linear,trees")
    p.add_argument("--dowhy-rows", dest="dowhy_rows_arg", default=None,
                   help="comma-separated row counts for the DoWhy comparison")
    p.add_argument("--tree-budget", default="8192",
                   help="from_dowhy's tree_budget: grid cells per tree table ('none': traverse "
                        "every tree, as before tabulation)")
    p.add_argument("--rngs", default=",".join(RNGS), help="uniform generators to time (key,hash)")
    p.add_argument("--out", default="results/bench_sampler")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--grid", default=None, metavar="FAMILIES:N:D:K",
                   help="the grid part's sizes, each a comma list, e.g. linear,mlp:512:20:64,1e5 "
                        "(replaces the mode's grid; no cell limit)")
    args = p.parse_args(argv)
    if args.tiny:
        args.dowhy_rows, args.n, args.d, args.k = [1000], [1000], [10], [1, 4]
        args.families, args.max_cells = ["linear", "trees"], 1e6
    elif args.full:
        args.dowhy_rows, args.n = [100_000, 1_000_000], [10**e for e in range(3, 8)]
        args.d, args.k, args.families, args.max_cells = [10, 20, 50], [1, 64, 1024], \
            list(FAMILY_KW), 2e9
    else:
        args.dowhy_rows, args.n = [100_000, 1_000_000], [1000, 10_000, 100_000, 1_000_000]
        args.d, args.k, args.families, args.max_cells = [20], [1, 64], list(FAMILY_KW), 1e8
    if args.grid:
        families, *sizes = args.grid.split(":")
        args.families = families.split(",")
        args.n, args.d, args.k = ([int(float(v)) for v in s.split(",")] for s in sizes)
        args.max_cells = float("inf")
    cases = [("good", "near-linear", 20), ("good", "nonlinear", 20)]
    if args.full:
        cases = [(q, k, d) for d in (20, 50) for q in ("good", "better")
                 for k in ("near-linear", "nonlinear")]
    if args.tiny:
        cases, args.fitted_datasets, args.fitted_k = [("good", "near-linear", 8)], "pima", 4
    if args.auto_cases:
        cases = [(q, k, int(d)) for q, k, d in (c.split(":") for c in args.auto_cases.split(","))]
    args.auto_cases = cases
    args.fitted_datasets = args.fitted_datasets.split(",")
    args.tree_budget = None if args.tree_budget.lower() == "none" else int(args.tree_budget)
    args.rngs = args.rngs.split(",")
    if args.dowhy_rows_arg:
        args.dowhy_rows = [int(float(v)) for v in args.dowhy_rows_arg.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    parts = args.parts.split(",")
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, "
          f"{os.cpu_count()} CPU cores, jax {jax.__version__}; malloc: {malloc_note()}")
    if "dowhy" in parts:
        bench_dowhy(args, results)
    if "auto" in parts:
        bench_auto(args, results)
    if "datasets" in parts and not args.tiny:
        bench_datasets(args, results)
    if "fitted" in parts:
        bench_fitted(args, results)
    if "grid" in parts:
        bench_grid(args, results)
    meta = dict(device=jax.devices()[0].device_kind, n_devices=jax.device_count(),
                cpu_count=os.cpu_count(), platform=platform.platform(), jax=jax.__version__,
                malloc=malloc_note())
    (out / "bench_sampler.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    plot(results, out / "bench_sampler.png")
    print(f"wrote {out / 'bench_sampler.json'} and {out / 'bench_sampler.png'}")
    return results


if __name__ == "__main__":
    reexec_with_hugepages()
    main()
