"""Throughput of the random-SCM pretraining prior (causaljax.prior.sample_batch).

    python benchmarks/bench_prior.py                  # 1024 rows x 20 features, ~1 min on CPU
    taskset -c 0 python benchmarks/bench_prior.py --rng hash   # one core: the anchor's setting
    python benchmarks/bench_prior.py --rows 128 --batch 16 --repeats 2   # smoke test

Runs under glibc's huge-page malloc where it can (``causaljax.runtime``; the anchor is a
figure from elsewhere, so the header says which setting this run had; ``GLIBC_TUNABLES=``
measures without). Prints datasets/s after compilation (per wall-clock second, and per CPU second of this
process, which a busy shared machine does not distort), next to the TabPFN-v1 prior figure measured on this kind
of machine (anchors: 522 datasets/s at 1024 rows x 20 features, one CPU thread, torch).
The SCM has features + 1 nodes (every node but the target can be a feature).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax.prior import PriorConfig, throughput
from causaljax.runtime import malloc_note

TABPFN_V1_DATASETS_PER_S = 522.0  # 1024 rows x 20 features, one CPU thread (anchors.md)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rng", default="key", choices=("key", "hash"),
                    help="the sampler's uniforms: threefry from the key, or the counter hash")
    args = ap.parse_args(argv)
    cfg = PriorConfig(n_rows=args.rows, n_nodes=args.features + 1,
                      max_prior_features=args.features, hidden=args.hidden,
                      min_rows=args.rows, rng=args.rng)  # other fields: the training defaults
    rates = throughput(cfg, batch_size=args.batch, repeats=args.repeats)
    rate = rates["datasets_per_s"]
    result = {"rows": args.rows, "features": args.features, "batch": args.batch, "rng": args.rng,
              "device": jax.devices()[0].device_kind, "datasets_per_s": round(rate, 1),
              "datasets_per_cpu_s": round(rates["datasets_per_cpu_s"], 1),
              "tabpfn_v1_prior_datasets_per_s": TABPFN_V1_DATASETS_PER_S,
              "ratio_vs_tabpfn_v1": round(rate / TABPFN_V1_DATASETS_PER_S, 2),
              "malloc": malloc_note()}
    print(f"causaljax prior: {rate:,.0f} datasets/s at {args.rows} rows x {args.features} "
          f"features on {result['device']} (TabPFN-v1 prior, one CPU thread: "
          f"{TABPFN_V1_DATASETS_PER_S:.0f} datasets/s at 1024 x 20; ratio "
          f"{result['ratio_vs_tabpfn_v1']}); per CPU-second of this process: "
          f"{rates['datasets_per_cpu_s']:,.0f} (a shared machine lowers the wall-clock figure); "
          f"malloc: {malloc_note()}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    main()
