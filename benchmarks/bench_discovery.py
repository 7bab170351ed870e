"""Bootstrapped structure learning: wall time of `edge_probabilities` (B = 20, PC + FCI).

    python benchmarks/bench_discovery.py                 # ~1 min on a 2-core CPU
    python benchmarks/bench_discovery.py --n-jobs 1      # one process

Tables: a 1000 × 20 linear-Gaussian random DAG (expected degree 3; fisherz) and the public
suite's credit_g (1000 × 21, 14 categorical; the mixed one-hot test). For each: the first call
("cold": worker processes start and import causal-learn), a second call with another seed
("warm": the worker pool is reused) and, for the simulated table, skeleton recovery against
the true DAG. Writes bench_discovery.json to --out. Target: warm ≤ 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from causaljax.data.table import NUMERIC, Column, Table
from causaljax.discovery import ci_test_for, edge_probabilities


def simulated_table(n: int = 1000, d: int = 20, degree: float = 3.0, seed: int = 0):
    """(Table, true edges bool[d, d]) of a linear-Gaussian SCM on a random DAG."""
    rng = np.random.default_rng(seed)
    edges = np.triu(rng.random((d, d)) < degree / (d - 1), 1)
    W = edges * rng.uniform(0.5, 1.5, (d, d)) * rng.choice([-1, 1], (d, d))
    X = np.zeros((n, d))
    for j in range(d):
        X[:, j] = X @ W[:, j] + rng.normal(size=n)
        X[:, j] /= X[:, j].std()
    columns = tuple(Column(f"x{j}", NUMERIC) for j in range(d))
    return Table(X.astype(np.float32), np.zeros((n, d), bool), columns, f"x{d - 1}"), edges


def recovery(P, edges) -> dict:
    A = P + P.T
    upper = np.triu(np.ones_like(edges), 1)
    true = (edges | edges.T) & upper
    return dict(true_edges=int(true.sum()),
                mean_P_true=float(A[true].mean()), mean_P_absent=float(A[~true & upper].mean()),
                recall_at_half=float((A[true] > 0.5).mean()),
                false_at_half=int((A[~true & upper] > 0.5).sum()))


def run(name, table, edges, args) -> dict:
    kw = dict(algorithms=("pc", "fci"), n_bootstrap=args.bootstrap, max_depth=args.max_depth,
              n_jobs=args.n_jobs, subsample=args.subsample)
    out = dict(table=name, shape=list(table.values.shape),
               ci_test=ci_test_for(table.n_levels), **{k: v for k, v in kw.items()
                                                          if k != "algorithms"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, seed in (("cold_s", 0), ("warm_s", 1)):
            start = time.perf_counter()
            P = edge_probabilities(table, seed=seed, **kw)
            out[label] = round(time.perf_counter() - start, 3)
    if edges is not None:
        out.update(recovery(P, edges))
    print(json.dumps(out))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", type=int, default=20)
    p.add_argument("--max-depth", type=int, default=3)
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--subsample", type=float, default=0.5, help="0 = bootstrap")
    p.add_argument("--out", default="results/bench_discovery")
    args = p.parse_args(argv)

    results = [run("simulated_1000x20", *simulated_table(), args)]
    try:
        from causaljax.data import load
        results.append(run("credit_g", load("credit_g"), None, args))
    except (ImportError, OSError, KeyError, ValueError) as error:  # optional table
        print(f"credit_g skipped: {error!r}")
    meta = dict(cpu_count=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_discovery.json").write_text(json.dumps(dict(meta=meta, results=results),
                                                         indent=1))
    return results


if __name__ == "__main__":
    main()
