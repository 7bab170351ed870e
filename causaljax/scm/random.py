"""Random fixed-shape SCMs with every mechanism family, built directly (no fitting).

Used by tests (as inputs to the NumPy reference sampler) and by the sampler benchmarks.
"""

from __future__ import annotations

import numpy as np

from causaljax.scm.types import (
    CATEGORICAL, NUMERIC, ROOT, SCM, as_jax, empty_families, slots_for, validate,
)


def _random_trees(rng, parent_slots_kxdxs, n_trees, n_nodes, n_channels, depth):
    """Complete binary trees of the given depth (n_nodes >= 2**(depth+1) - 1) splitting on
    random parent slots. Returns feature, threshold, left, right [k, d, T, N], value [.., C]."""
    k, d, _ = parent_slots_kxdxs.shape
    n_split = 2 ** depth - 1
    shape = (k, d, n_trees, n_nodes)
    nodes = np.arange(n_nodes)
    left = np.broadcast_to(np.where(nodes < n_split, 2 * nodes + 1, nodes), shape).copy()
    right = np.broadcast_to(np.where(nodes < n_split, 2 * nodes + 2, nodes), shape).copy()
    # choose a random parent slot per split node: sample uniformly among allowed slots
    scores = rng.random((k, d, n_trees, n_nodes, parent_slots_kxdxs.shape[-1]))
    scores = np.where(parent_slots_kxdxs[:, :, None, None, :], scores, -1.0)
    feature = scores.argmax(-1).astype(np.int32)
    has_parent = parent_slots_kxdxs.any(-1)[:, :, None, None]
    is_split = (nodes < n_split)[None, None, None, :] & has_parent
    left, right = np.where(is_split, left, nodes), np.where(is_split, right, nodes)
    feature = np.where(is_split, feature, 0)
    threshold = rng.normal(scale=0.5, size=shape).astype(np.float32)
    value = np.where(is_split[..., None], 0.0,
                     rng.normal(size=shape + (n_channels,))).astype(np.float32)
    return feature, threshold, left.astype(np.int32), right.astype(np.int32), value


def random_scm(seed=0, k=2, n_levels=(0, 0, 3, 0, 2), *, edge_prob=0.6, m=64, hidden=0,
               quad=False, cube=False, n_trees=0, tree_depth=2, integer=(), names=None) -> SCM:
    """k random SCMs over columns with ``n_levels`` (0 = numeric). Every requested family gets
    random non-zero parameters on every non-root node; roots resample random pools.
    ``cube``: 4 random degree-3 monomials per node (3 over parent slots, 1 over any slots)."""
    rng = np.random.default_rng(seed)
    n_levels = np.asarray(n_levels, np.int32)
    d = len(n_levels)
    slot_column, slot_level = slots_for(n_levels)
    S, C = len(slot_column), max(2, int(n_levels.max(initial=0)))
    tree_nodes = 2 ** (tree_depth + 1) - 1
    fam = empty_families(k, d, S, C, hidden=hidden, quad=quad, n_cube=4 if cube else 0,
                         n_trees=n_trees, tree_nodes=tree_nodes)
    # random DAGs: a random permutation, edges only from earlier to later positions
    perm = np.argsort(rng.random((k, d)), axis=1)  # perm[s, a]: column at position a
    rank = np.argsort(perm, axis=1)  # rank[s, j]: position of column j
    upper = rank[:, :, None] < rank[:, None, :]
    parents = upper & (rng.random((k, d, d)) < edge_prob)
    # longest path by relaxing d times in position order
    level = np.zeros((k, d), np.int32)
    for a in range(d):
        cols = perm[:, a]
        incoming = np.where(parents[np.arange(k), :, cols], level + 1, 0)  # [k, d]
        level[np.arange(k), cols] = incoming.max(1)
    has_parents = parents.any(1)
    kind = np.where(~has_parents, ROOT, np.where(n_levels[None] > 0, CATEGORICAL, NUMERIC))
    noise = rng.normal(size=(k, m, d))
    codes = rng.integers(0, np.maximum(n_levels, 1), size=(k, m, d))
    integer_cols = np.isin(np.arange(d), integer)
    noise = np.where(n_levels[None, None] > 0, codes,
                     np.where(integer_cols[None, None], noise.round() * 3, noise))
    noise = np.where((kind == NUMERIC)[:, None, :] & ~integer_cols[None, None], 0.3 * noise,
                     noise).astype(np.float32)
    active = (kind != ROOT)[:, :, None]
    fam["lin_w"] = (rng.normal(scale=0.7, size=(k, d, S, C)) * active[..., None]).astype(np.float32)
    fam["lin_b"] = (rng.normal(size=(k, d, C)) * active).astype(np.float32)
    if quad:
        fam["quad_w"] = (rng.normal(scale=0.1, size=(k, d, S, S, C))
                         * active[..., None, None]).astype(np.float32)
    parent_slots = np.swapaxes(parents[:, slot_column, :], 1, 2)  # [k, d, S]
    if cube:  # random parent slots (repeats allowed: x^3, x^2 y, ...); the last monomial
        # reads any slots, so the parent mask matters
        allowed = parent_slots[:, :, None, None, :] | (np.arange(4) == 3)[:, None, None]
        scores = np.where(allowed, rng.random((k, d, 4, 3, S)), -1.0)
        fam["cube_idx"] = scores.argmax(-1).astype(np.int32)  # [k, d, 4, 3]
        fam["cube_w"] = (rng.normal(scale=0.05, size=(k, d, 4, C))
                         * active[..., None]).astype(np.float32)
    if hidden:
        fam["mlp_w1"] = (rng.normal(size=(k, d, S, hidden)) * active[..., None]).astype(np.float32)
        fam["mlp_b1"] = (rng.normal(size=(k, d, hidden)) * active).astype(np.float32)
        fam["mlp_w2"] = (rng.normal(scale=0.5, size=(k, d, hidden, C))
                         * active[..., None]).astype(np.float32)
    if n_trees:
        trees = _random_trees(rng, parent_slots, n_trees, tree_nodes, C, tree_depth)
        for name, arr in zip(("tree_feature", "tree_threshold", "tree_left", "tree_right",
                              "tree_value"), trees):
            fam[name] = arr
    scm = SCM(
        parents=parents, order=perm.astype(np.int32), depth=level.max(1).astype(np.int32),
        kind=kind.astype(np.int32), n_levels=np.broadcast_to(n_levels, (k, d)).copy(),
        is_integer=np.broadcast_to(integer_cols, (k, d)).copy(),
        noise=np.ascontiguousarray(noise.swapaxes(1, 2)),  # [k, d, m]
        slot_column=np.broadcast_to(slot_column, (k, S)).copy(),
        slot_level=np.broadcast_to(slot_level, (k, S)).copy(),
        tree_depth=tree_depth if n_trees else 0,
        names=tuple(names or [f"x{j}" for j in range(d)]), **fam,
    )
    validate(scm)
    return as_jax(scm)
