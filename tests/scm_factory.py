"""A plain NumPy reference sampler: an independent, loop-by-loop reading of the SCM contract's
docstring, fed the same noise as the compiled sampler."""

from __future__ import annotations

import numpy as np

from causaljax.scm.random import random_scm
from causaljax.scm.types import NUMERIC, ROOT, SCM


make_scm = random_scm  # the library's random SCM builder (every mechanism family)


def mixed_table():
    """(DataFrame, Table) of 200 rows: integer, float, string, bool columns, a string target."""
    import pandas as pd

    from causaljax.data import Table

    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "age": rng.integers(18, 90, 200),
        "income": rng.normal(50.0, 10.0, 200),
        "city": rng.choice(["Oslo", "Lima", "Pune"], 200),
        "member": rng.choice([True, False], 200),
        "label": rng.choice(["good", "bad"], 200),
    })
    return df, Table.from_pandas(df, target="label")


def scm_for_table(table, k=2, seed=1):
    """k random SCMs with the table's column layout (levels, integer columns, names)."""
    integer = [j for j, c in enumerate(table.columns) if c.is_integer]
    return random_scm(seed=seed, k=k, n_levels=table.n_levels, integer=integer,
                      names=table.names)


def numpy_propagate(scm: SCM, eps, u, do=None):
    """Reference sampler: loops over SCMs, nodes (topological order), rows and trees."""
    a = {f: np.asarray(getattr(scm, f), np.float64 if np.asarray(getattr(scm, f)).dtype.kind == "f"
                       else None) for f in scm.__dataclass_fields__ if f not in ("tree_depth", "names")}
    eps, u = np.asarray(eps, np.float64), np.asarray(u, np.float64)
    k, n, d = eps.shape
    do = do or {}
    x = np.zeros((k, n, d))
    for s in range(k):
        for j in a["order"][s]:
            if j in do:
                x[s, :, j] = do[j]
                continue
            if a["kind"][s, j] == ROOT:
                x[s, :, j] = eps[s, :, j]
                continue
            z = np.zeros((n, a["slot_column"].shape[1]))
            for slot, (col, lev) in enumerate(zip(a["slot_column"][s], a["slot_level"][s])):
                if not a["parents"][s, col, j]:
                    continue  # non-parents are masked out
                z[:, slot] = x[s, :, col] if lev < 0 else (x[s, :, col] == lev)
            out = z @ a["lin_w"][s, j] + a["lin_b"][s, j]
            if a["quad_w"].shape[2]:
                out += np.einsum("na,nb,abc->nc", z, z, a["quad_w"][s, j])
            for (i0, i1, i2), w in zip(a["cube_idx"][s, j], a["cube_w"][s, j]):
                out += np.outer(z[:, i0] * z[:, i1] * z[:, i2], w)  # z holds zeros off parents
            if a["mlp_w1"].shape[-1]:
                out += np.maximum(z @ a["mlp_w1"][s, j] + a["mlp_b1"][s, j], 0) @ a["mlp_w2"][s, j]
            for t in range(a["tree_feature"].shape[2]):
                for r in range(n):
                    node = 0
                    while a["tree_left"][s, j, t, node] != node:
                        go_left = z[r, a["tree_feature"][s, j, t, node]] <= a["tree_threshold"][s, j, t, node]
                        node = a["tree_left" if go_left else "tree_right"][s, j, t, node]
                    out[r] += a["tree_value"][s, j, t, node]
            if a["kind"][s, j] == NUMERIC:
                v = out[:, 0] + eps[s, :, j]
                x[s, :, j] = np.round(v) if a["is_integer"][s, j] else v
            else:
                L = a["n_levels"][s, j]
                logits = out[:, :L] - out[:, :L].max(1, keepdims=True)
                p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
                x[s, :, j] = np.minimum((np.cumsum(p, 1) < u[s, :, j, None]).sum(1), L - 1)
    return x
