"""Full fine-tuning of the in-context TFM on real rows mixed with synthetic rows.

One step (``train_step``: two jitted, pure programs on the device, buffers donated):
  1. ``key = fold_in(run_key, step)``; the n real training rows are permuted and split into
     ``n_real_ctx`` context and ``n_real_query`` query rows;
  2. ``n_syn_ctx + n_syn_query`` synthetic rows are drawn on the device from a ``Source``
     (an SCM ensemble drawn fresh by the compiled sampler, or a fixed pool; no host trip) by
     their own program (``synthetic_step_rows``: it depends on the source's shapes, which
     differ per fitted ensemble, and compiles in a second or two);
  3. (``update_step``, one compilation per n_train, step shape and optimizer, shared by every
     dataset, fold and source) one dataset ``[real ctx | syn ctx | real query | syn query]``
     goes through the model; the loss is the cross-entropy of all query rows (real and
     synthetic);
  4. AdamW (warmup + cosine, global-norm clipping); a step with a non-finite loss or gradient
     is skipped (``optax.apply_if_finite``: the NaN guard).

The Python loop (``finetune``) evaluates validation and test ROC-AUC with the REAL training
rows as context every ``eval_every`` steps (and at step 0), stops after ``patience``
evaluations without a better validation score (ROC-AUC, ties: lower validation log loss; or
the caller's ``select`` score), but not before ``min_checkpoints`` evaluations are recorded
(so that every run has enough checkpoints for its val-test gap), and returns the best weights.
A run always records at least two checkpoints (step 0 and its last step).

``StepShape`` is the static composition of a step; ``step_shape`` derives it from the number
of real rows, the query share, the synthetic volume (synthetic rows per real row) and the
share of synthetic rows placed in the query.

``mc`` is the model spec of ``causaljax.tfm.batch_model``: the row-token ``ModelConfig`` or a
``Ported`` model (TabICL, TabPFN v2, Mitra); this module only calls ``batch_logits`` /
``feature_slots`` on it.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from causaljax.eval.metrics import roc_auc, spearman, val_test_gap
from causaljax.tfm.batch_model import batch_logits, feature_slots

EVAL_CHUNK = 256  # query rows per evaluation chunk (fixed: one compilation per context size)


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_share: float = 0.1
    clip: float = 1.0
    query_share: float = 0.2  # real rows used as queries in a step
    volume: float = 0.0  # synthetic rows per real row in a step
    syn_query_share: float | None = None  # share of synthetic rows in the query (None: query_share)
    real_in_step: bool = True  # False: train on synthetic rows only (SCM-only baseline)
    pool_rows: int | None = None  # None: fresh synthetic rows each step; N: fixed pool of N rows
    eval_every: int = 5
    patience: int = 8  # evaluations without improvement before stopping
    min_checkpoints: int = 5  # evaluations (step 0 included) before early stopping may stop
    max_nan_steps: int = 5  # consecutive skipped (non-finite) steps before giving up
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StepShape:
    """Rows of one step, in model order [real ctx | syn ctx | real query | syn query]."""
    n_real_ctx: int
    n_real_query: int
    n_syn_ctx: int
    n_syn_query: int

    @property
    def n_syn(self) -> int:
        return self.n_syn_ctx + self.n_syn_query

    @property
    def n_rows(self) -> int:
        return self.n_real_ctx + self.n_real_query + self.n_syn


def step_shape(n_train: int, fc: FinetuneConfig) -> StepShape:
    """Static composition of a step for n_train real rows."""
    n_syn = int(round(fc.volume * n_train))
    syn_q_share = fc.query_share if fc.syn_query_share is None else fc.syn_query_share
    n_syn_q = int(round(syn_q_share * n_syn))
    if fc.real_in_step:
        n_rq = min(max(1, int(round(fc.query_share * n_train))), n_train - 1)
        n_rc = n_train - n_rq
    else:
        n_rq = n_rc = 0
        n_syn_q = min(max(1, n_syn_q), n_syn - 1) if n_syn >= 2 else n_syn
    shape = StepShape(n_rc, n_rq, n_syn - n_syn_q, n_syn_q)
    if shape.n_real_ctx + shape.n_syn_ctx == 0 or shape.n_real_query + shape.n_syn_query == 0:
        raise ValueError(f"a step needs context and query rows, got {shape} "
                         f"(n_train={n_train}, volume={fc.volume}, real_in_step={fc.real_in_step})")
    return shape


# ----------------------------------------------------------------------------- data
class Task(NamedTuple):
    """One fold of one dataset, ready for the model (F = ``feature_slots``: the row-token
    model's padded slots, or the table's own features for a port)."""
    x_train: jax.Array  # f32[n, F]
    y_train: jax.Array  # int32[n]
    x_val: jax.Array  # f32[n_val_pad, F] (padded to EVAL_CHUNK rows)
    y_val: np.ndarray  # int64[n_val] (host, unpadded)
    x_test: jax.Array  # f32[n_test_pad, F]
    y_test: np.ndarray  # int64[n_test]
    feat: jax.Array  # bool[F]: real feature slots
    feature_idx: jax.Array  # int32[d-1]: Table columns that are features
    target_idx: jax.Array  # int32[]: Table column of the target
    n_classes: jax.Array  # int32[]


def check_fits_model(table, mc) -> None:
    """ValueError if the table has more features or classes than the model takes."""
    n_feat, n_cls = table.n_cols - 1, int(table.n_levels[table.target_index])
    if n_feat > mc.max_features:
        raise ValueError(f"{n_feat} features: the TFM takes at most {mc.max_features}")
    if n_cls > mc.max_classes:
        raise ValueError(f"{n_cls} classes: the TFM takes at most {mc.max_classes}")


def encode_rows(rows_nxd, feature_idx, target_idx, n_classes, F: int):
    """Table-encoded rows f32[n, d] -> (x f32[n, F] zero-padded, y int32[n] clipped)."""
    rows_nxd = jnp.asarray(rows_nxd, jnp.float32)
    x = rows_nxd[:, feature_idx]
    x = jnp.pad(x, ((0, 0), (0, F - x.shape[1])))
    y = jnp.clip(jnp.round(rows_nxd[:, target_idx]), 0, n_classes - 1).astype(jnp.int32)
    return x, y


def scored_test_rows(split, max_test: int | None, seed: int) -> np.ndarray:
    """The split's test row indices a Task scores: all, or ``max_test`` of them drawn with
    ``seed`` (sorted)."""
    test = np.asarray(split.test)
    if max_test is not None and len(test) > max_test:
        test = np.sort(np.random.default_rng(seed).choice(test, max_test, replace=False))
    return test


def make_task(table, split, mc, *, max_test: int | None = 2048, seed: int = 0) -> Task:
    """A Task from a Table and a ``data.Split`` (test rows subsampled to ``max_test``)."""
    check_fits_model(table, mc)
    fidx = np.asarray(table.feature_indices, np.int32)
    F = feature_slots(mc, len(fidx))
    tidx = np.int32(table.target_index)
    n_classes = np.int32(table.n_levels[table.target_index])
    test = scored_test_rows(split, max_test, seed)

    def rows(idx, pad: bool):  # host-side encode_rows (no per-op dispatch)
        v = table.values[np.asarray(idx)]
        x = np.zeros((len(idx) + (-len(idx) % EVAL_CHUNK if pad else 0), F), np.float32)
        x[: len(idx), : len(fidx)] = v[:, fidx]
        y = np.clip(np.round(v[:, tidx]), 0, n_classes - 1).astype(np.int32)
        return jnp.asarray(x), y

    x_tr, y_tr = rows(split.train, False)
    x_va, y_va = rows(split.val, True)
    x_te, y_te = rows(test, True)
    return Task(x_tr, jnp.asarray(y_tr), x_va, np.asarray(y_va, np.int64), x_te, np.asarray(y_te, np.int64),
                jnp.arange(F) < len(fidx), jnp.asarray(fidx), jnp.asarray(tidx),
                jnp.asarray(n_classes))


class Batch(NamedTuple):
    """One training dataset in the model's layout (B = 1)."""
    x: jax.Array  # f32[1, N, F]
    y: jax.Array  # int32[1, N]
    ctx: jax.Array  # bool[1, N]
    feat: jax.Array  # bool[1, F]
    n_classes: jax.Array  # int32[1]


