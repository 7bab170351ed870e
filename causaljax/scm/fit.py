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

    "linear"  ridge regression (closed form: one batched solve of the masked normal
              equations for all nodes) / softmax regression (L-BFGS, vmapped over nodes)
    "mlp"     one hidden ReLU layer, Adam, vmapped over nodes
    "trees"   scikit-learn HistGradientBoosting (a loop over nodes), converted to arrays by
              ``causaljax.scm.trees``

Many of the k DAGs share a node's parent set, so every family fits each unique
(node, parent set) pair -- a *task* -- once. Linear and MLP tasks are fitted on standardized
inputs; the standardization is folded back into the weights (SCM inputs are raw values).
Which rows a task is fitted on is a 0/1 row weight, so the training split and the final refit
on all rows share one compiled program. A node's MLP output bias and its trees' baseline live
in ``lin_b`` (its ``lin_w`` stays zero); every other family's parameters of a node are zero.

Degenerate columns -- constant numeric columns and categorical columns with fewer than two
levels or a single observed level -- have nothing to learn: they become ROOTs (their incoming
edges are dropped, with a warning), so sampling reproduces the constant exactly.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from causaljax.scm.mechanisms import encode_slots, tree_outputs
from causaljax.scm.trees import hgb_classifier_arrays, hgb_regressor_arrays, stack_trees
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
    """The unique (node, parent set) fitting problems of all k DAGs; U tasks, P slots max."""
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
    P = max(1, int(mask.sum(axis=1).max(initial=0)))
    slots = np.zeros((len(node), P), np.int32)
    slot_valid = np.zeros((len(node), P), np.float32)
    for u in range(len(node)):  # structural bookkeeping only, no fitting
        s = np.flatnonzero(mask[u])
        slots[u, : len(s)], slot_valid[u, : len(s)] = s, 1.0
    tasks = _Tasks(node, mask.astype(np.float32), slots, slot_valid, n_levels[node] > 0)
    return tasks, task_of


