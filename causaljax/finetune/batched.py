"""Several fine-tuning runs of one configuration as ONE compiled program (vmap over runs).

``finetune_runs`` takes R runs that share the model and the ``FinetuneConfig`` and differ in
their data (folds: one ``Task`` each), their synthetic source and their key (seeds). Every
optimizer step of the R runs is one vmapped, jitted call; every evaluation one vmapped
forward pass. Early stopping is tracked per run on the host exactly as ``loop.finetune``
does: a run that has stopped keeps its best weights and history frozen (its later steps are
computed but ignored) and the loop ends when every run has stopped. The result of run r
equals ``finetune(params, mc, tasks[r], fc, source=sources[r], key=keys[r])`` up to float
rounding (tested).

Stacking needs equal shapes: the tasks' training rows (same n_train) and the sources' arrays.
``stack_sources`` zero-pads the MLP and tree arrays of SCM sources fitted on different folds
(a zero tree is a single leaf of value 0, a zero hidden unit outputs 0), so their outputs do
not change.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from causaljax.finetune.loop import (
    FinetuneConfig,
    Result,
    Task,
    _better,
    draw_synthetic,
    init_state,
    predict_proba,
    step_config,
    step_shape,
    synthetic_step_rows,
    training_part,
    update_step,
)
from causaljax.finetune.sources import PoolSource, SCMSource
from causaljax.eval.metrics import roc_auc

PADDABLE = ("quad_w", "cube_idx", "cube_w", "mlp_w1", "mlp_b1", "mlp_w2", "tree_feature",
            "tree_threshold", "tree_left", "tree_right", "tree_value")


def _stack(trees: list):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _pad_to(a, shape):
    return jnp.pad(jnp.asarray(a), [(0, s - n) for n, s in zip(a.shape, shape)])


def stack_sources(sources: list):
    """One source pytree with a leading run axis. SCM sources whose cubic / MLP / tree arrays
    differ in size are zero-padded to the largest (same outputs); any other mismatch is an
    error."""
    if not sources or any(s is None for s in sources):
        raise ValueError("stack_sources needs one source per run")
    if all(isinstance(s, SCMSource) for s in sources):
        scms = [s.scm for s in sources]
        fields = {}
        for f in scms[0].__dataclass_fields__:
            if f in ("tree_depth", "names", "tree_tables"):
                continue
            arrays = [getattr(scm, f) for scm in scms]
            shapes = {tuple(a.shape) for a in arrays}
            if len(shapes) > 1:
                if f not in PADDABLE:
                    raise ValueError(f"SCM sources differ in {f} {sorted(shapes)}: cannot stack")
                big = tuple(int(x) for x in np.max(np.asarray(list(shapes)), axis=0))
                arrays = [_pad_to(a, big) for a in arrays]
            fields[f] = jnp.stack([jnp.asarray(a) for a in arrays])
        depth = max(scm.tree_depth for scm in scms)
        tables = None
        if any(getattr(scm, "tree_tables", None) is not None for scm in scms):
            # tree lookup tables: padded with values that change no output (+inf edges)
            from causaljax.scm.trees import stack_tables
            from causaljax.scm.types import TreeTables

            stacked = stack_tables([scm.tree_tables for scm in scms],
                                   [scm.parents.shape[:-1] for scm in scms], scms[0].n_channels)
            tables = TreeTables(**{f: jnp.asarray(a) for f, a in stacked.items()})
        compact = None
        if all(s.compact is not None for s in sources):
            from causaljax.scm.compact import stack_compacts

            compact = stack_compacts([s.compact for s in sources])
        return SCMSource(type(scms[0])(**fields, tree_depth=depth, names=scms[0].names,
                                       tree_tables=tables), compact)
    try:
        return _stack(sources)
    except (ValueError, TypeError) as e:
        raise ValueError(f"sources of types {sorted({type(s).__name__ for s in sources})} "
                         f"cannot be stacked (their structures or shapes differ): {e}") from None


def _pad_rows(x, rows: int):
    return jnp.pad(x, ((0, rows - x.shape[0]), (0, 0)))


@functools.partial(jax.jit, static_argnames=("shape",))
def _draws(tasks, sources, keys, steps, *, shape):
    """Every run's synthetic rows of its current step: vmap of ``synthetic_step_rows``."""
    body = functools.partial(synthetic_step_rows.__wrapped__, shape=shape)
    return jax.vmap(body)(tasks, sources, keys, steps)


@functools.partial(jax.jit, static_argnames=("mc", "fc", "shape"), donate_argnums=(0,))
def _updates(states, tasks, synthetic, keys, *, mc, fc, shape):
    """One optimizer step of every run: vmap of ``update_step``."""
    body = functools.partial(update_step.__wrapped__, mc=mc, fc=fc, shape=shape)
    return jax.vmap(body)(states, tasks, synthetic, keys)


def _steps(states, tasks, sources, keys, *, mc, fc, shape):
    """One step of every run (a stacked source or None), as ``loop.train_step`` does it."""
    train = training_part(tasks)
    synthetic = (_draws(tasks, sources, keys, states.step, shape=shape) if shape.n_syn else
                 jax.vmap(lambda t: draw_synthetic(t, None, None, shape))(train))  # no rows
    return _updates(states, train, synthetic, keys, mc=mc, fc=step_config(fc), shape=shape)


@functools.partial(jax.jit, static_argnames=("mc",))
def _predict(params, x_ctx, y_ctx, x_q, feat, n_classes, *, mc):
    fn = functools.partial(predict_proba.__wrapped__, mc=mc)
    return jax.vmap(fn)(params, x_ctx, y_ctx, x_q, feat, n_classes)