def step_keys(key, step):
    """(permutation key, synthetic-draw key) of optimizer step ``step`` of a run."""
    return jax.random.split(jax.random.fold_in(key, step))


def draw_synthetic(task: Task, source, key, shape: StepShape):
    """The step's synthetic rows in model space: (x f32[n_syn, F], y int32[n_syn])."""
    F = task.x_train.shape[1]
    if not shape.n_syn:
        return jnp.zeros((0, F), jnp.float32), jnp.zeros((0,), jnp.int32)
    rows = source.draw(key, shape.n_syn)  # f32[n_syn, d]
    return encode_rows(rows, task.feature_idx, task.target_idx, task.n_classes, F)


def assemble_batch(task: Task, synthetic, key, shape: StepShape) -> Batch:
    """Split the real rows into context / query (permutation from ``key``) and add the
    ``synthetic`` rows of ``draw_synthetic``."""
    xs, ys = synthetic
    perm = jax.random.permutation(key, task.x_train.shape[0])
    rc = perm[: shape.n_real_ctx]
    rq = perm[shape.n_real_ctx: shape.n_real_ctx + shape.n_real_query]
    c = shape.n_syn_ctx
    x = jnp.concatenate([task.x_train[rc], xs[:c], task.x_train[rq], xs[c:]])
    y = jnp.concatenate([task.y_train[rc], ys[:c], task.y_train[rq], ys[c:]])
    ctx = jnp.arange(shape.n_rows) < shape.n_real_ctx + c
    return Batch(x[None], y[None], ctx[None], task.feat[None], task.n_classes[None])