def _padded(ids: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Pad a task-id list (repeating the first) to a multiple of 8, so the batched fitters
    compile for few shapes (small problems: one shape for the selection and the refit)."""
    size = multiple * max(1, math.ceil(len(ids) / multiple))
    return np.concatenate([ids, np.full(size - len(ids), ids[0], ids.dtype)])


def _scale(x_nxs, weight_n):
    """Mean and std (1 where constant) of every column over the rows with weight 1."""
    rows = x_nxs[weight_n > 0]
    sd = rows.std(axis=0)
    return rows.mean(axis=0).astype(np.float32), np.where(sd > 1e-6, sd, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- JAX kernels
@jax.jit
def _ridge_solve(zs_nxs, y_nxu, weight_n, mask_uxs, ridge):
    """Ridge regression of every column of y on its masked standardized inputs (rows weighted
    0/1, ``zs`` centred on those rows): one batched solve of (Zᵀ M Z / n + λ I) w = M Zᵀ y / n.
    Slots outside the mask get w = 0. Returns (w f32[U, S], intercept f32[U])."""
    S = zs_nxs.shape[1]
    zw = zs_nxs * weight_n[:, None]
    count = weight_n.sum()
    gram = zw.T @ zs_nxs / count  # [S, S]
    y_mean = weight_n @ y_nxu / count  # [U]
    rhs = zw.T @ (y_nxu - y_mean[None, :]) / count  # [S, U]

    def one(mask_s, rhs_s):
        a = gram * mask_s[:, None] * mask_s[None, :] + ridge * jnp.eye(S)
        return jnp.linalg.solve(a, rhs_s * mask_s)

    return jax.vmap(one)(mask_uxs, rhs.T), y_mean


def _forward(params, x_nxp):
    """Standardized-space model of one task: softmax regression (no 'w2') or an MLP."""
    if "w2" not in params:
        return x_nxp @ params["w1"] + params["b"][None, :]
    h = jax.nn.relu(x_nxp @ params["w1"] + params["b1"][None, :])
    return h @ params["w2"] + params["b"][None, :]


def _task_loss(params, x_nxp, target_n, weight_n, valid_c, l2, categorical: bool):
    """Row-weighted mean loss (log-loss over the valid levels, or squared error) + L2."""
    out = _forward(params, x_nxp)  # [n, C]
    if categorical:
        logp = jax.nn.log_softmax(jnp.where(valid_c[None, :], out, -jnp.inf), axis=-1)
        per_row = -jnp.take_along_axis(logp, target_n.astype(jnp.int32)[:, None], axis=1)[:, 0]
    else:
        per_row = (out[:, 0] - target_n) ** 2
    data = weight_n @ per_row / weight_n.sum()
    penalty = sum(jnp.sum(params[w] ** 2) for w in ("w1", "w2") if w in params)
    return data + 0.5 * l2 * penalty


def _lbfgs(loss, params, steps: int):
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params


def _adam(loss, params, steps: int, lr: float):
    opt = optax.adam(lr)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params


@functools.partial(jax.jit, static_argnames=("hidden", "n_channels", "steps", "lr",
                                             "categorical"))
def _train(key, zs_nxs, target_nxu, weight_n, slots_uxp, slot_valid_uxp, valid_uxc, l2, *,
           hidden: int, n_channels: int, steps: int, lr: float, categorical: bool):
    """Fit U tasks at once (vmap) on standardized inputs: softmax regression by L-BFGS when
    ``hidden == 0``, else a one-hidden-layer MLP by Adam. Each task reads only its P parent
    slots. Returns params with axis U and first-layer weights scattered back to all S slots:
    w1 [U, S, H or C] (zero off the parents), b1 [U, H], w2 [U, H, C], b [U, C]."""
    S = zs_nxs.shape[1]
    P = slots_uxp.shape[1]

    def init(key_u, slot_valid_p):
        if hidden == 0:
            return {"w1": jnp.zeros((P, n_channels)), "b": jnp.zeros(n_channels)}
        k1, k2 = jax.random.split(key_u)
        fan_in = jnp.maximum(slot_valid_p.sum(), 1.0)
        return {"w1": jax.random.normal(k1, (P, hidden)) * jnp.sqrt(2.0 / fan_in),
                    "b1": jnp.zeros(hidden),
                    "w2": jax.random.normal(k2, (hidden, n_channels)) / jnp.sqrt(hidden),
                    "b": jnp.zeros(n_channels)}

    def one(key_u, target_n, slots_p, slot_valid_p, valid_c):
        x_nxp = zs_nxs[:, slots_p] * slot_valid_p[None, :]  # padding slots read 0
        loss = functools.partial(_task_loss, x_nxp=x_nxp, target_n=target_n, weight_n=weight_n,
                                 valid_c=valid_c, l2=l2, categorical=categorical)
        params = init(key_u, slot_valid_p)
        params = _lbfgs(loss, params, steps) if hidden == 0 else _adam(loss, params, steps, lr)
        w1 = params["w1"] * slot_valid_p[:, None]
        params["w1"] = jnp.zeros((S, w1.shape[1])).at[slots_p].add(w1)
        return params

    keys = jax.random.split(key, slots_uxp.shape[0])
    return jax.vmap(one)(keys, target_nxu.T, slots_uxp, slot_valid_uxp, valid_uxc)


@jax.jit
def _raw_outputs(lin_w_uxsxc, lin_b_uxc, w1_uxsxh, b1_uxh, w2_uxhxc, z_nxs):
    """Linear + MLP outputs of U tasks in the raw (encoded) input space: f32[U, n, C]."""
    out = jnp.einsum("ns,usc->unc", z_nxs, lin_w_uxsxc) + lin_b_uxc[:, None]
    if w1_uxsxh.shape[-1]:
        h = jax.nn.relu(jnp.einsum("ns,ush->unh", z_nxs, w1_uxsxh) + b1_uxh[:, None])
        out = out + jnp.einsum("unh,uhc->unc", h, w2_uxhxc)
    return out


@functools.partial(jax.jit, static_argnames="depth")
def _tree_task_outputs(z_nxs, feature, threshold, left, right, value, depth: int):
    """Sum of the trees of U tasks, f32[U, n, C] (lax.map over tasks keeps memory small)."""
    return jax.lax.map(lambda t: tree_outputs(z_nxs, *t, depth),
                       (feature, threshold, left, right, value))


def _losses(out_uxnxc, target_nxu, valid_uxc, categorical: bool) -> np.ndarray:
    """Held-out loss per task: MSE (numeric, channel 0) or mean log-loss (categorical)."""
    out = np.asarray(out_uxnxc, np.float64)
    target = np.asarray(target_nxu).T  # [U, n]
    if not categorical:
        return ((out[:, :, 0] - target) ** 2).mean(axis=1)
    logits = np.where(valid_uxc[:, None, :], out, -np.inf)
    logits = logits - logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, target.astype(np.int64)[..., None], axis=-1)[..., 0]
    return -np.maximum(picked, np.log(1e-15)).mean(axis=1)


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


def _train_tasks(p: _Problem, ids, weight_n, key, categorical: bool, hidden: int):
    """Run ``_train`` on the tasks ``ids`` (padded to a multiple of 8) with standardized inputs
    (and standardized numeric targets). Returns (params, mu, sd, y_mean, y_sd, valid), all
    with the padded task axis."""
    mu, sd = _scale(p.z, weight_n)
    zs = (p.z - mu) / sd
    padded = _padded(ids)
    target = p.targets(padded)
    if categorical:
        y_mean, y_sd = np.zeros(len(padded), np.float32), np.ones(len(padded), np.float32)
    else:
        y_mean, y_sd = _scale(target, weight_n)
        target = (target - y_mean) / y_sd
    valid = p.valid(padded)
    steps, lr, l2 = ((p.opts["logistic_steps"], 0.0, p.opts["logistic_l2"]) if hidden == 0 else
                     (p.opts["mlp_steps"], p.opts["mlp_lr"], p.opts["mlp_l2"]))
    params = _train(key, zs, target, weight_n, p.tasks.slots[padded],
                    p.tasks.slot_valid[padded], valid, l2, hidden=hidden,
                    n_channels=p.n_channels, steps=steps, lr=lr, categorical=categorical)
    params = {name: np.asarray(v) for name, v in params.items()}
    return params, mu, sd, y_mean, y_sd, valid


def _fit_linear(p: _Problem, ids, weight_n, key, categorical: bool):
    """Ridge (numeric, closed form) or softmax regression (categorical) of the tasks ``ids``."""
    U, C = len(ids), p.n_channels
    if categorical:
        params, mu, sd, _, _, valid = _train_tasks(p, ids, weight_n, key, True, hidden=0)
        w_s = params["w1"][:U] * valid[:U, None, :]  # [U, S, C], standardized inputs
        b_s = params["b"][:U] * valid[:U]
    else:
        mu, sd = _scale(p.z, weight_n)
        padded = _padded(ids)
        w, y_mean = _ridge_solve((p.z - mu) / sd, p.targets(padded), weight_n,
                                 p.tasks.mask[padded], p.opts["ridge"])
        w_s = np.zeros((U, p.z.shape[1], C), np.float32)
        b_s = np.zeros((U, C), np.float32)
        w_s[:, :, 0], b_s[:, 0] = np.asarray(w)[:U], np.asarray(y_mean)[:U]
    out = _empty_params(p, U)
    # fold the standardization: zs @ w + b == z @ (w / sd) + (b - (mu / sd) @ w)
    out["lin_w"] = (w_s / sd[None, :, None]).astype(np.float32)
    out["lin_b"] = (b_s - np.einsum("s,usc->uc", mu / sd, w_s)).astype(np.float32)
    return out


def _fit_mlp(p: _Problem, ids, weight_n, key, categorical: bool):
    """One-hidden-layer ReLU MLP of the tasks ``ids`` (Adam, vmapped over tasks)."""
    U = len(ids)
    params, mu, sd, y_mean, y_sd, valid = _train_tasks(p, ids, weight_n, key, categorical,
                                                       hidden=p.hidden)
    w1, b1 = params["w1"][:U], params["b1"][:U]  # [U, S, H], [U, H]
    w2, b2 = params["w2"][:U], params["b"][:U]  # [U, H, C], [U, C]
    if categorical:
        w2, b2 = w2 * valid[:U, None, :], b2 * valid[:U]
    else:  # undo the target standardization; only channel 0 carries the output
        y_mean, y_sd = y_mean[:U], y_sd[:U]
        w2 = np.concatenate([w2[:, :, :1] * y_sd[:, None, None], 0 * w2[:, :, 1:]], axis=2)
        b2 = np.concatenate([b2[:, :1] * y_sd[:, None] + y_mean[:, None], 0 * b2[:, 1:]], 1)
    out = _empty_params(p, U)
    out["mlp_w1"] = (w1 / sd[None, :, None]).astype(np.float32)  # folded standardization
    out["mlp_b1"] = (b1 - np.einsum("s,ush->uh", mu / sd, w1)).astype(np.float32)
    out["mlp_w2"] = w2.astype(np.float32)
    out["lin_b"] = b2.astype(np.float32)  # the MLP's output bias
    return out


def _fit_trees(p: _Problem, ids, weight_n, key, categorical: bool):
    """scikit-learn HistGradientBoosting per task (a loop: it is sklearn), as SCM tree arrays.
    sklearn runs single-threaded by default: its OpenMP threads collapse on a shared CPU."""
    import sklearn.ensemble  # noqa: F401  (load its OpenMP runtime before limiting threads)
    from threadpoolctl import threadpool_limits

    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rows = np.flatnonzero(weight_n > 0)
    out = _empty_params(p, len(ids))
    with threadpool_limits(p.opts["tree_threads"]):
        for i, t in enumerate(ids):
            fitted = _fit_tree_task(p, t, rows, categorical, seed)
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
    """Outputs of tasks (all families summed) on ``rows``: f32[U, n_rows, C], computed with the
    same JAX code as the sampler's mechanisms (raw inputs, folded parameters)."""
    z = jnp.asarray(p.z[rows])
    out = np.array(_raw_outputs(*(params[name] for name in _DENSE), z))
    have = [i for i, t in enumerate(params["trees"]) if t is not None]
    if have:
        stacked = stack_trees([params["trees"][i] for i in have], p.n_channels)
        out[have] += np.asarray(_tree_task_outputs(z, *stacked[:5], depth=stacked.depth))
    return out


def _fit_family(p: _Problem, family: str, ids, weight_n, key, eval_rows=None):
    """Fit ``family`` on the tasks ``ids`` (numeric and categorical ones separately) using the
    rows with weight 1. Returns (params with axis len(ids), loss on ``eval_rows`` f64[len(ids)]
    or None)."""
    params = _empty_params(p, len(ids))
    loss = np.full(len(ids), np.inf)
    for categorical in (False, True):
        sel = np.flatnonzero(p.tasks.categorical[ids] == categorical)
        if len(sel) == 0:
            continue
        part = _FITTERS[family](p, ids[sel], weight_n, key, categorical)
        for name in _DENSE:
            params[name][sel] = part[name]
        for i, t in zip(sel, part["trees"]):
            params["trees"][i] = t
        if eval_rows is not None:
            out = _task_outputs(p, part, eval_rows)
            part_loss = _losses(out, p.targets(ids[sel], eval_rows), p.valid(ids[sel]),
                                categorical)
            if family == "trees":  # a task without trees could not be fitted
                part_loss[[t is None for t in part["trees"]]] = np.inf
            loss[sel] = part_loss
    return params, (loss if eval_rows is not None else None)


def _take(params: dict, idx) -> dict:
    return {name: (v[idx] if name != "trees" else [v[i] for i in idx])
            for name, v in params.items()}


# ----------------------------------------------------------------------------- fit
def fit(table, dags, *, key, families=FAMILIES, holdout: float = 0.2, refit: bool = True,
        max_noise_rows: int = 2048, ridge: float = 1e-4, logistic_steps: int = 50,
        logistic_l2: float = 1e-4, mlp_hidden: int = 16, mlp_steps: int = 300,
        mlp_lr: float = 1e-2, mlp_l2: float = 1e-4, tree_max_iter: int = 100,
        tree_max_leaf_nodes: int = 31, tree_early_stopping: bool = True,
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
              L2 weights act on standardized inputs; trees are HistGradientBoosting's)

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
    z = np.asarray(encode_slots(jnp.asarray(values), jnp.asarray(slot_column),
                                jnp.asarray(slot_level)))  # [n, S]
    tasks, task_of = _unique_tasks(parents, kind, n_levels, slot_column)
    U = len(tasks.node)
    opts = {"ridge": ridge, "logistic_steps": logistic_steps, "logistic_l2": logistic_l2,
                "mlp_steps": mlp_steps, "mlp_lr": mlp_lr, "mlp_l2": mlp_l2, "tree_max_iter": tree_max_iter,
                "tree_max_leaf_nodes": tree_max_leaf_nodes, "tree_early_stopping": tree_early_stopping,
                "tree_threads": tree_threads}
    p = _Problem(z, values, n_levels, tasks, C, H, opts)

    # 1. choose a family per task by the loss on held-out rows
    key_split, key_select, key_final, key_noise = jax.random.split(key, 4)
    all_rows = np.ones(n, np.float32)
    fit_weight = all_rows
    choice = np.zeros(U, np.int64)  # index into families
    losses, selection_fits = {}, {}
    if U and len(families) > 1 and holdout > 0:
        perm = np.asarray(jax.random.permutation(key_split, n))
        hold_rows = np.sort(perm[: max(1, round(holdout * n))])
        train_weight = all_rows.copy()
        train_weight[hold_rows] = 0.0
        for f, family in enumerate(families):
            selection_fits[family], losses[family] = _fit_family(
                p, family, np.arange(U), train_weight, jax.random.fold_in(key_select, f),
                eval_rows=hold_rows)
        choice = np.argmin(np.stack([losses[family] for family in families]), axis=0)
        if not refit:
            fit_weight = train_weight

    # 2. the chosen family of every task, fitted on the rows of fit_weight
    final = _empty_params(p, U + 1)  # task U: the all-zero mechanism of ROOT nodes
    for f, family in enumerate(families):
        chosen = np.flatnonzero(choice == f)
        if len(chosen) == 0:
            continue
        if selection_fits and not refit:
            params = _take(selection_fits[family], chosen)
        else:
            params, _ = _fit_family(p, family, chosen, fit_weight, jax.random.fold_in(key_final, f))
        for name in _DENSE:
            final[name][chosen] = params[name]
        for i, t in zip(chosen, params["trees"]):
            final["trees"][i] = t

    # 3. empirical noise pools: residuals of numeric tasks on fitted rows, roots' values
    m = min(max_noise_rows, n)
    key_root, key_resid = jax.random.split(key_noise)
    fit_rows = np.flatnonzero(fit_weight > 0)
    root_rows = np.sort(np.asarray(jax.random.choice(key_root, n, (m,), replace=False)))
    resid_rows = fit_rows[np.sort(np.asarray(jax.random.choice(
        key_resid, len(fit_rows), (m,), replace=len(fit_rows) < m)))]
    pools = np.zeros((m, U + 1), np.float32)  # [m, task]; categorical tasks need none
    numeric = np.flatnonzero(~tasks.categorical)
    if len(numeric):
        pred = _task_outputs(p, _take(final, numeric), resid_rows)[:, :, 0]  # [U_num, m]
        pools[:, numeric] = p.targets(numeric, resid_rows) - pred.T
    idx = np.where(task_of >= 0, task_of, U)  # [k, d]: task of every node (U for roots)
    noise = pools[:, idx].transpose(1, 0, 2)  # [k, m, d]
    noise = np.where((kind == ROOT)[:, None, :], values[root_rows][None], noise)

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
    if return_info:
        info = {"node": tasks.node, "family": np.asarray(families)[choice], "loss": losses,
                    "task_of": task_of}
        return scm, info
    return scm
