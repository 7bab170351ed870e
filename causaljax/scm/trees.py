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
