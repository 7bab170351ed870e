"""Fine-tuning runs vmapped into one program equal the same runs done one by one."""

import warnings

import jax
import numpy as np
import pytest

from causaljax import data
from causaljax.finetune.batched import finetune_runs, stack_sources
from causaljax.finetune.generators import make_source
from causaljax.finetune.loop import FinetuneConfig, finetune, make_task, scores
from causaljax.finetune.sources import PoolSource
from causaljax.tfm.model import ModelConfig, init_params

MC = ModelConfig(width=16, depth=1, heads=2)


@pytest.fixture(scope="module")
def folds():
    table = data.load("pima")
    splits = data.low_data_splits(table, 48, 16, 2, 0)
    params = init_params(MC, jax.random.key(0))
    tasks = [make_task(table, s, MC, max_test=300 + 40 * i) for i, s in enumerate(splits)]
    return table, splits, params, tasks


def assert_same_runs(batched, single, tasks):
    """Same stops and histories (Adam amplifies float noise in near-zero gradients, so the
    weights are compared through what they predict); the returned weights are the best."""
    for b, s, task in zip(batched, single, tasks):
        assert (b.best_step, b.steps, b.stopped) == (s.best_step, s.steps, s.stopped)
        assert [h["step"] for h in b.history] == [h["step"] for h in s.history]
        for key in ("val_auc", "test_auc", "val_loss"):
            np.testing.assert_allclose([h[key] for h in b.history], [h[key] for h in s.history],
                                       atol=1e-3, err_msg=key)
        val_auc, val_loss = scores(b.params, MC, task, "val")
        assert val_auc == pytest.approx(b.val_auc, abs=1e-6)
        assert val_loss == pytest.approx(scores(s.params, MC, task, "val")[1], abs=1e-3)


def test_real_only_runs_equal_sequential_runs(folds):
    _, _, params, tasks = folds
    fc = FinetuneConfig(steps=8, eval_every=2, lr=3e-3, patience=1)
    keys = [jax.random.key(7), jax.random.key(8)]
    batched = finetune_runs(params, MC, tasks, fc, keys=keys)
    single = [finetune(params, MC, t, fc, key=k) for t, k in zip(tasks, keys)]
    assert_same_runs(batched, single, tasks)


def test_scm_sources_of_different_folds_are_padded_and_equal_sequential(folds):
    table, splits, params, tasks = folds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = [make_source("scm", table.take(s.train), key=jax.random.key(i), n_rows=0, k=2,
                               n_bootstrap=2, families=("linear", "trees"))
                   for i, s in enumerate(splits)]
    stacked = stack_sources(sources)
    for r, src in enumerate(sources):  # padding does not change the draws
        mine = jax.tree.map(lambda a: a[r], stacked)
        np.testing.assert_allclose(np.asarray(mine.draw(jax.random.key(3), 40)),
                                   np.asarray(src.draw(jax.random.key(3), 40)), atol=1e-5)
    fc = FinetuneConfig(steps=4, eval_every=2, lr=3e-3, volume=1.0)
    keys = [jax.random.key(1), jax.random.key(2)]
    batched = finetune_runs(params, MC, tasks, fc, sources=sources, keys=keys)
    single = [finetune(params, MC, t, fc, source=s, key=k)
              for t, s, k in zip(tasks, sources, keys)]
    assert_same_runs(batched, single, tasks)


def test_bad_batches_are_refused(folds):
    table, splits, params, tasks = folds
    fc = FinetuneConfig(steps=2, eval_every=1, volume=1.0)
    with pytest.raises(ValueError, match="source"):
        finetune_runs(params, MC, tasks, fc)
    other = make_task(table, data.low_data_splits(table, 40, 16, 1, 0)[0], MC)
    with pytest.raises(ValueError, match="same training shape"):
        finetune_runs(params, MC, [tasks[0], other], FinetuneConfig(steps=1))
    pools = [PoolSource(np.zeros((10, 8), np.float32)), PoolSource(np.zeros((12, 8), np.float32))]
    with pytest.raises(ValueError, match="cannot be stacked"):
        stack_sources(pools)