def make_batch(task: Task, source, key, shape: StepShape) -> Batch:
    """The batch of the step whose key is ``fold_in(run_key, step)``: ``draw_synthetic`` and
    ``assemble_batch`` in one."""
    k_perm, k_syn = jax.random.split(key)
    return assemble_batch(task, draw_synthetic(task, source, k_syn, shape), k_perm, shape)


def training_part(task: Task) -> Task:
    """The fields of a Task that an optimizer step reads (the others None), so that the step's
    program depends on n_train and the model's feature slots only, not on the dataset's
    columns or evaluation rows."""
    return task._replace(x_val=None, y_val=None, x_test=None, y_test=None, feature_idx=None,
                         target_idx=None)


def step_config(fc: FinetuneConfig) -> FinetuneConfig:
    """``fc`` with the fields an optimizer step does not read set to their defaults, so that
    runs differing only in them (seed, patience, volume, ...) share one compiled step."""
    keep = ("steps", "lr", "weight_decay", "warmup_share", "clip")
    return FinetuneConfig(**{f: getattr(fc, f) for f in keep})


# ----------------------------------------------------------------------------- model
def loss_fn(params, mc, batch: Batch, n_ctx: int | None = None):
    """Mean cross-entropy of the query rows (``n_ctx``: the batch's context rows, static; a
    ported model needs it)."""
    logits = batch_logits(mc, params, batch.x, batch.y, batch.ctx, batch.feat, batch.n_classes,
                          n_ctx=n_ctx)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.y)  # [1, N]
    q = (~batch.ctx).astype(jnp.float32)
    return (ce * q).sum() / jnp.maximum(q.sum(), 1.0)


def optimizer(fc: FinetuneConfig) -> optax.GradientTransformation:
    warmup = max(1, int(round(fc.warmup_share * fc.steps)))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, fc.lr, warmup_steps=warmup, decay_steps=max(fc.steps, warmup + 1),
        end_value=fc.lr * 0.1)
    inner = optax.chain(optax.clip_by_global_norm(fc.clip),
                        optax.adamw(schedule, weight_decay=fc.weight_decay))
    # never apply a non-finite update (optax would after max_consecutive_errors); the host loop
    # stops the run once fc.max_nan_steps consecutive steps were skipped
    return optax.apply_if_finite(inner, max_consecutive_errors=2**30)