def _device_task(tasks: list[Task]):
    """The device fields of the tasks, stacked (val / test rows padded to the longest)."""
    n_val = max(t.x_val.shape[0] for t in tasks)
    n_test = max(t.x_test.shape[0] for t in tasks)
    return tasks[0]._replace(
        x_train=jnp.stack([t.x_train for t in tasks]),
        y_train=jnp.stack([t.y_train for t in tasks]),
        x_val=jnp.stack([_pad_rows(t.x_val, n_val) for t in tasks]),
        y_val=None,
        x_test=jnp.stack([_pad_rows(t.x_test, n_test) for t in tasks]),
        y_test=None,
        feat=jnp.stack([t.feat for t in tasks]),
        feature_idx=jnp.stack([t.feature_idx for t in tasks]),
        target_idx=jnp.stack([t.target_idx for t in tasks]),
        n_classes=jnp.stack([t.n_classes for t in tasks]))


def _scores(params, mc, stacked: Task, tasks: list[Task], which: str) -> list[tuple]:
    """Per run (ROC-AUC, log loss) on its 'val' or 'test' rows (real training rows as context)."""
    x_q = stacked.x_val if which == "val" else stacked.x_test
    probs = np.asarray(_predict(params, stacked.x_train, stacked.y_train, x_q, stacked.feat,
                                stacked.n_classes, mc=mc))
    out = []
    for r, task in enumerate(tasks):
        y = task.y_val if which == "val" else task.y_test
        if len(y) == 0:
            out.append((float("nan"), float("nan")))
            continue
        p = probs[r, : len(y), : int(task.n_classes)]
        p_true = np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)
        out.append((roc_auc(y, p), float(-np.mean(np.log(p_true)))))
    return out


def finetune_runs(params, mc, tasks: list[Task], fc: FinetuneConfig, *,
                  sources: list | None = None, keys: list | None = None,
                  evaluate_test: bool = True) -> list[Result]:
    """R fine-tuning runs as one program; see the module docstring. ``keys`` default to
    ``jax.random.key(fc.seed)`` for every run (as ``finetune``'s default)."""
    t0 = time.perf_counter()
    R = len(tasks)
    if R == 0:
        return []
    if len({tuple(t.x_train.shape) for t in tasks}) > 1:
        raise ValueError("finetune_runs needs tasks with the same training shape (n_train, F)")
    keys = [jax.random.key(fc.seed)] * R if keys is None else list(keys)
    if len(keys) != R:
        raise ValueError(f"{len(keys)} keys for {R} runs")
    shape = step_shape(int(tasks[0].x_train.shape[0]), fc)
    stacked_source = None
    if shape.n_syn:
        if sources is None or len(sources) != R:
            raise ValueError("fc.volume > 0 (or real_in_step=False) needs one source per run")
        if fc.pool_rows is not None:
            sources = [PoolSource(s.draw(jax.random.fold_in(k, 2**31 - 1), int(fc.pool_rows)))
                       for s, k in zip(sources, keys)]
        stacked_source = stack_sources(sources)
    task_dev = _device_task(tasks)
    key_arr = jnp.stack(keys)
    states = jax.vmap(lambda p: init_state(p, fc))(_stack([params] * R))
    best_params = jax.tree.map(jnp.copy, states.params)

    histories = [[] for _ in range(R)]
    best, best_at = [None] * R, [0] * R
    since_best, stopped = [0] * R, [None] * R
    steps_done, nan_steps = [0] * R, [0] * R
    losses = np.full(R, np.nan)

    def evaluate(step):
        nonlocal best_params
        val = _scores(states.params, mc, task_dev, tasks, "val")
        test = (_scores(states.params, mc, task_dev, tasks, "test") if evaluate_test
                else [(float("nan"), float("nan"))] * R)
        improved = np.zeros(R, bool)
        for r in range(R):
            if stopped[r] is not None:
                continue
            (va, vl), (te, tl) = val[r], test[r]
            histories[r].append(dict(step=step, val_auc=va, val_loss=vl, test_auc=te,
                                     test_loss=tl, train_loss=float(losses[r])))
            if _better((va, vl), best[r]):
                best[r], best_at[r], since_best[r], improved[r] = (va, vl), step, 0, True
            else:
                since_best[r] += 1
        mask = jnp.asarray(improved)
        best_params = jax.tree.map(
            lambda b, p: jnp.where(mask.reshape((R,) + (1,) * (p.ndim - 1)), p, b),
            best_params, states.params)

    evaluate(0)
    for step in range(1, fc.steps + 1):
        states, loss = _steps(states, task_dev, stacked_source, key_arr, mc=mc, fc=fc,
                              shape=shape)
        if step % fc.eval_every == 0 or step == fc.steps:
            losses = np.asarray(loss)
            evaluate(step)
            notfinite = np.asarray(states.opt_state.notfinite_count)
            total = np.asarray(states.opt_state.total_notfinite)
            for r in range(R):
                if stopped[r] is not None:
                    continue
                steps_done[r], nan_steps[r] = step, int(total[r])
                if notfinite[r] >= fc.max_nan_steps:
                    stopped[r] = "nan"
                elif since_best[r] >= fc.patience and len(histories[r]) >= fc.min_checkpoints:
                    stopped[r] = "patience"
            if all(s is not None for s in stopped):
                break
    seconds = time.perf_counter() - t0
    results = []
    for r in range(R):
        at_best = next(h for h in histories[r] if h["step"] == best_at[r])
        results.append(Result(jax.tree.map(lambda a: a[r], best_params), best_at[r],
                              at_best["val_auc"], at_best["test_auc"], steps_done[r],
                              histories[r], nan_steps[r], stopped[r] or "steps", seconds))
    return results


__all__ = ["finetune_runs", "stack_sources"]
