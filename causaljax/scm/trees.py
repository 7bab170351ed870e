"""Fitted scikit-learn trees -> the SCM tree arrays of ``causaljax.scm.types``.

One converted model is a ``TreeArrays`` of T trees with N nodes each:

    feature   int32[T, N]     input slot read by a split node
    threshold f32[T, N]       go left iff z[feature] <= threshold
    left      int32[T, N]     a leaf points to itself on both sides; node 0 is the root
    right     int32[T, N]
    value     f32[T, N, C]    leaf values, summed over the trees
    depth     int             traversal steps that reach a leaf in every tree

``slot_map[f]`` is the SCM input slot that holds the model's input feature ``f`` (the caller
knows how the model's features were built). The models' intercepts (HistGradientBoosting's
baseline prediction) are returned separately: the caller puts them into ``lin_b``.

Thresholds. scikit-learn compares in float64 (or float32 for ``DecisionTree*``) but the SCM
compares float32 inputs, so each threshold is rounded *down* to the largest float32 not above
it: for any float32 input x, ``x <= t`` and ``x <= floor32(t)`` then agree exactly. Missing
values never occur in the encoded space, so the trees' missing-value routing is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

LOG_FLOOR = 1e-30  # decision-tree classifier leaves store log(max(p, LOG_FLOOR))


class TreeArrays(NamedTuple):
    feature: np.ndarray  # int32[..., T, N]
    threshold: np.ndarray  # f32[..., T, N]
    left: np.ndarray  # int32[..., T, N]
    right: np.ndarray  # int32[..., T, N]
    value: np.ndarray  # f32[..., T, N, C]
    depth: int

    @property
    def n_trees(self) -> int:
        return self.feature.shape[-2]

    @property
    def n_nodes(self) -> int:
        return self.feature.shape[-1]


def floor_float32(t) -> np.ndarray:
    """The largest float32 <= t (elementwise), so float32 comparisons match float64 ones."""
    t = np.asarray(t, np.float64)
    t32 = t.astype(np.float32)
    too_big = t32.astype(np.float64) > t
    return np.where(too_big, np.nextafter(t32, np.float32(-np.inf)), t32).astype(np.float32)


def leaf_depth(left, right) -> int:
    """Longest root-to-leaf path (in edges) of one tree given self-pointing leaves."""
    best, stack = 0, [(0, 0)]
    while stack:
        node, d = stack.pop()
        if left[node] == node and right[node] == node:
            best = max(best, d)
        else:
            stack.append((int(left[node]), d + 1))
            stack.append((int(right[node]), d + 1))
    return best


def _one_tree(is_leaf, feature, threshold, left, right, slot_map):
    """Common part: int32/f32 arrays of one tree with self-pointing leaves and slot features."""
    n = len(is_leaf)
    idx = np.arange(n)
    is_leaf = np.asarray(is_leaf, bool)
    slot_map = np.asarray(slot_map, np.int64)
    feat = np.where(is_leaf, 0, slot_map[np.where(is_leaf, 0, feature)])
    thr = np.where(is_leaf, 0.0, floor_float32(np.where(is_leaf, 0.0, threshold)))
    lft = np.where(is_leaf, idx, left)
    rgt = np.where(is_leaf, idx, right)
    return (feat.astype(np.int32), thr.astype(np.float32), lft.astype(np.int32),
            rgt.astype(np.int32))


def pack_trees(trees, n_channels: int) -> TreeArrays:
    """List of (feature, threshold, left, right, value[N, C]) for T trees (array-likes with
    self-pointing leaves) -> TreeArrays padded to the largest N."""
    T = len(trees)
    N = max([len(t[0]) for t in trees], default=1)
    out = _empty(T, N, n_channels)
    depth = 0
    for i, (feat, thr, lft, rgt, val) in enumerate(trees):
        n = len(feat)
        out.feature[i, :n], out.threshold[i, :n] = feat, thr
        out.left[i, :n], out.right[i, :n] = lft, rgt
        out.value[i, :n] = np.asarray(val).reshape(n, n_channels)
        depth = max(depth, leaf_depth(np.asarray(lft), np.asarray(rgt)))
    return out._replace(depth=depth)


def _empty(T: int, N: int, C: int) -> TreeArrays:
    """T trees of N nodes that are all zero-valued leaves (pointing to themselves)."""
    idx = np.broadcast_to(np.arange(N, dtype=np.int32), (T, N)).copy()
    return TreeArrays(np.zeros((T, N), np.int32), np.zeros((T, N), np.float32), idx,
                      idx.copy(), np.zeros((T, N, C), np.float32), 0)


# ---------------------------------------------------------------------------------------
# HistGradientBoosting


def _check_hgb(model, loss_names):
    if not hasattr(model, "_predictors"):
        raise ValueError(f"{type(model).__name__} is not fitted")
    loss = type(model._loss).__name__
    if loss not in loss_names:
        raise ValueError(f"{type(model).__name__} with loss {loss} is not supported "
                         f"(supported: {', '.join(loss_names)})")
    for iteration in model._predictors:
        for pred in iteration:
            if pred.nodes["is_categorical"].any():
                raise ValueError("HistGradientBoosting native categorical splits are not supported")


def _hgb_tree(predictor, slot_map, channel, n_channels):
    nodes = predictor.nodes
    is_leaf = nodes["is_leaf"].astype(bool)
    feat, thr, lft, rgt = _one_tree(is_leaf, nodes["feature_idx"], nodes["num_threshold"],
                                    nodes["left"], nodes["right"], slot_map)
    value = np.zeros((len(nodes), n_channels), np.float32)
    value[:, channel] = np.where(is_leaf, nodes["value"], 0.0)
    return feat, thr, lft, rgt, value


def hgb_regressor_arrays(model, slot_map, n_channels: int, channel: int = 0):
    """A fitted ``HistGradientBoostingRegressor`` (squared-error loss) -> (TreeArrays, bias f32[C]).
    ``predict(X) == tree outputs[:, channel] + bias[channel]``."""
    _check_hgb(model, ("HalfSquaredError",))
    trees = [_hgb_tree(p, slot_map, channel, n_channels)
             for iteration in model._predictors for p in iteration]
    bias = np.zeros(n_channels, np.float32)
    bias[channel] = float(np.ravel(model._baseline_prediction)[0])
    return pack_trees(trees, n_channels), bias


def hgb_classifier_arrays(model, slot_map, n_channels: int, channel_map=None):
    """A fitted ``HistGradientBoostingClassifier`` -> (TreeArrays, bias f32[C]) whose output are
    logits: ``softmax(out[channel_map])`` equals ``predict_proba``.

    ``channel_map[c]`` is the output channel of class ``model.classes_[c]`` (default: c).
    Binary: one tree per iteration gives the raw score of class 1, so the logits are
    ``[0, raw]``. Multiclass: tree c of each iteration scores class c."""
    _check_hgb(model, ("HalfBinomialLoss", "HalfMultinomialLoss"))
    n_classes = len(model.classes_)
    channel_map = np.arange(n_classes) if channel_map is None else np.asarray(channel_map)
    if len(channel_map) != n_classes:
        raise ValueError(f"channel_map has {len(channel_map)} entries for {n_classes} classes")
    baseline = np.ravel(model._baseline_prediction)
    bias = np.zeros(n_channels, np.float32)
    trees = []
    if n_classes == 2:
        bias[channel_map[1]] = baseline[0]
        for iteration in model._predictors:
            trees.append(_hgb_tree(iteration[0], slot_map, channel_map[1], n_channels))
    else:
        bias[channel_map] = baseline
        for iteration in model._predictors:
            for c, p in enumerate(iteration):
                trees.append(_hgb_tree(p, slot_map, channel_map[c], n_channels))
    return pack_trees(trees, n_channels), bias


# ---------------------------------------------------------------------------------------
# Decision trees


def _dt_structure(model, slot_map):
    tree = model.tree_
    if tree.n_outputs != 1:
        raise ValueError("multi-output decision trees are not supported")
    is_leaf = tree.children_left < 0
    return is_leaf, _one_tree(is_leaf, tree.feature, tree.threshold, tree.children_left,
                              tree.children_right, slot_map)


def decision_tree_arrays(model, slot_map, n_channels: int, channel_map=None) -> TreeArrays:
    """A fitted ``DecisionTreeRegressor`` or ``DecisionTreeClassifier`` -> one-tree TreeArrays.

    Regressor: the leaf value goes to channel ``channel_map`` (an int, default 0).
    Classifier: the leaf holds ``log(max(p, 1e-30))`` of the class probabilities at channel
    ``channel_map[c]`` (default: c), so a softmax recovers ``predict_proba``. Channels that
    no class maps to stay 0: the caller masks them (e.g. with a very negative bias)."""
    is_leaf, (feat, thr, lft, rgt) = _dt_structure(model, slot_map)
    raw = model.tree_.value[:, 0, :]  # [N, n_classes] (or [N, 1] for a regressor)
    value = np.zeros((len(feat), n_channels), np.float32)
    if hasattr(model, "classes_"):
        n_classes = len(model.classes_)
        channel_map = np.arange(n_classes) if channel_map is None else np.asarray(channel_map)
        if len(channel_map) != n_classes:
            raise ValueError(f"channel_map has {len(channel_map)} entries for {n_classes} classes")
        probs = raw / raw.sum(axis=1, keepdims=True)
        value[:, channel_map] = np.log(np.maximum(probs, LOG_FLOOR))
    else:
        value[:, 0 if channel_map is None else int(channel_map)] = raw[:, 0]
    value[~is_leaf] = 0.0
    return pack_trees([(feat, thr, lft, rgt, value)], n_channels)


# ---------------------------------------------------------------------------------------
# Stacking


def stack_trees(trees: Sequence[TreeArrays | None], n_channels: int | None = None,
                min_trees: int = 0, min_nodes: int = 1) -> TreeArrays:
    """Pad per-node TreeArrays (``None``: no trees) to a common T and N and stack them:
    arrays with a leading axis ``len(trees)``; padding trees are single zero-valued leaves and
    padding nodes are unreachable leaves. ``depth`` is the largest depth of all."""
    present = [t for t in trees if t is not None]
    if n_channels is None:
        if not present:
            raise ValueError("n_channels is needed when no node has trees")
        n_channels = present[0].value.shape[-1]
    T = max([t.n_trees for t in present] + [min_trees])
    N = max([t.n_nodes for t in present] + [min_nodes])
    blank = _empty(T, N, n_channels)
    out = TreeArrays(*(np.stack([a] * len(trees)) for a in blank[:5]), depth=0)
    depth = 0
    for j, t in enumerate(trees):
        if t is None:
            continue
        if t.value.shape[-1] != n_channels:
            raise ValueError(f"trees of entry {j} have {t.value.shape[-1]} channels, "
                             f"expected {n_channels}")
        nt, nn = t.n_trees, t.n_nodes
        out.feature[j, :nt, :nn] = t.feature
        out.threshold[j, :nt, :nn] = t.threshold
        out.left[j, :nt, :nn] = t.left
        out.right[j, :nt, :nn] = t.right
        out.value[j, :nt, :nn] = t.value
        depth = max(depth, t.depth)
    return out._replace(depth=depth)


# ---------------------------------------------------------------------------------------
# Tabulation: a tree ensemble as lookup tables on the grid of its split thresholds
#
# A tree that splits on the input slots s_1..s_u with the distinct thresholds th_1..th_u (per
# slot, sorted) is constant on every cell of the grid they form: cell i_s = #{t in th_s : t <
# z_s} along each slot. So are sums of such trees (on the grid of the union of their
# thresholds). ``node_tables`` sums consecutive trees of one output channel into *groups* whose
# grid stays within ``budget`` cells, and evaluates each group once per cell, at one
# representative point (the threshold itself, or just above the largest one): exact, since every
# point of a cell routes the same way through every split. Trees whose own grid exceeds the
# budget stay in the traversal arrays (the fallback).
#
# Evaluation (``causaljax.scm.mechanisms.table_outputs``) needs, per SCM node, its U table axes:
#
#     slot     int32[U]          input slot read by axis u
#     edges    f32[U, K]         the sorted union of the group thresholds on axis u, +inf padded
#     remap    int32[G, U, K+1]  b = #{edges[u] < z}  ->  stride[g, u] * #{th[g, u] < z}
#     value    f32[G, B]         group g's table; cell = sum_u remap[g, u, b_u] (row-major)
#     channel  f32[G, C]         one-hot output channel of group g (0: padding group)
#
# Padding groups, padding cells and padding axes (remap 0) contribute nothing; padding edges
# must be +inf (``pad_tables``), so that they count no input.


class TableGroup(NamedTuple):
    channel: int
    slots: tuple  # sorted input slots of the grid's axes
    thresholds: tuple  # per axis: sorted distinct f32 thresholds
    table: np.ndarray  # f64[cells], row-major over the axes (the last axis fastest)


def _reachable(left, right) -> np.ndarray:
    """Split nodes reachable from the root of one tree (self-pointing leaves)."""
    out, stack = [], [0]
    while stack:
        i = stack.pop()
        if left[i] == i and right[i] == i:
            continue
        out.append(i)
        stack.extend((int(left[i]), int(right[i])))
    return np.asarray(out, np.int64)


def _representatives(th: np.ndarray) -> np.ndarray:
    """One float32 point per cell of the thresholds th (sorted, distinct): #{th < rep[i]} = i."""
    return np.append(th, np.nextafter(th[-1], np.float32(np.inf))).astype(np.float32)


