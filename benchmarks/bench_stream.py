"""Bounded-memory streaming: write N sampled rows to Parquet and report peak RSS.

    python benchmarks/bench_stream.py --rows 100000000     # the issue's 1e8 rows (minutes)
    python benchmarks/bench_stream.py --rows 1000000       # quick

A 20-column table (18 numeric, one 3-level categorical, a binary target) and 16 random SCMs
(linear mechanisms). Prints rows/s and the process's peak resident memory; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from causaljax import sampler
from causaljax.data import Table
from causaljax.scm.random import random_scm


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=float, default=1e8)
    p.add_argument("--chunk-rows", type=int, default=1_000_000)
    p.add_argument("--rng", default="key", choices=sampler.RNGS,
                   help="uniforms from the key's JAX generator or the counter hash")
    p.add_argument("--out", default="results/bench_stream")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    cols = {f"x{j}": rng.normal(size=100) for j in range(18)}
    cols["c"] = rng.choice(["a", "b", "c"], 100)
    cols["y"] = rng.choice(["no", "yes"], 100)
    table = Table.from_pandas(pd.DataFrame(cols), target="y")
    scm = random_scm(seed=0, k=16, n_levels=table.n_levels, names=table.names, edge_prob=0.15)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        t0 = time.perf_counter()
        n = sampler.write(scm, table, path, int(args.rows), chunk_rows=args.chunk_rows,
                          key=jax.random.key(0), rng=args.rng)
        seconds = time.perf_counter() - t0
        size = path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = dict(rows=n, seconds=seconds, rows_per_s=n / seconds, peak_rss_mib=peak,
                  rss_before_write_mib=rss_before, parquet_mib=size / 2**20,
                  chunk_rows=args.chunk_rows, rng=args.rng, device=jax.devices()[0].device_kind)
    print(f"wrote {n:,} rows ({size / 2**20:,.0f} MiB) in {seconds:,.1f} s = {n / seconds:,.0f} "
          f"rows/s; peak RSS {peak:,.0f} MiB (before writing {rss_before:,.0f} MiB)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_stream.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
