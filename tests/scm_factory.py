"""Random fixed-shape SCMs built directly (no fitting) and a plain NumPy reference sampler.

Both are test oracles: the factory exercises every mechanism family of the SCM contract, and
``numpy_propagate`` is an independent, loop-by-loop reading of the contract's docstring.
"""

from __future__ import annotations

import numpy as np

from causaljax.scm.types import (
    CATEGORICAL, NUMERIC, ROOT, SCM, as_jax, empty_families, slots_for, topological_depth,
    validate,
)


def random_tree(rng, parent_slots, n_nodes, n_channels, depth):
    """One random binary tree over ``parent_slots`` with at most ``n_nodes`` nodes."""
    feature = np.zeros(n_nodes, np.int32)
    threshold = np.zeros(n_nodes, np.float32)
    left = np.arange(n_nodes, dtype=np.int32)
    right = np.arange(n_nodes, dtype=np.int32)
    value = np.zeros((n_nodes, n_channels), np.float32)
    frontier, used = [(0, 0)], 1
    while frontier:
        node, level = frontier.pop(0)
        if level < depth and used + 2 <= n_nodes:
            feature[node] = rng.choice(parent_slots)
            threshold[node] = rng.normal(scale=0.5)
            left[node], right[node] = used, used + 1
            frontier += [(used, level + 1), (used + 1, level + 1)]
            used += 2
        else:
            value[node] = rng.normal(size=n_channels)
    return feature, threshold, left, right, value


def make_scm(seed=0, k=2, n_levels=(0, 0, 3, 0, 2), *, edge_prob=0.6, m=64, hidden=0,
             quad=False, n_trees=0, tree_nodes=7, integer=(), names=None) -> SCM:
    """k random SCMs over columns with ``n_levels`` (0 = numeric); every family requested is
    given random non-zero parameters on every non-root node."""
    rng = np.random.default_rng(seed)
    n_levels = np.asarray(n_levels, np.int32)
    d = len(n_levels)
    slot_column, slot_level = slots_for(n_levels)
    S, C = len(slot_column), max(2, int(n_levels.max()))
    fam = empty_families(k, d, S, C, hidden=hidden, quad=quad, n_trees=n_trees,
                         tree_nodes=tree_nodes)
    parents = np.zeros((k, d, d), bool)
    order = np.zeros((k, d), np.int32)
    depth = np.zeros(k, np.int32)
    kind = np.zeros((k, d), np.int32)
    noise = np.zeros((k, m, d), np.float32)
    for s in range(k):
        perm = rng.permutation(d)
        for a in range(d):
            for b in range(a + 1, d):
                parents[s, perm[a], perm[b]] = rng.random() < edge_prob
        order[s], depth[s] = topological_depth(parents[s])
        for j in range(d):
            has_parents = parents[s, :, j].any()
            kind[s, j] = ROOT if not has_parents else (CATEGORICAL if n_levels[j] else NUMERIC)
            if kind[s, j] == ROOT:
                noise[s, :, j] = (rng.integers(0, n_levels[j], m) if n_levels[j]
                                  else rng.normal(size=m).round(0 if j in integer else 6))
                continue
            if kind[s, j] == NUMERIC:
                noise[s, :, j] = rng.normal(scale=0.3, size=m)
            pslots = np.flatnonzero(parents[s, slot_column, j])
            fam["lin_w"][s, j] = rng.normal(scale=0.7, size=(S, C))
            fam["lin_b"][s, j] = rng.normal(size=C)
            if quad:
                fam["quad_w"][s, j] = rng.normal(scale=0.1, size=(S, S, C))
            if hidden:
                fam["mlp_w1"][s, j] = rng.normal(size=(S, hidden))
                fam["mlp_b1"][s, j] = rng.normal(size=hidden)
                fam["mlp_w2"][s, j] = rng.normal(scale=0.5, size=(hidden, C))
            for t in range(n_trees):
                tree = random_tree(rng, pslots, tree_nodes, C, depth=2)
                for name, arr in zip(("tree_feature", "tree_threshold", "tree_left", "tree_right",
                                      "tree_value"), tree):
                    fam[name][s, j, t] = arr
    scm = SCM(
        parents=parents, order=order, depth=depth, kind=kind,
        n_levels=np.broadcast_to(n_levels, (k, d)).copy(),
        is_integer=np.broadcast_to(np.isin(np.arange(d), integer), (k, d)).copy(),
        noise=noise, slot_column=np.broadcast_to(slot_column, (k, S)).copy(),
        slot_level=np.broadcast_to(slot_level, (k, S)).copy(), tree_depth=3 if n_trees else 0,
        names=tuple(names or [f"x{j}" for j in range(d)]), **fam,
    )
    validate(scm)
    return as_jax(scm)


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