def _strides(sizes) -> np.ndarray:
    """Row-major strides of a grid with the given axis sizes (the last axis fastest)."""
    return np.append(np.cumprod(np.asarray(sizes[::-1], np.int64))[::-1][1:], 1).astype(np.int64)


def _grid_index(point_thresholds, point_slots, cell_thresholds, cell_slots) -> np.ndarray:
    """For every cell of the grid (cell_slots, cell_thresholds), row-major: the index of the
    cell holding its representative point in the coarser grid (point_slots,
    point_thresholds), whose slots are a subset."""
    sizes = [len(th) + 1 for th in cell_thresholds]
    strides = _strides([len(th) + 1 for th in point_thresholds])
    index = np.zeros(sizes, np.int64)
    for a, (slot, th) in enumerate(zip(cell_slots, cell_thresholds)):
        if slot not in point_slots:
            continue
        b = point_slots.index(slot)
        coarse = np.searchsorted(point_thresholds[b], _representatives(th), side="left")
        shape = [1] * len(sizes)
        shape[a] = sizes[a]
        index = index + (strides[b] * coarse).reshape(shape)
    return index.reshape(-1)


def _tree_grid_values(feat, thr, left, right, value, split, slots, thresholds) -> np.ndarray:
    """Leaf values f64[cells, C] of one tree at the representative point of every cell of its
    own grid (traversal of all cells at once)."""
    reps = [_representatives(th) for th in thresholds]
    if slots:
        grid = np.stack(np.meshgrid(*reps, indexing="ij"), axis=-1).reshape(-1, len(slots))
    else:
        grid = np.zeros((1, 0), np.float32)
    local = np.zeros(len(feat), np.int64)
    local[split] = [slots.index(int(feat[i])) for i in split]
    node = np.zeros(len(grid), np.int64)
    rows = np.arange(len(grid))
    for _ in range(len(feat) + 1):
        go_left = grid[rows, local[node]] <= thr[node] if slots else np.ones(len(grid), bool)
        new = np.where(go_left, left[node], right[node])
        if (new == node).all():
            break
        node = new
    return np.asarray(value, np.float64)[node]