class State(NamedTuple):
    step: jax.Array  # int32[]
    params: dict
    opt_state: tuple


def init_state(params, fc: FinetuneConfig) -> State:
    params = jax.tree.map(jnp.array, params)  # own copy: the step donates its buffers
    return State(jnp.zeros((), jnp.int32), params, optimizer(fc).init(params))


def update(state: State, batch: Batch, *, mc, fc: FinetuneConfig, n_ctx: int | None = None):
    """One optimizer step on a given batch -> (state, loss). Non-finite steps are skipped."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, mc, batch, n_ctx)
    updates, opt_state = optimizer(fc).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return State(state.step + 1, params, opt_state), loss


@functools.lru_cache(maxsize=16)
def update_on_mesh(mesh, *, mc, fc: FinetuneConfig, n_ctx: int | None = None):
    """``update`` as one data-parallel program over every device of ``mesh`` (one process or
    several): state (parameters, optimizer) replicated, the batch's rows split over the
    devices (``place_on_mesh``); XLA reduces the gradient over all of them. -> jitted
    (state, batch) -> (state, loss), equal to ``update`` up to float rounding."""
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())
    batch_shardings = Batch(*(NamedSharding(mesh, spec) for spec in _batch_specs(mesh)))
    return jax.jit(functools.partial(update, mc=mc, fc=fc, n_ctx=n_ctx),
                   in_shardings=(replicated, batch_shardings),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def _batch_specs(mesh) -> Batch:
    """How a Batch is laid out on a mesh: x, y, ctx split along the rows, the rest replicated."""
    from jax.sharding import PartitionSpec

    rows = mesh.axis_names[0]
    return Batch(PartitionSpec(None, rows), PartitionSpec(None, rows), PartitionSpec(None, rows),
                 PartitionSpec(), PartitionSpec())


def place_on_mesh(state: State, batch: Batch, mesh) -> tuple:
    """(state, batch), host values every process holds whole, as the global arrays
    ``update_on_mesh`` takes (N must be a multiple of the device count)."""
    from jax.sharding import NamedSharding

    from causaljax.distributed import global_array, replicate, to_host

    placed = Batch(*(global_array(to_host(a), NamedSharding(mesh, spec))
                     for a, spec in zip(batch, _batch_specs(mesh))))
    return replicate(state, mesh), placed


@functools.partial(jax.jit, static_argnames=("shape",))
def synthetic_step_rows(task: Task, source, key, step, *, shape: StepShape):
    """The synthetic rows of step ``step`` (a device scalar), drawn on the device. A program
    of its own: it depends on the source's shapes (one per fitted SCM ensemble), so that the
    (costly to compile) optimizer step does not."""
    return draw_synthetic(task, source, step_keys(key, step)[1], shape)


@functools.partial(jax.jit, static_argnames=("mc", "fc", "shape"), donate_argnums=(0,))
def update_step(state: State, task: Task, synthetic, key, *, mc, fc: FinetuneConfig,
                shape: StepShape):
    """(state, ``training_part(task)``, the step's synthetic rows, run key) -> (state, loss).
    Pass ``step_config(fc)``: one compilation per (n_train, step shape, optimizer)."""
    batch = assemble_batch(task, synthetic, step_keys(key, state.step)[0], shape)
    return update(state, batch, mc=mc, fc=fc, n_ctx=shape.n_real_ctx + shape.n_syn_ctx)


def train_step(state: State, task: Task, source, key, *, mc, fc: FinetuneConfig,
               shape: StepShape):
    """(state, task, source, run key) -> (state, loss); data from fold_in(key, step): the
    synthetic rows drawn on the device (``synthetic_step_rows``), then the optimizer step
    (``update_step``). No host round trip: both programs read the step from the state."""
    synthetic = (synthetic_step_rows(task, source, key, state.step, shape=shape) if shape.n_syn
                 else draw_synthetic(task, None, None, shape))
    return update_step(state, training_part(task), synthetic, key, mc=mc, fc=step_config(fc),
                       shape=shape)


@functools.partial(jax.jit, static_argnames=("mc",))
def predict_proba(params, x_ctx_NxF, y_ctx_N, x_q_MxF, feat_F, n_classes, *, mc):
    """Class probabilities f32[M, max_classes] (zero beyond n_classes) of query rows given a
    context; M must be a multiple of EVAL_CHUNK."""
    n = x_ctx_NxF.shape[0]

    def chunk(xq_CxF):
        c = xq_CxF.shape[0]
        x = jnp.concatenate([x_ctx_NxF, xq_CxF])[None]
        y = jnp.concatenate([y_ctx_N, jnp.zeros((c,), jnp.int32)])[None]
        ctx = (jnp.arange(n + c) < n)[None]
        logits = batch_logits(mc, params, x, y, ctx, feat_F[None], n_classes[None], n_ctx=n)
        return jax.nn.softmax(logits[0, n:], axis=-1)

    chunks = x_q_MxF.reshape(-1, EVAL_CHUNK, x_q_MxF.shape[-1])
    return jax.lax.map(chunk, chunks).reshape(-1, mc.max_classes)


def probabilities(params, mc, task: Task, which: str) -> np.ndarray:
    """Class probabilities f32[n, n_classes] of the 'val' or 'test' rows, real training rows
    as context."""
    x_q, y_q = (task.x_val, task.y_val) if which == "val" else (task.x_test, task.y_test)
    if len(y_q) == 0:
        return np.zeros((0, int(task.n_classes)), np.float32)
    p = predict_proba(params, task.x_train, task.y_train, x_q, task.feat, task.n_classes, mc=mc)
    return np.asarray(p)[: len(y_q), : int(task.n_classes)]


def scores(params, mc, task: Task, which: str, *,
           proba=None) -> tuple[float, float]:
    """(ROC-AUC, log loss) on the 'val' or 'test' rows, real training rows as context;
    ``proba``: those rows' ``probabilities`` if already computed."""
    y_q = task.y_val if which == "val" else task.y_test
    if len(y_q) == 0:
        return float("nan"), float("nan")
    p = probabilities(params, mc, task, which) if proba is None else proba
    p_true = p[np.arange(len(y_q)), y_q]
    logloss = float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0))))
    return roc_auc(y_q, p), logloss


