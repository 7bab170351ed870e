"""Fit one structural causal model per DAG to a ``Table`` and stack them into one ``SCM``.

``fit(table, dags, key=...)`` returns the fixed-shape pytree of ``causaljax.scm.types`` with a
leading axis k (one entry per DAG), in the Table's encoded space, following DoWhy's gcm
recipe (``assign_causal_mechanisms(quality=GOOD)`` + ``fit``):

* ROOT nodes (no parents): the noise pool holds the observed values of the column.
* Numeric nodes: additive-noise model ``x_j = f(parents) + eps``; the noise pool holds the
  residuals on the rows ``f`` was fitted on; integer-valued columns are rounded
  (DoWhy's discrete additive-noise model).
* Categorical nodes: a classifier whose output channels are the logits of the levels.

Mechanism families (``families``), chosen per node by the loss on a held-out split of the
rows (MSE for numeric nodes, log-loss for categorical ones, as DoWhy's GOOD quality does with
cross-validation), then refitted on all rows:

    "linear"  ridge regression (one Newton step: the normal equations) / softmax regression
              (damped Newton), ``solvers.newton_glm``
    "mlp"     one hidden ReLU layer, full-batch Adam, ``solvers.adam_mlp``
    "trees"   scikit-learn HistGradientBoosting (a loop over nodes), converted to arrays by
              ``causaljax.scm.trees``

Many of the k DAGs share a node's parent set, so every family fits each unique
(node, parent set) pair -- a *task* -- once. Linear and MLP tasks are fitted on standardized
inputs; the standardization is folded back into the weights (SCM inputs are raw values).
Which rows a task is fitted on is a 0/1 row weight, so the training split and the final refit
on all rows share one compiled program. A node's MLP output bias and its trees' baseline live
in ``lin_b`` (its ``lin_w`` stays zero); every other family's parameters of a node are zero.

Compilation. A first fit compiles two XLA programs (the two solvers) and nothing else: the
solvers take tasks in chunks of ``CHUNK`` (numeric and categorical tasks alike; the last chunk
padded), so their shapes do not depend on how many tasks a family gets, and the host side
(randomness from the key, held-out outputs, noise pools) is NumPy. Later fits with the same
table shape (other keys, other DAGs with no larger parent set) compile nothing. The families
fit in threads (sklearn's trees next to XLA). For repeated cold starts, JAX's persistent
cache is opt-in: ``jax.config.update("jax_compilation_cache_dir", DIR)``.

Degenerate columns -- constant numeric columns and categorical columns with fewer than two
levels or a single observed level -- have nothing to learn: they become ROOTs (their incoming
edges are dropped, with a warning), so sampling reproduces the constant exactly.
"""

from __future__ import annotations

import functools
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jax
import numpy as np

from causaljax import progress
from causaljax.scm.solvers import adam_mlp, newton_glm
from causaljax.scm.trees import (
    hgb_classifier_arrays,
    hgb_regressor_arrays,
    stack_trees,
    tabulate_trees,
)
from causaljax.scm.types import (
    CATEGORICAL,
    NUMERIC,
    ROOT,
    SCM,
    as_jax,
    empty_families,
    slots_for,
    topological_depth,
    validate,
)

FAMILIES = ("linear", "mlp", "trees")
MIN_ROWS = 20
ABSENT_LOGIT = -30.0  # logit of a valid level a tree classifier never saw in its rows
_DENSE = ("lin_w", "lin_b", "mlp_w1", "mlp_b1", "mlp_w2")
CHUNK = 8  # tasks per solver call: every call of a solver has the same shapes
PARENT_SLOTS = 4  # the parent-slot axis P of the linear solver is a multiple of this