def node_tables(tree: TreeArrays, budget: int = 2**13) -> tuple[list, np.ndarray]:
    """Tabulate the T trees of ONE SCM node (``tree``: arrays [T, N], [T, N, C]) ->
    (list of TableGroup, bool[T]: the trees left to traverse, those whose own grid exceeds
    ``budget`` cells). The other trees are grouped per output channel, greedily: a group starts
    with the first tree left and takes, one at a time, the tree whose thresholds add the fewest
    cells, while its grid stays within ``budget`` cells."""
    T = tree.feature.shape[0]
    C = tree.value.shape[-1]
    keep = np.zeros(T, bool)
    items = []  # (channel, slots, thresholds, table f64[cells])
    for t in range(T):
        feat, thr = tree.feature[t], tree.threshold[t]
        left, right = tree.left[t], tree.right[t]
        split = _reachable(left, right)
        slots = sorted({int(feat[i]) for i in split})
        thresholds = tuple(np.unique(thr[split][feat[split] == s]).astype(np.float32)
                           for s in slots)
        if np.prod([len(th) + 1 for th in thresholds], dtype=np.float64) > budget:
            keep[t] = True
            continue
        values = _tree_grid_values(feat, thr, left, right, tree.value[t], split, slots,
                                   thresholds)  # [cells, C]
        for c in range(C):
            if values[:, c].any():
                items.append((c, tuple(slots), thresholds, values[:, c]))
    groups = []
    for c in sorted({item[0] for item in items}):
        rest = [item for item in items if item[0] == c]
        while rest:  # best fit: grow the group by the tree that adds the fewest cells
            members = [rest.pop(0)]
            sets = {s: set(th.tolist()) for s, th in zip(members[0][1], members[0][2])}
            while rest:
                sizes = [_merged_cells(sets, item) for item in rest]
                best = int(np.argmin(sizes))
                if sizes[best] > budget:
                    break
                item = rest.pop(best)
                members.append(item)
                for s, th in zip(item[1], item[2]):
                    sets.setdefault(s, set()).update(th.tolist())
            slots, thresholds = _union([m[1:3] for m in members])
            table = np.zeros(int(np.prod([len(th) + 1 for th in thresholds], dtype=np.int64)))
            for _c, s, th, vals in members:
                table += vals[_grid_index(th, list(s), thresholds, slots)]
            groups.append(TableGroup(c, tuple(slots), thresholds, table))
    return groups, keep