# ----------------------------------------------------------------------------- loop
@dataclass
class Result:
    params: dict  # best weights (by validation)
    best_step: int
    val_auc: float  # at best_step
    test_auc: float  # at best_step
    steps: int  # optimizer steps taken
    history: list  # dicts: step, val_auc, val_loss, test_auc, test_loss, train_loss
    nan_steps: int
    stopped: str  # "steps" | "patience" | "nan"
    seconds: float

    @property
    def val_test_gap(self) -> float:
        """1 - Spearman rho of the validation vs test ranking of the checkpoints, each by
        ROC-AUC with ties broken by log loss (``causaljax.eval.metrics.val_test_gap``)."""
        h = self.history
        return val_test_gap([e["val_auc"] for e in h], [e["test_auc"] for e in h],
                            [e["val_loss"] for e in h], [e.get("test_loss") for e in h])

    @property
    def val_test_gap_auc(self) -> float:
        """1 - Spearman rho of the ROC-AUCs alone (no log-loss tie-break, the definition
        before issue 25): NaN when the validation ROC-AUC is the same at every checkpoint."""
        return 1.0 - spearman([e["val_auc"] for e in self.history],
                              [e["test_auc"] for e in self.history])


def _better(new: tuple, best: tuple | None) -> bool:
    """Higher validation AUC wins; equal AUC: lower validation log loss."""
    if best is None:
        return True
    (a, la), (b, lb) = new, best
    a = -np.inf if not np.isfinite(a) else a
    b = -np.inf if not np.isfinite(b) else b
    return a > b or (a == b and np.isfinite(la) and (not np.isfinite(lb) or la < lb))