# ----------------------------------------------------------------------------- checks
def _check_table(table, min_rows: int):
    values = np.asarray(table.values, np.float32)
    if values.ndim != 2:
        raise ValueError(f"table.values must be 2-D [n, d], got shape {values.shape}")
    n = values.shape[0]
    if n < min_rows:
        raise ValueError(f"need at least {min_rows} rows to fit an SCM, the table has {n}")
    if not np.isfinite(values).all():
        bad = [table.columns[j].name for j in np.flatnonzero(~np.isfinite(values).all(0))]
        raise ValueError(f"table.values has NaN or inf in columns {bad}; impute first")
    n_levels = np.asarray(table.n_levels, np.int32)
    is_integer = np.array([bool(c.is_integer) for c in table.columns]) & (n_levels == 0)
    return values, n_levels, is_integer, [c.name for c in table.columns]


def _check_dags(dags, d: int) -> np.ndarray:
    """bool[k, d, d] parents (i -> j) from a DAGs pytree, an object with .adjacency, or an array."""
    parents = np.asarray(getattr(dags, "adjacency", dags)).astype(bool)
    if parents.ndim == 2:
        raise ValueError("dags must be stacked with a leading k axis (bool[k, d, d])")
    if parents.ndim != 3 or parents.shape[1:] != (d, d):
        raise ValueError(f"DAG adjacency has shape {parents.shape}, expected [k, {d}, {d}] "
                         f"for a table with {d} columns")
    if parents.shape[0] == 0:
        raise ValueError("no DAGs given (k = 0)")
    if np.diagonal(parents, axis1=1, axis2=2).any():
        raise ValueError("a DAG has a self-loop")
    for s in range(parents.shape[0]):
        topological_depth(parents[s])  # raises if DAG s has a cycle
    return parents.copy()


def _degenerate_columns(values, n_levels) -> np.ndarray:
    """bool[d]: constant columns (any kind, which covers a single observed level) and
    categorical columns with fewer than two levels."""
    constant = (values == values[:1]).all(axis=0)
    return constant | ((n_levels > 0) & (n_levels < 2))


# ----------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _Tasks:
    """The unique (node, parent set) fitting problems of all k DAGs: U tasks, P parent slots
    (the most any task has, rounded up to a multiple of PARENT_SLOTS: fewer solver shapes)."""
    node: np.ndarray  # int64[U]: column the task predicts
    mask: np.ndarray  # f32[U, S]: 1 on the input slots of the task's parents
    slots: np.ndarray  # int32[U, P]: the parent slots, padded with slot 0
    slot_valid: np.ndarray  # f32[U, P]: 1 on real entries of ``slots``
    categorical: np.ndarray  # bool[U]