def _merged_cells(sets: dict, item) -> float:
    """Cells of the grid of ``sets`` (slot -> thresholds) once the item's grid is added."""
    cells = 1.0
    for s, th in zip(item[1], item[2]):
        cells *= len(sets[s].union(th.tolist())) + 1 if s in sets else len(th) + 1
    for s, th in sets.items():
        if s not in item[1]:
            cells *= len(th) + 1
    return cells


def _union(grids) -> tuple[list, tuple]:
    """(sorted slots, per-slot sorted distinct thresholds) of the union of several grids."""
    by_slot = {}
    for slots, thresholds in grids:
        for s, th in zip(slots, thresholds):
            by_slot.setdefault(s, []).append(th)
    slots = sorted(by_slot)
    return slots, tuple(np.unique(np.concatenate(by_slot[s])).astype(np.float32) for s in slots)


def pack_node_tables(groups: Sequence[TableGroup], n_channels: int, U: int = 1, K: int = 1,
                     G: int = 1, B: int = 1) -> dict:
    """The evaluation arrays (see above) of one node's groups, padded to at least U axes,
    K edges, G groups and B cells."""
    slots = sorted({s for g in groups for s in g.slots})
    edges_by_slot = _union([(g.slots, g.thresholds) for g in groups])[1] if slots else ()
    U = max(U, len(slots))
    K = max([K] + [len(e) for e in edges_by_slot])
    G = max(G, len(groups))
    B = max([B] + [len(g.table) for g in groups])
    out = dict(slot=np.zeros(U, np.int32), edges=np.full((U, K), np.inf, np.float32),
               remap=np.zeros((G, U, K + 1), np.int32), value=np.zeros((G, B), np.float32),
               channel=np.zeros((G, n_channels), np.float32))
    out["slot"][:len(slots)] = slots
    for u, e in enumerate(edges_by_slot):
        out["edges"][u, :len(e)] = e
    for g, grp in enumerate(groups):
        strides = _strides([len(th) + 1 for th in grp.thresholds])
        for a, (s, th) in enumerate(zip(grp.slots, grp.thresholds)):
            u = slots.index(s)
            e = edges_by_slot[u]
            count = np.searchsorted(th, e, side="right")  # #{th <= e[b - 1]}, b >= 1
            out["remap"][g, u, 1:len(e) + 1] = strides[a] * count
            out["remap"][g, u, len(e) + 1:] = strides[a] * len(th)
        out["value"][g, :len(grp.table)] = grp.table
        out["channel"][g, grp.channel] = 1.0
    return out