def finetune(params, mc, task: Task, fc: FinetuneConfig, *, source=None,
             key=None, evaluate_test: bool = True, select=None) -> Result:
    """Fine-tune ``params`` on ``task`` (plus synthetic rows from ``source`` if fc.volume > 0);
    see the module docstring. ``key`` defaults to ``jax.random.key(fc.seed)``.

    ``select(proba, which) -> float`` (proba: ``probabilities`` of the 'val' or 'test' rows;
    higher is better), if given, replaces the validation ROC-AUC as the checkpoint-selection
    score (ties: lower validation log loss); each history entry then also holds ``val_select``
    and ``test_select`` (e.g. minus the MAE of a regression target, see
    ``causaljax.eval.regression``). The probabilities are computed once for both."""
    t0 = time.perf_counter()
    key = jax.random.key(fc.seed) if key is None else key
    shape = step_shape(int(task.x_train.shape[0]), fc)
    if shape.n_syn and source is None:
        raise ValueError("fc.volume > 0 (or real_in_step=False) needs a synthetic source")
    if fc.pool_rows is not None and shape.n_syn:
        from causaljax.finetune.sources import PoolSource

        source = PoolSource(source.draw(jax.random.fold_in(key, 2**31 - 1), int(fc.pool_rows)))
    state = init_state(params, fc)
    history, best, best_params, best_at = [], None, state.params, 0
    since_best, stopped, loss = 0, "steps", jnp.nan

    def evaluate(step):
        nonlocal best, best_params, best_at, since_best
        which = ("val", "test") if evaluate_test else ("val",)
        proba = ({w: probabilities(state.params, mc, task, w) for w in which}
                 if select is not None else {})
        va, vl = scores(state.params, mc, task, "val", proba=proba.get("val"))
        te, tl = (scores(state.params, mc, task, "test", proba=proba.get("test"))
                  if evaluate_test else (float("nan"), float("nan")))
        history.append(dict(step=step, val_auc=va, val_loss=vl, test_auc=te, test_loss=tl,
                            train_loss=float(loss)))
        if select is not None:
            va = select(proba["val"], "val")
            history[-1].update(val_select=va, test_select=(select(proba["test"], "test")
                                                           if evaluate_test else float("nan")))
        if _better((va, vl), best):
            best, best_at, since_best = (va, vl), step, 0
            best_params = jax.tree.map(jnp.copy, state.params)
        else:
            since_best += 1

    evaluate(0)
    for step in range(1, fc.steps + 1):
        state, loss = train_step(state, task, source, key, mc=mc, fc=fc, shape=shape)
        if step % fc.eval_every == 0 or step == fc.steps:
            evaluate(step)
            if int(state.opt_state.notfinite_count) >= fc.max_nan_steps:
                stopped = "nan"
                break
            if since_best >= fc.patience and len(history) >= fc.min_checkpoints:
                stopped = "patience"
                break
    at_best = next(h for h in history if h["step"] == best_at)
    return Result(best_params, best_at, at_best["val_auc"], at_best["test_auc"],
                  int(state.step), history, int(state.opt_state.total_notfinite), stopped,
                  time.perf_counter() - t0)


def zero_shot(params, mc, task: Task, *, select=None) -> dict:
    """Scores of the pretrained model, no fine-tuning (with ``select``, as in ``finetune``,
    also its val_select / test_select)."""
    proba = {w: probabilities(params, mc, task, w) for w in ("val", "test")}
    va, vl = scores(params, mc, task, "val", proba=proba["val"])
    te, tl = scores(params, mc, task, "test", proba=proba["test"])
    out = dict(val_auc=va, val_loss=vl, test_auc=te, test_loss=tl)
    if select is not None:
        out.update(val_select=select(proba["val"], "val"),
                   test_select=select(proba["test"], "test"))
    return out