def _unique_tasks(parents, kind, n_levels, slot_column) -> tuple[_Tasks, np.ndarray]:
    """Group the non-root nodes of all k DAGs by (node, parent set).
    Returns the tasks and ``task_of`` int64[k, d] (-1 for roots)."""
    k, d, _ = parents.shape
    s_idx, j_idx = np.nonzero(kind != ROOT)  # all non-root (DAG, node) pairs
    task_of = np.full((k, d), -1, np.int64)
    keys = np.concatenate([j_idx[:, None], parents[s_idx, :, j_idx]], axis=1)  # [pairs, 1 + d]
    unique, inverse = np.unique(keys.reshape(-1, 1 + d), axis=0, return_inverse=True)
    task_of[s_idx, j_idx] = inverse.ravel()
    node = unique[:, 0].astype(np.int64)
    mask = unique[:, 1:].astype(bool)[:, slot_column]  # [U, S]
    P = PARENT_SLOTS * max(1, -(-int(mask.sum(axis=1).max(initial=0)) // PARENT_SLOTS))
    slots = np.zeros((len(node), P), np.int32)
    slot_valid = np.zeros((len(node), P), np.float32)
    for u in range(len(node)):  # structural bookkeeping only, no fitting
        s = np.flatnonzero(mask[u])
        slots[u, : len(s)], slot_valid[u, : len(s)] = s, 1.0
    tasks = _Tasks(node, mask.astype(np.float32), slots, slot_valid, n_levels[node] > 0)
    return tasks, task_of


def _scale(x_nxs, weight_n):
    """Mean and std (1 where constant) of every column over the rows with weight 1."""
    rows = x_nxs[weight_n > 0]
    sd = rows.std(axis=0)
    return rows.mean(axis=0).astype(np.float32), np.where(sd > 1e-6, sd, 1.0).astype(np.float32)


def _encode(values_nxd, slot_column, slot_level) -> np.ndarray:
    """NumPy twin of ``mechanisms.encode_slots``: encoded rows f32[n, d] -> inputs f32[n, S]."""
    vals = values_nxd[:, slot_column]
    return np.where(slot_level[None, :] < 0, vals, vals == slot_level[None, :]).astype(np.float32)


def _rng(seed, *path) -> np.random.Generator:
    """An independent NumPy stream per ``path`` under the fit's key (``seed``: its key data).
    Host-side randomness needs no XLA programs, so it compiles nothing."""
    return np.random.default_rng([*seed, *path])


def _chunked(solve, per_task: tuple, n_tasks: int):
    """``solve(*chunk)`` on consecutive CHUNK-task slices of the per-task arrays (leading axis
    n_tasks; the last slice padded by repeating the last task), so every call has the same
    shapes and the solver compiles once. Returns the outputs (a pytree of arrays with a task
    axis) concatenated and cut to n_tasks."""
    outs = []
    for start in range(0, n_tasks, CHUNK):
        idx = np.minimum(np.arange(start, start + CHUNK), n_tasks - 1)
        outs.append(solve(*(a[idx] for a in per_task)))  # dispatched asynchronously
    return jax.tree.map(lambda *parts: np.concatenate([np.asarray(x) for x in parts])[:n_tasks],
                        *outs)


def _to_slots(w_uxpxc, slots_uxp, valid_uxp, n_slots: int) -> np.ndarray:
    """Scatter per-parent weights f32[U, P, C] to all input slots: f32[U, S, C] (zero
    elsewhere)."""
    U, _, C = w_uxpxc.shape
    out = np.zeros((U, n_slots, C), np.float32)
    np.add.at(out, (np.arange(U)[:, None], slots_uxp), w_uxpxc * valid_uxp[:, :, None])
    return out


# ----------------------------------------------------------------------------- outputs
def _dense_outputs(params: dict, z_nxs) -> np.ndarray:
    """Linear + MLP outputs of U tasks in the raw (encoded) input space: f32[U, n, C]
    (the maths of ``mechanisms.node_outputs``, in NumPy: no program to compile)."""
    out = np.einsum("ns,usc->unc", z_nxs, params["lin_w"]) + params["lin_b"][:, None]
    if params["mlp_w1"].shape[-1]:
        h = np.maximum(np.einsum("ns,ush->unh", z_nxs, params["mlp_w1"])
                       + params["mlp_b1"][:, None], 0.0)
        out = out + np.einsum("unh,uhc->unc", h, params["mlp_w2"])
    return out.astype(np.float32)


def _tree_outputs(z_nxs, trees) -> np.ndarray:
    """Sum of the leaf values of one task's trees: f32[n, C] (NumPy twin of
    ``mechanisms.tree_outputs``: ``depth`` steps of go-left-iff-z <= threshold), on flat
    indices: node i of tree t is entry t * N + i."""
    T, N = trees.feature.shape
    n, S = z_nxs.shape
    tree_base = np.arange(T)[:, None] * N  # [T, 1]
    row_base = np.arange(n)[None, :] * S  # [1, n]
    feature, threshold, left, right = (np.ravel(a) for a in trees[:4])
    z = np.ravel(z_nxs)
    at = np.broadcast_to(tree_base, (T, n))  # [T, n]: every row starts at each root
    for _ in range(trees.depth):
        go_left = z[row_base + feature[at]] <= threshold[at]
        at = tree_base + np.where(go_left, left[at], right[at])
    return trees.value.reshape(T * N, -1)[at].sum(axis=0)


def _losses(out_uxnxc, target_uxn, valid_uxc, categorical_u) -> np.ndarray:
    """Held-out loss per task: MSE (numeric, channel 0) or mean log-loss (categorical)."""
    out = np.asarray(out_uxnxc, np.float64)
    mse = ((out[:, :, 0] - target_uxn) ** 2).mean(axis=1)
    logits = np.where(valid_uxc[:, None, :] | ~categorical_u[:, None, None], out, -np.inf)
    logits = logits - logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    code = np.clip(target_uxn.astype(np.int64), 0, out.shape[2] - 1)
    picked = np.take_along_axis(logp, code[..., None], axis=-1)[..., 0]
    return np.where(categorical_u, -np.maximum(picked, np.log(1e-15)).mean(axis=1), mse)


# ----------------------------------------------------------------------------- families
@dataclass(frozen=True)
class _Problem:
    z: np.ndarray  # f32[n, S]: encoded inputs of all rows
    values: np.ndarray  # f32[n, d]
    n_levels: np.ndarray  # int32[d]
    tasks: _Tasks
    n_channels: int
    hidden: int
    opts: dict

    def targets(self, ids, rows=slice(None)):
        return self.values[rows][:, self.tasks.node[ids]]  # [n_rows, U]

    def valid(self, ids):
        """bool[U, C]: the channels that are levels of each task's node."""
        C = self.n_channels
        return np.arange(C)[None, :] < self.n_levels[self.tasks.node[ids]][:, None]


def _empty_params(p: _Problem, U: int) -> dict:
    S, C, H = p.z.shape[1], p.n_channels, p.hidden
    return {"lin_w": np.zeros((U, S, C), np.float32), "lin_b": np.zeros((U, C), np.float32),
                "mlp_w1": np.zeros((U, S, H), np.float32), "mlp_b1": np.zeros((U, H), np.float32),
                "mlp_w2": np.zeros((U, H, C), np.float32), "trees": [None] * U}


def _solver_inputs(p: _Problem, ids, weight_n):
    """What both solvers read, for the tasks ``ids`` fitted on the rows of ``weight_n``:
    standardized inputs zs f32[n, S] (mu, sd f32[S]), per-task targets f32[U, n] (numeric ones
    standardized: y_mean, y_sd f32[U]; categorical ones the level codes) and the output
    channels each task may use, level bool[U, C] (all of them for numeric tasks)."""
    mu, sd = _scale(p.z, weight_n)
    categorical = p.tasks.categorical[ids]
    target = p.targets(ids)  # [n, U]
    y_mean, y_sd = _scale(target, weight_n)
    y_mean, y_sd = np.where(categorical, 0.0, y_mean), np.where(categorical, 1.0, y_sd)
    target = ((target - y_mean) / y_sd).T.astype(np.float32)
    level = p.valid(ids) | ~categorical[:, None]
    return (p.z - mu) / sd, mu, sd, target, y_mean, y_sd, level


def _fold_inputs(w_uxsxa, b_uxa, mu, sd):
    """A first layer of standardized inputs -> one of raw inputs:
    zs @ w + b == z @ (w / sd) + (b - (mu / sd) @ w)."""
    return ((w_uxsxa / sd[None, :, None]).astype(np.float32),
            (b_uxa - np.einsum("s,usa->ua", mu / sd, w_uxsxa)).astype(np.float32))


def _unscale(w_uxaxc, b_uxc, y_mean, y_sd, categorical_u, level_uxc):
    """Undo the numeric targets' standardization on a last layer (w [U, A, C], b [U, C]):
    numeric tasks keep channel 0 only (times y_sd, plus y_mean), categorical ones their
    level channels."""
    channel0 = np.arange(b_uxc.shape[1]) == 0
    keep = level_uxc & (categorical_u[:, None] | channel0[None, :])
    scale = np.where(categorical_u, 1.0, y_sd)[:, None] * keep
    shift = np.where(categorical_u, 0.0, y_mean)[:, None] * channel0[None, :]
    return ((w_uxaxc * scale[:, None, :]).astype(np.float32),
            (b_uxc * scale + shift).astype(np.float32))


def _fit_linear(p: _Problem, ids, weight_n, rng):
    """Ridge regression (numeric tasks: one Newton step is exact) and softmax regression
    (categorical: ``logistic_steps`` damped Newton steps) of the tasks ``ids``."""
    zs, mu, sd, target, y_mean, y_sd, level = _solver_inputs(p, ids, weight_n)
    categorical = p.tasks.categorical[ids]
    C, S = p.n_channels, p.z.shape[1]
    w_p = np.zeros((len(ids),) + p.tasks.slots.shape[1:] + (C,), np.float32)  # [U, P, C]
    b = np.zeros((len(ids), C), np.float32)
    for cat in (False, True):  # numeric and categorical chunks: one Newton step vs many
        sel = np.flatnonzero(categorical == cat)
        if not len(sel):
            continue
        steps = p.opts["logistic_steps"] if cat else 1
        l2 = np.full(len(sel), p.opts["logistic_l2"] if cat else p.opts["ridge"], np.float32)
        solve = functools.partial(newton_glm, zs, weight_n, steps=steps, n_channels=C)
        t = ids[sel]
        w_p[sel], b[sel] = _chunked(solve, (p.tasks.slots[t], p.tasks.slot_valid[t],
                                            target[sel], categorical[sel], level[sel], l2),
                                    len(sel))
    w, b = _fold_inputs(_to_slots(w_p, p.tasks.slots[ids], p.tasks.slot_valid[ids], S), b,
                        mu, sd)
    out = _empty_params(p, len(ids))
    out["lin_w"], out["lin_b"] = _unscale(w, b, y_mean, y_sd, categorical, level)
    return out


def _fit_mlp(p: _Problem, ids, weight_n, rng):
    """One-hidden-layer ReLU MLP of the tasks ``ids`` (full-batch Adam, chunks of tasks)."""
    zs, mu, sd, target, y_mean, y_sd, level = _solver_inputs(p, ids, weight_n)
    categorical = p.tasks.categorical[ids]
    U, S, H, C = len(ids), p.z.shape[1], p.hidden, p.n_channels
    mask = p.tasks.mask[ids]  # [U, S]
    fan_in = np.maximum(mask.sum(axis=1), 1.0)[:, None, None]
    w1 = (rng.standard_normal((U, S, H)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    w2 = (rng.standard_normal((U, H, C)) / np.sqrt(H)).astype(np.float32)
    solve = functools.partial(adam_mlp, zs, weight_n, l2=p.opts["mlp_l2"], lr=p.opts["mlp_lr"],
                              steps=p.opts["mlp_steps"])
    params = _chunked(solve, (mask, target, categorical, level, w1, w2), U)
    out = _empty_params(p, U)
    out["mlp_w1"], out["mlp_b1"] = _fold_inputs(params["w1"], params["b1"], mu, sd)
    out["mlp_w2"], out["lin_b"] = _unscale(params["w2"], params["b"], y_mean, y_sd, categorical,
                                           level)  # the output bias lives in lin_b
    return out


def _fit_trees(p: _Problem, ids, weight_n, rng):
    """scikit-learn HistGradientBoosting per task (a loop: it is sklearn), as SCM tree arrays.
    sklearn runs single-threaded by default: its OpenMP threads collapse on a shared CPU."""
    import sklearn.ensemble  # noqa: F401  (load its OpenMP runtime before limiting threads)
    from threadpoolctl import threadpool_limits

    seed = int(rng.integers(0, 2**31 - 1))
    rows = np.flatnonzero(weight_n > 0)
    out = _empty_params(p, len(ids))
    with threadpool_limits(p.opts["tree_threads"]):
        for i, t in enumerate(progress.bar(ids, desc="scm.fit trees", unit="task")):
            fitted = _fit_tree_task(p, t, rows, p.tasks.categorical[t], seed)
            if fitted is not None:
                out["trees"][i], out["lin_b"][i] = fitted
    return out


def _stratified_split_possible(codes, validation_fraction: float = 0.1) -> bool:
    """Whether HistGradientBoosting's stratified early-stopping split of ``codes`` works: every
    class needs 2 rows and both parts at least one row per class."""
    counts = np.unique(codes, return_counts=True)[1]
    n_val = int(np.ceil(validation_fraction * len(codes)))
    return counts.min() >= 2 and min(n_val, len(codes) - n_val) >= len(counts)


def _fit_tree_task(p: _Problem, t: int, rows, categorical: bool, seed: int):
    """One HistGradientBoosting model of task t on ``rows`` -> (TreeArrays, bias f32[C]), or
    None when a classifier sees a single level."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kwargs = {"max_iter": p.opts["tree_max_iter"], "max_leaf_nodes": p.opts["tree_max_leaf_nodes"],
                  "early_stopping": p.opts["tree_early_stopping"], "random_state": seed}
    slots = np.flatnonzero(p.tasks.mask[t])  # model feature f reads SCM slot slots[f]
    x = p.z[np.ix_(rows, slots)]
    y = p.values[rows, p.tasks.node[t]]
    if not categorical:
        model = HistGradientBoostingRegressor(**kwargs).fit(x, y)
        return hgb_regressor_arrays(model, slots, p.n_channels)
    codes = y.astype(np.int64)
    if len(np.unique(codes)) < 2:
        return None
    if kwargs["early_stopping"] and not _stratified_split_possible(codes):
        kwargs["early_stopping"] = False  # sklearn's stratified validation split would fail
    model = HistGradientBoostingClassifier(**kwargs).fit(x, codes)
    arrays, bias = hgb_classifier_arrays(model, slots, p.n_channels, channel_map=model.classes_)
    absent = p.valid([t])[0]
    absent[model.classes_] = False  # valid levels missing from these rows: ~zero probability
    bias[absent] = ABSENT_LOGIT
    return arrays, bias


_FITTERS = {"linear": _fit_linear, "mlp": _fit_mlp, "trees": _fit_trees}


def _task_outputs(p: _Problem, params: dict, rows) -> np.ndarray:
    """Outputs of tasks (all families summed) on ``rows``: f32[U, n_rows, C], in the raw input
    space with the folded parameters the sampler's mechanisms use."""
    z = p.z[rows]
    out = _dense_outputs(params, z)
    for i, trees in enumerate(params["trees"]):
        if trees is not None:
            out[i] += _tree_outputs(z, trees)
    return out


def _fit_family(p: _Problem, family: str, ids, weight_n, rng, eval_rows=None):
    """Fit ``family`` on the tasks ``ids`` using the rows with weight 1. Returns (params with
    axis len(ids), loss on ``eval_rows`` f64[len(ids)] or None)."""
    params = _FITTERS[family](p, ids, weight_n, rng)
    if eval_rows is None:
        return params, None
    out = _task_outputs(p, params, eval_rows)
    loss = _losses(out, p.targets(ids, eval_rows).T, p.valid(ids), p.tasks.categorical[ids])
    if family == "trees":  # a task without trees could not be fitted
        loss[[t is None for t in params["trees"]]] = np.inf
    return params, loss


def _fit_families(p: _Problem, jobs: dict, weight_n, eval_rows=None) -> dict:
    """``_fit_family`` for each ``family: (ids, rng)`` of ``jobs``, each in its own thread:
    sklearn (trees) and XLA (compiling and running the solvers) release the GIL for most of
    their work, so the families overlap on a multi-core CPU."""
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        pending = {family: pool.submit(_fit_family, p, family, ids, weight_n, rng, eval_rows)
                   for family, (ids, rng) in jobs.items()}
        return {family: job.result() for family, job in pending.items()}


def _take(params: dict, idx) -> dict:
    return {name: (v[idx] if name != "trees" else [v[i] for i in idx])
            for name, v in params.items()}


# ----------------------------------------------------------------------------- fit
def fit(table, dags, *, key, families=FAMILIES, holdout: float = 0.2, refit: bool = True,
        max_noise_rows: int = 2048, ridge: float = 1e-4, logistic_steps: int = 25,
        logistic_l2: float = 1e-4, mlp_hidden: int = 16, mlp_steps: int = 300,
        mlp_lr: float = 1e-2, mlp_l2: float = 1e-4, tree_max_iter: int = 100,
        tree_max_leaf_nodes: int = 31, tree_early_stopping: bool = True,
        tree_budget: int | None = 2**13,
        tree_threads: int = 1, min_rows: int = MIN_ROWS,
        return_info: bool = False):
    """Fit one SCM per DAG to ``table`` and stack them: an ``SCM`` with leading axis k.

    table     a ``causaljax.data.Table`` (``values`` f32[n, d], ``n_levels``, ``columns``)
    dags      the discovery ``DAGs`` pytree, or anything with ``.adjacency`` bool[k, d, d]
              (``adjacency[s, i, j]``: i -> j), or that array itself
    key       JAX PRNG key: the holdout split, MLP initialization, tree seeds and the noise
              pool subsample all derive from it, so equal keys give equal SCMs
    families  mechanism families to choose from per node ("linear", "mlp", "trees")
    holdout   fraction of rows held out to choose the family (ignored with one family)
    refit     refit the chosen family on all rows (else keep the fit on the training split)
    max_noise_rows  size m of the empirical noise pools (subsampled with ``key`` if larger)
    ridge, logistic_*, mlp_*, tree_*  hyper-parameters of the families (``ridge`` and the
              L2 weights act on standardized inputs; ``logistic_steps`` counts Newton steps;
              trees are HistGradientBoosting's)
    tree_budget  fitted tree ensembles become lookup tables over threshold grids of at most
              this many cells (``trees.tabulate_trees``: the same outputs, much faster to
              sample); None keeps them as traversal arrays

    Raises ValueError for k = 0 DAGs, DAGs not matching the table, cycles, NaN values or
    fewer than ``min_rows`` rows. With ``return_info=True`` returns ``(scm, info)``: per task
    ``node``, chosen ``family``, held-out ``loss`` (dict family -> f64[U]) and ``task_of``
    int[k, d] (-1 for roots).
    """
    values, n_levels, is_integer, names = _check_table(table, min_rows)
    n, d = values.shape
    parents = _check_dags(dags, d)
    families = tuple(families)
    if not families or set(families) - set(FAMILIES):
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    k = parents.shape[0]

    degenerate = _degenerate_columns(values, n_levels)
    dropped = degenerate & parents.any(axis=(0, 1))
    if dropped.any():
        warnings.warn(f"columns {[names[j] for j in np.flatnonzero(dropped)]} are constant "
                      "(or have one level): fitted as ROOTs, their incoming edges are dropped",
                      stacklevel=2)
    parents[:, :, degenerate] = False
    kind = np.where(parents.any(axis=1), np.where(n_levels > 0, CATEGORICAL, NUMERIC), ROOT)

    slot_column, slot_level = slots_for(n_levels)
    S, C = len(slot_column), max(1, int(n_levels.max()))
    H = mlp_hidden if "mlp" in families else 0
    z = _encode(values, slot_column, slot_level)  # [n, S]
    tasks, task_of = _unique_tasks(parents, kind, n_levels, slot_column)
    U = len(tasks.node)
    opts = {"ridge": ridge, "logistic_steps": logistic_steps, "logistic_l2": logistic_l2,
                "mlp_steps": mlp_steps, "mlp_lr": mlp_lr, "mlp_l2": mlp_l2, "tree_max_iter": tree_max_iter,
                "tree_max_leaf_nodes": tree_max_leaf_nodes, "tree_early_stopping": tree_early_stopping,
                "tree_threads": tree_threads}
    p = _Problem(z, values, n_levels, tasks, C, H, opts)

    # 1. choose a family per task by the loss on held-out rows
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()  # host streams: _rng(seed, ...)
    all_rows = np.ones(n, np.float32)
    fit_weight = all_rows
    choice = np.zeros(U, np.int64)  # index into families
    losses, selection_fits = {}, {}
    if U and len(families) > 1 and holdout > 0:
        perm = _rng(seed, 0).permutation(n)
        hold_rows = np.sort(perm[: max(1, round(holdout * n))])
        train_weight = all_rows.copy()
        train_weight[hold_rows] = 0.0
        jobs = {family: (np.arange(U), _rng(seed, 1, f)) for f, family in enumerate(families)}
        fitted = _fit_families(p, jobs, train_weight, eval_rows=hold_rows)
        selection_fits = {family: fitted[family][0] for family in families}
        losses = {family: fitted[family][1] for family in families}
        choice = np.argmin(np.stack([losses[family] for family in families]), axis=0)
        if not refit:
            fit_weight = train_weight

    # 2. the chosen family of every task, fitted on the rows of fit_weight
    final = _empty_params(p, U + 1)  # task U: the all-zero mechanism of ROOT nodes
    chosen = {family: np.flatnonzero(choice == f) for f, family in enumerate(families)}
    chosen = {family: ids for family, ids in chosen.items() if len(ids)}
    if selection_fits and not refit:
        fitted = {family: _take(selection_fits[family], ids) for family, ids in chosen.items()}
    else:
        jobs = {family: (ids, _rng(seed, 2, families.index(family)))
                for family, ids in chosen.items()}
        fitted = {family: params for family, (params, _) in
                  _fit_families(p, jobs, fit_weight).items()}
    for family, ids in chosen.items():
        for name in _DENSE:
            final[name][ids] = fitted[family][name]
        for i, t in zip(ids, fitted[family]["trees"]):
            final["trees"][i] = t

    # 3. empirical noise pools: residuals of numeric tasks on fitted rows, roots' values
    m = min(max_noise_rows, n)
    fit_rows = np.flatnonzero(fit_weight > 0)
    root_rows = np.sort(_rng(seed, 3).choice(n, m, replace=False))
    resid_rows = fit_rows[np.sort(_rng(seed, 4).choice(len(fit_rows), m,
                                                       replace=len(fit_rows) < m))]
    pools = np.zeros((m, U + 1), np.float32)  # [m, task]; categorical tasks need none
    numeric = np.flatnonzero(~tasks.categorical)
    if len(numeric):
        pred = _task_outputs(p, _take(final, numeric), resid_rows)[:, :, 0]  # [U_num, m]
        pools[:, numeric] = p.targets(numeric, resid_rows) - pred.T
    idx = np.where(task_of >= 0, task_of, U)  # [k, d]: task of every node (U for roots)
    noise = pools[:, idx].transpose(1, 2, 0)  # [k, d, m]
    noise = np.where((kind == ROOT)[:, :, None], values[root_rows].T[None], noise)

    # 4. scatter task parameters to the k x d nodes
    trees = [t for t in final["trees"] if t is not None]
    T = max([t.n_trees for t in trees], default=0)
    N = max([t.n_nodes for t in trees], default=1)
    fam = empty_families(k, d, S, C, hidden=H, n_trees=T, tree_nodes=N)
    for name in _DENSE:
        fam[name] = final[name][idx]
    tree_depth = 0
    if T:
        stacked = stack_trees(final["trees"], C, min_trees=T, min_nodes=N)
        for name, arr in zip(("tree_feature", "tree_threshold", "tree_left", "tree_right",
                              "tree_value"), stacked[:5]):
            fam[name] = arr[idx]
        tree_depth = stacked.depth
    orders, depths = zip(*(topological_depth(parents[s]) for s in range(k)))
    scm = SCM(parents=parents, order=np.stack(orders), depth=np.asarray(depths, np.int32),
              kind=kind.astype(np.int32), n_levels=np.broadcast_to(n_levels, (k, d)),
              is_integer=np.broadcast_to(is_integer, (k, d)), noise=noise.astype(np.float32),
              slot_column=np.broadcast_to(slot_column, (k, S)),
              slot_level=np.broadcast_to(slot_level, (k, S)), tree_depth=tree_depth, **fam)
    validate(scm)
    scm = as_jax(scm)
    if T and tree_budget is not None:
        scm = tabulate_trees(scm, budget=tree_budget)
    if return_info:
        info = {"node": tasks.node, "family": np.asarray(families)[choice], "loss": losses,
                    "task_of": task_of}
        return scm, info
    return scm