TABLE_FIELDS = ("slot", "edges", "remap", "value", "channel")
_TABLE_FILL = dict(slot=0, edges=np.inf, remap=0, value=0.0, channel=0.0)


def table_sizes(tables) -> dict:
    """(U, K, G, B) of table arrays with any leading axes (a dict or an object with fields)."""
    get = (lambda f: tables[f]) if isinstance(tables, dict) else (lambda f: getattr(tables, f))
    G, U, K1 = np.shape(get("remap"))[-3:]
    return dict(U=U, K=K1 - 1, G=G, B=np.shape(get("value"))[-1])


def pad_tables(tables, U: int, K: int, G: int, B: int) -> dict:
    """Table arrays (any leading axes) padded to U axes, K edges, G groups and B cells with
    values that change no output (+inf edges, zero remaps / values / channels)."""
    get = (lambda f: tables[f]) if isinstance(tables, dict) else (lambda f: getattr(tables, f))
    target = dict(slot=(U,), edges=(U, K), remap=(G, U, K + 1), value=(G, B),
                  channel=(G, None))
    out = {}
    for f in TABLE_FIELDS:
        a = np.asarray(get(f))
        tail = target[f]
        lead = a.ndim - len(tail)
        widths = [(0, 0)] * lead + [(0, 0 if want is None else want - have)
                                    for have, want in zip(a.shape[lead:], tail)]
        if any(w[1] < 0 for w in widths):
            raise ValueError(f"cannot pad table {f} of shape {a.shape} down to {tail}")
        out[f] = np.pad(a, widths, constant_values=_TABLE_FILL[f])
    # a padded edge (+inf) is never below an input, so its remap entry is never read
    return out


