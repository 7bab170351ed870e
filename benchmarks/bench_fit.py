"""SCM fitting time: ``causaljax.scm.fit`` of k DAGs next to DoWhy's
``gcm.auto.assign_causal_mechanisms(quality=GOOD)`` + ``gcm.fit`` of the same DAGs, measured in
the same run, on the same table.

    python benchmarks/bench_fit.py                       # k = 16, DoWhy on 4 of them
    python benchmarks/bench_fit.py --dowhy-k 16          # DoWhy on all 16 (minutes)
    python benchmarks/bench_fit.py --skip-suite --out /tmp/bench

Tables: a 1000 x 20 table simulated from a random DAG with mixed linear / nonlinear numeric
mechanisms (some integer-valued) and categorical nodes, and (unless ``--skip-suite``) a table
of the public suite (``--suite``, default credit_g: 1000 x 21, up to 10 levels).
DAGs: by default the true DAG with random edges dropped / added (simulated table) or
``sample_dags`` of a flat edge probability (suite table); with ``--discovery``,
``causaljax.discovery.edge_probabilities`` + ``sample_dags``, timed separately (slow on 2 cores).

DoWhy's time per DAG is measured on ``--dowhy-k`` DAGs and scaled linearly to k (stated in
the output). Both sides run sklearn single-threaded (``--threads``): on a small shared CPU,
OpenMP thread contention slows HistGradientBoosting by 10-30x, which would flatter causaljax.
causaljax is timed cold (first call in the process: includes XLA compilation) and warm (a
second call, another key), and the XLA compilations of each call are counted. Library imports
(sklearn, dowhy) happen before either side's clock starts. ``scm.fit`` fits its families in
threads (sklearn trees next to the XLA solvers), as DoWhy's GOOD assignment evaluates its
candidates with joblib on all cores; pin the process (``taskset -c 0``) for a one-core figure.

``--compilation-cache DIR`` turns on JAX's persistent compilation cache (opt-in, off by
default): run twice, and the second run's "cold" reads the compiled programs from DIR. Such a
figure is labelled "cold (persistent cache)" and stored apart (``causaljax_cold_cached_s``);
it is not the cold time of a fresh install.
Writes ``bench_fit.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from causaljax.data import Table
from causaljax.scm import fit

_COMPILES = [0, 0]  # XLA programs requested so far, and of those read from the persistent cache


def _count_compiles(name: str, _duration: float, **_kwargs) -> None:
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


def _count_cache_hits(name: str, **_kwargs) -> None:
    if name == "/jax/compilation_cache/cache_hits":
        _COMPILES[1] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)
jax.monitoring.register_event_listener(_count_cache_hits)


# ----------------------------------------------------------------------------- data
def simulated_frame(n: int, d: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """n rows over d columns from a random DAG: numeric nodes sum random linear / sine / step /
    square effects of their parents plus Gaussian noise (every 5th numeric one rounded to
    integers), every 4th node is categorical (3 levels, softmax of random parent effects);
    the last column ``t`` is a binary target. Returns (frame, true adjacency bool[d, d])."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(d)
    adj = np.zeros((d, d), bool)
    for pos in range(1, d):
        j = order[pos]
        candidates = order[:pos]
        n_par = min(len(candidates), rng.integers(0, 4))
        adj[rng.choice(candidates, n_par, replace=False), j] = True
    categorical = np.zeros(d, bool)
    categorical[3::4] = True
    categorical[d - 1] = True  # the target
    data = np.zeros((n, d))
    effects = [lambda x: x, np.sin, lambda x: 2.0 * (x > 0), lambda x: 0.5 * x ** 2]
    for j in order:
        par = np.flatnonzero(adj[:, j])
        feats = [(data[:, i] - data[:, i].mean()) / (data[:, i].std() + 1e-9) for i in par]
        if categorical[j]:
            L = 2 if j == d - 1 else 3
            logits = rng.normal(size=L) + sum(
                np.outer(effects[rng.integers(0, 4)](f), rng.normal(size=L)) for f in feats)
            p = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            data[:, j] = (rng.random(n)[:, None] > np.cumsum(p, axis=-1)).sum(axis=-1).clip(0, L - 1)
        else:
            data[:, j] = sum((rng.normal() * effects[rng.integers(0, 4)](f) for f in feats),
                             np.zeros(n)) + 0.5 * rng.normal(size=n)
    names = [f"x{j}" for j in range(d - 1)] + ["t"]
    cols = {}
    numeric_seen = 0
    for j, name in enumerate(names):
        if categorical[j]:
            cols[name] = data[:, j].astype(int) if name == "t" else np.array(list("abc"))[
                data[:, j].astype(int)]
        else:
            numeric_seen += 1
            cols[name] = np.round(3 * data[:, j]).astype(int) if numeric_seen % 5 == 0 else data[:, j]
    return pd.DataFrame(cols), adj


