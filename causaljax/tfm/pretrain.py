"""Pretraining pieces: loss, optimizer, pure jitted train / eval steps, run checkpoints.

The Python loop lives in ``experiments/pretrain_tfm.py``; everything here is pure and
testable. A training step draws a fresh prior batch on device from ``fold_in(key, step)``,
so a resumed run replays exactly the same data and randomness.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from causaljax.prior import Batch, PriorConfig, sample_batch
from causaljax.tfm.checkpoint import CheckpointError
from causaljax.tfm.model import ModelConfig, build, class_mask_logits, init_params


@dataclass(frozen=True)
class TrainConfig:
    total_steps: int = 2000
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 1e-4
    clip: float = 1.0
    tokens_per_step: int = 4096  # batch size x rows, constant across row buckets
    row_buckets: tuple = (128, 256, 512)  # rows per dataset; one bucket per step
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainState(NamedTuple):
    step: jax.Array  # int32[]
    params: dict
    opt_state: tuple


def optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, tc.lr, warmup_steps=max(tc.warmup, 1), decay_steps=max(tc.total_steps, tc.warmup + 1),
        end_value=tc.lr * 0.02)
    return optax.chain(optax.clip_by_global_norm(tc.clip),
                       optax.adamw(schedule, weight_decay=tc.weight_decay))


def init_state(mc: ModelConfig, tc: TrainConfig) -> TrainState:
    params = init_params(mc, jax.random.key(tc.seed))
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer(tc).init(params))


def loss_fn(params, mc: ModelConfig, batch: Batch, dtype=jnp.float32):
    """Mean over datasets of the mean cross-entropy of their query rows; also accuracy."""
    logits = build(mc, dtype).apply({"params": params}, batch.x, batch.y, batch.ctx, batch.row,
                                    batch.feat)
    logits = class_mask_logits(logits, batch.n_classes)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.y)  # [B, N]
    q = (batch.row & ~batch.ctx).astype(jnp.float32)
    nq = jnp.maximum(q.sum(1), 1.0)
    loss = ((ce * q).sum(1) / nq).mean()
    acc = (((logits.argmax(-1) == batch.y) * q).sum(1) / nq).mean()
    return loss, acc


def prior_for(rows: int, base: PriorConfig) -> PriorConfig:
    """The prior config of one row bucket: real rows between rows/2 and rows."""
    return dataclasses.replace(base, n_rows=rows, min_rows=max(rows // 2, 16))


def bucket_of(step: int, tc: TrainConfig) -> int:
    """Row bucket of a step (deterministic in seed and step, so resume replays it)."""
    return tc.row_buckets[np.random.default_rng([tc.seed, step]).integers(len(tc.row_buckets))]


@functools.partial(jax.jit, static_argnames=("mc", "tc", "pc", "batch_size", "dtype"),
                   donate_argnums=(0,))
def train_step(state: TrainState, key, *, mc: ModelConfig, tc: TrainConfig, pc: PriorConfig,
               batch_size: int, dtype=jnp.float32):
    """(state, key) -> (state, metrics): draws a prior batch from fold_in(key, step)."""
    batch = sample_batch(jax.random.fold_in(key, state.step), pc, batch_size)
    return _update(state, batch, mc, tc, dtype)


@functools.lru_cache(maxsize=32)
def train_step_on_mesh(mesh, *, mc: ModelConfig, tc: TrainConfig, pc: PriorConfig,
                       batch_size: int, dtype=jnp.float32):
    """``train_step`` as one data-parallel program over every device of ``mesh`` (of one
    process or several): the state replicated, the step's prior datasets split over the
    devices (``batch_size`` a multiple of their count), drawn where they are trained on; XLA
    reduces the gradient over the devices. The key is ``jax.random.key(tc.seed)``, made
    inside. -> jitted state -> (state, metrics), equal to ``train_step`` up to float rounding
    (the same datasets)."""
    from jax.sharding import NamedSharding, PartitionSpec

    if batch_size % mesh.size:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {mesh.size} devices")
    replicated = NamedSharding(mesh, PartitionSpec())
    by_dataset = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))

    def step(state):
        key = jax.random.fold_in(jax.random.key(tc.seed), state.step)
        batch = jax.lax.with_sharding_constraint(sample_batch(key, pc, batch_size), by_dataset)
        return _update(state, batch, mc, tc, dtype)

    return jax.jit(step, in_shardings=(replicated,), out_shardings=(replicated, replicated),
                   donate_argnums=(0,))


def _update(state: TrainState, batch: Batch, mc: ModelConfig, tc: TrainConfig, dtype):
    """One AdamW step on a prior batch -> (state, metrics)."""
    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, mc, batch, dtype)
    updates, opt_state = optimizer(tc).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state), {"loss": loss, "acc": acc,
                                                           "grad_norm": optax.tree.norm(grads)}


@functools.partial(jax.jit, static_argnames=("mc", "dtype"))
def eval_loss(params, batch: Batch, *, mc: ModelConfig, dtype=jnp.float32):
    return loss_fn(params, mc, batch, dtype)


def validation_batches(pc: PriorConfig, n_batches: int = 4, batch_size: int = 16, seed: int = 10**6):
    """Fixed held-out prior batches (a key no training step uses)."""
    return [sample_batch(jax.random.fold_in(jax.random.key(seed), i), pc, batch_size)
            for i in range(n_batches)]


def validation_loss(params, mc: ModelConfig, batches, dtype=jnp.float32) -> tuple[float, float]:
    out = [eval_loss(params, b, mc=mc, dtype=dtype) for b in batches]
    return float(np.mean([o[0] for o in out])), float(np.mean([o[1] for o in out]))


# ----------------------------------------------------------------------------- run checkpoints
def _manager(run_dir: str, keep: int = 2) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(run_dir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False),
        item_names=("state", "info"))


def save_run_checkpoint(state: TrainState, run_dir: str, info: dict, keep: int = 2) -> str:
    """Orbax checkpoint ``<run_dir>/checkpoints/<step>/`` of the whole train state (params,
    AdamW moments, step) and a JSON ``info`` (wall time, device). Orbax writes to a temporary
    directory and renames it when complete, so a crash mid-save never leaves a half-written
    latest checkpoint; only the last ``keep`` are kept. Returns the step directory."""
    from causaljax.distributed import local_copy

    step = int(local_copy(state.step))
    manager = _manager(run_dir, keep)
    try:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   info=ocp.args.JsonSave(info)))
        manager.wait_until_finished()
        return str(manager.directory / str(step))
    finally:
        manager.close()


def restore_run_checkpoint(template: TrainState, run_dir: str) -> tuple[TrainState, dict]:
    """(state, info) of a run's newest readable checkpoint; ``template`` gives the structure.

    An unreadable checkpoint (damaged files, another model's state) is reported with a warning
    and the next older one is used; none readable: a ``CheckpointError``; none at all: a
    ``FileNotFoundError``."""
    manager = _manager(run_dir)
    try:
        steps = sorted(manager.all_steps(), reverse=True)
        for step in steps:
            try:
                out = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), info=ocp.args.JsonRestore()))
                return out.state, out.info
            except Exception as e:  # noqa: BLE001 -- Orbax/TensorStore raise many types
                warnings.warn(f"run checkpoint {step} in {run_dir} is unreadable "
                              f"({type(e).__name__}: {str(e)[:200]}); trying an older one")
    finally:
        manager.close()
    if steps:
        raise CheckpointError(f"no readable checkpoint in {run_dir} (steps {steps})")
    raise FileNotFoundError(f"no checkpoint in {run_dir}")
