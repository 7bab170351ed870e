"""Compare two study folders run by run: the paired difference B - A per arm and metric
(``causaljax.eval.paired``), e.g. the same grid with two SCM settings.

Commands:
    python experiments/compare_settings.py notes/full_study notes/repair_s17
    python experiments/compare_settings.py runs/a runs/b --methods causalmix,scm \
        --metrics headroom,fid_detection_auc --out runs/b/vs_a.md

Each folder is a study's --out (its runs/*.parquet, or its results.parquet where runs/ is
absent, as in a fresh clone of a committed study); only the (dataset, fold, method,
volume) cells present in both are compared, so B may cover a subset of A's grid. Prints a
markdown table (``--out``: also writes it). Bad input: a message and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="study folder A (the reference)")
    p.add_argument("b", help="study folder B")
    p.add_argument("--methods", default=None, help="comma separated (default: every method "
                                                   "with runs in both)")
    p.add_argument("--metrics", default=None, help="comma separated (default: headroom, "
                                                   "test_auc and the fid_* columns)")
    p.add_argument("--out", default=None, help="also write the table to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from causaljax.eval.paired import METRICS, paired_differences, paired_markdown
    from causaljax.eval.study import ResultsStore

    stores = []
    for path in (args.a, args.b):
        df = ResultsStore(path).read() if os.path.isdir(path) else None
        table = os.path.join(path, "results.parquet")
        if (df is None or df.empty) and os.path.isfile(table):
            df = pd.read_parquet(table)
        if df is None or df.empty:
            print(f"compare_settings.py: error: no study runs in {path!r}", file=sys.stderr)
            return 2
        if args.methods:
            df = df[df["method"].isin(args.methods.split(","))]
        stores.append(df)
    metrics = tuple(args.metrics.split(",")) if args.metrics else tuple(METRICS)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        print(f"compare_settings.py: error: unknown metrics {sorted(unknown)}; choose from "
              f"{list(METRICS)}", file=sys.stderr)
        return 2
    try:
        table = paired_differences(*stores, metrics)
    except ValueError as e:
        print(f"compare_settings.py: error: {e}", file=sys.stderr)
        return 2
    if table.empty:
        print("compare_settings.py: error: the folders share no (dataset, fold, method, "
              "volume) cell", file=sys.stderr)
        return 2
    text = paired_markdown(table, os.path.basename(os.path.normpath(args.a)),
                           os.path.basename(os.path.normpath(args.b)))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