def perturbed_dags(adj: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k DAGs: the true one with each edge dropped w.p. 0.2 and forward edges (along one
    topological order) added w.p. 0.03."""
    from causaljax.scm.types import topological_depth

    rng = np.random.default_rng(seed)
    d = adj.shape[0]
    order, _ = topological_depth(adj)
    forward = np.zeros((d, d), bool)
    for a in range(d):
        forward[order[a], order[a + 1:]] = True
    out = (adj & (rng.random((k, d, d)) > 0.2)) | (forward & (rng.random((k, d, d)) < 0.03))
    return out


def get_dags(table: Table, true_adj, args) -> tuple[np.ndarray, dict]:
    """k DAGs from discovery (``--discovery``, timed) or, by default, without it: the true DAG
    perturbed (simulated table) or ``sample_dags`` of a flat edge probability 2 / d."""
    k, seed = args.k, args.seed
    if args.discovery:
        from causaljax.discovery import edge_probabilities, sample_dags

        algorithms = tuple(args.algorithms.split(","))
        t = time.perf_counter()
        P = edge_probabilities(table, algorithms=algorithms, n_bootstrap=args.n_bootstrap,
                               seed=seed)
        discovery_s = time.perf_counter() - t
        dags = sample_dags(P, k, key=jax.random.key(seed))
        return np.asarray(dags.adjacency), {
            "dags": f"edge_probabilities({args.algorithms}, n_bootstrap={args.n_bootstrap})"
                    " + sample_dags", "discovery_s": discovery_s}
    if true_adj is not None:
        return perturbed_dags(true_adj, k, seed), {"dags": "true DAG, edges dropped/added"}
    from causaljax.discovery import sample_dags

    d = table.n_cols
    P = np.full((d, d), 2.0 / d, np.float32)
    np.fill_diagonal(P, 0.0)
    dags = sample_dags(P, k, key=jax.random.key(seed))
    return np.asarray(dags.adjacency), {"dags": "sample_dags(flat P = 2/d)"}


# ----------------------------------------------------------------------------- DoWhy
def dowhy_fit_seconds(table: Table, adjacency: np.ndarray, threads: int) -> list[float]:
    import networkx as nx
    from dowhy import gcm

    gcm.config.disable_progress_bars()
    logging.getLogger("dowhy").setLevel(logging.ERROR)
    df = table.to_pandas(restore_missing=False)
    names = list(df.columns)
    times = []
    for adj in adjacency:
        graph = nx.DiGraph()
        graph.add_nodes_from(names)
        graph.add_edges_from((names[i], names[j]) for i, j in zip(*np.nonzero(adj)))
        model = gcm.StructuralCausalModel(graph)
        t = time.perf_counter()
        with threadpool_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gcm.auto.assign_causal_mechanisms(model, df, quality=gcm.auto.AssignmentQuality.GOOD)
            gcm.fit(model, df)
        times.append(time.perf_counter() - t)
    return times


# ----------------------------------------------------------------------------- run
def bench_table(label: str, table: Table, dags: np.ndarray, args) -> dict:
    k = dags.shape[0]
    kwargs = {"tree_threads": args.threads}
    keys = jax.random.key(args.seed), jax.random.key(args.seed + 1)
    compiles, hits = _COMPILES
    t = time.perf_counter()
    scm, info = fit(table, dags, key=keys[0], return_info=True, **kwargs)
    jax.block_until_ready(scm)
    cold = time.perf_counter() - t
    cold_compiles, cold_hits, compiles = _COMPILES[0] - compiles, _COMPILES[1] - hits, _COMPILES[0]
    t = time.perf_counter()
    jax.block_until_ready(fit(table, dags, key=keys[1], **kwargs))
    warm = time.perf_counter() - t
    warm_compiles = _COMPILES[0] - compiles
    cold_name = "cold_cached" if args.compilation_cache else "cold"
    cold_label = "cold (persistent cache)" if args.compilation_cache else "cold"
    families, counts = np.unique(info["family"], return_counts=True)
    n_nodes = int((np.asarray(scm.kind) != 0).sum())
    row = {"table": label, "n": table.n_rows, "d": table.n_cols, "k": k, "non_root_nodes": n_nodes,
               "unique_tasks": len(info["node"]), "families": dict(zip(families.tolist(), counts.tolist())),
               f"causaljax_{cold_name}_s": cold, "causaljax_warm_s": warm,
               f"causaljax_{cold_name}_compiles": cold_compiles, "causaljax_warm_compiles": warm_compiles,
               "causaljax_cold_cache_hits": cold_hits,
               "trees_per_node": int(scm.tree_feature.shape[2]), "tree_nodes": int(scm.tree_feature.shape[3])}
    print(f"[{label}] n={table.n_rows} d={table.n_cols} k={k}: {n_nodes} non-root nodes -> "
          f"{len(info['node'])} unique (node, parent set) tasks; chosen {row['families']}")
    cached = f", {cold_hits} read from the persistent cache" if args.compilation_cache else ""
    print(f"[{label}] causaljax fit: {cold_label} {cold:.2f} s ({cold_compiles} XLA "
          f"compilations{cached}), warm {warm:.2f} s ({warm_compiles} compilations)")
    if not args.skip_dowhy:
        dk = min(args.dowhy_k, k)
        per_dag = dowhy_fit_seconds(table, dags[:dk], args.threads)
        total = float(np.mean(per_dag)) * k
        row.update(dowhy_k_measured=dk, dowhy_per_dag_s=per_dag, dowhy_total_s=total,
                   dowhy_total_is_scaled=dk < k, **{f"speedup_{cold_name}": total / cold},
                   speedup_warm=total / warm)
        scaled = f" (measured on {dk} DAGs, scaled linearly to {k})" if dk < k else ""
        print(f"[{label}] DoWhy GOOD assign+fit: {np.mean(per_dag):.2f} s/DAG -> {total:.1f} s "
              f"for {k} DAGs{scaled}")
        print(f"[{label}] speed-up over DoWhy: {total / cold:.1f}x {cold_label}, "
              f"{total / warm:.1f}x warm")
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--k", type=int, default=16, help="DAGs to fit")
    ap.add_argument("--dowhy-k", type=int, default=4, help="DAGs DoWhy fits (time scaled to k)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--discovery", action="store_true",
                    help="DAGs from causaljax.discovery (timed) instead of random ones")
    ap.add_argument("--algorithms", default="pc,fci", help="discovery algorithms")
    ap.add_argument("--n-bootstrap", type=int, default=20, help="discovery resamples")
    ap.add_argument("--threads", type=int, default=1, help="sklearn threads, both sides")
    ap.add_argument("--suite", default="credit_g", help="public-suite table")
    ap.add_argument("--skip-suite", action="store_true")
    ap.add_argument("--skip-dowhy", action="store_true")
    ap.add_argument("--out", default="results/bench_fit")
    ap.add_argument("--compilation-cache", metavar="DIR",
                    help="opt-in persistent XLA compilation cache (cold times labelled as such)")
    args = ap.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    import sklearn.ensemble  # noqa: F401  (imported before any clock starts, as dowhy is)

    rows = []
    frame, true_adj = simulated_frame(args.n, args.d, args.seed)
    table = Table.from_pandas(frame, target="t")
    dags, how = get_dags(table, true_adj, args)
    print(f"[simulated] DAGs: {how['dags']}" + (
        f", discovery {how['discovery_s']:.1f} s" if "discovery_s" in how else ""))
    rows.append({**bench_table("simulated", table, dags, args), **how})
    if not args.skip_suite:
        try:
            from causaljax.data import load
            suite_table = load(args.suite)
        except Exception as err:  # noqa: BLE001  (the suite is optional here)
            print(f"[{args.suite}] skipped: {err}")
        else:
            dags, how = get_dags(suite_table, None, args)
            print(f"[{args.suite}] DAGs: {how['dags']}" + (
                f", discovery {how['discovery_s']:.1f} s" if "discovery_s" in how else ""))
            rows.append({**bench_table(args.suite, suite_table, dags, args), **how})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "jax": jax.__version__,
                "devices": [str(x) for x in jax.devices()], "args": vars(args)}
    (out / "bench_fit.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out / 'bench_fit.json'}")
    return rows


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    main()