def empty_tables(lead: tuple, n_channels: int) -> dict:
    """Table arrays with leading axes ``lead`` (e.g. (k, d)) that add nothing: one padding
    axis, edge, group and cell."""
    one = pack_node_tables([], n_channels)
    return {f: np.broadcast_to(a, tuple(lead) + a.shape).copy() for f, a in one.items()}


def stack_tables(tables: Sequence, lead: Sequence[tuple], n_channels: int) -> dict:
    """Pad several table sets (TreeTables / dicts, or None: no tables, leading axes ``lead[i]``)
    to common sizes; returns the list's arrays stacked on a new first axis."""
    sets = [empty_tables(l, n_channels) if t is None else t for t, l in zip(tables, lead)]
    sizes = [table_sizes(t) for t in sets]
    target = {key: max(z[key] for z in sizes) for key in ("U", "K", "G", "B")}
    padded = [pad_tables(t, **target) for t in sets]
    return {f: np.stack([p[f] for p in padded]) for f in TABLE_FIELDS}


def tabulate_trees(scm, budget: int = 2**13, max_table_bytes: int = 2**28):
    """The SCM with its tree ensembles turned into lookup tables (``SCM.tree_tables``) where
    a tree's threshold grid has at most ``budget`` cells; the other trees stay in the
    traversal arrays (``tree_*``, shrunk to the largest number of remaining trees per node).
    Same outputs as the traversal (table entries are sums of float32 leaf values taken in
    float64, then rounded once). The budget is halved until the padded tables of all k x d
    nodes fit in ``max_table_bytes``. An SCM without trees, or already tabulated with no tree
    left to traverse, comes back unchanged."""
    from causaljax.scm.types import TreeTables, as_jax

    T = scm.tree_feature.shape[2]
    if T == 0:
        return scm
    if scm.tree_tables is not None:
        raise ValueError("the SCM already has tree tables (and trees left to traverse)")
    k, d = scm.tree_feature.shape[:2]
    arrays = {f: np.asarray(getattr(scm, f"tree_{f}"))
              for f in ("feature", "threshold", "left", "right", "value")}
    C = arrays["value"].shape[-1]
    while True:
        groups, keep = {}, np.zeros((k, d, T), bool)
        for s in range(k):
            for j in range(d):
                one = TreeArrays(*(arrays[f][s, j] for f in
                                   ("feature", "threshold", "left", "right", "value")), 0)
                groups[s, j], keep[s, j] = node_tables(one, budget)
        sizes = [pack_node_tables(g, C) for g in groups.values()]
        U = max(table_sizes(p)["U"] for p in sizes)
        K = max(table_sizes(p)["K"] for p in sizes)
        G = max(table_sizes(p)["G"] for p in sizes)
        B = max(table_sizes(p)["B"] for p in sizes)
        nbytes = k * d * (4 * G * B + 4 * G * U * (K + 1) + 4 * U * K + 4 * G * C)
        if nbytes <= max_table_bytes or budget <= 1:
            break
        budget //= 2
    packed = [pad_tables(p, U, K, G, B) for p in sizes]
    tables = {f: np.stack([p[f] for p in packed]).reshape((k, d) + packed[0][f].shape)
              for f in TABLE_FIELDS}
    # the trees left to traverse, packed to the front
    T2 = int(keep.sum(-1).max())
    N = arrays["feature"].shape[-1]
    left_over = _empty(T2, N, C)
    out = {f: np.stack([np.stack([getattr(left_over, f)] * d)] * k)
           for f in ("feature", "threshold", "left", "right", "value")}
    depth = 0
    for s in range(k):
        for j in range(d):
            idx = np.flatnonzero(keep[s, j])
            for f, a in out.items():
                a[s, j, :len(idx)] = arrays[f][s, j, idx]
            for t in idx:
                depth = max(depth, leaf_depth(arrays["left"][s, j, t], arrays["right"][s, j, t]))
    return as_jax(scm.replace(
        tree_feature=out["feature"], tree_threshold=out["threshold"], tree_left=out["left"],
        tree_right=out["right"], tree_value=out["value"], tree_depth=depth,
        tree_tables=TreeTables(**tables)))
