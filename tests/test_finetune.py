"""Fine-tuning loop and generators, on a tiny randomly initialised TFM of the real class."""

import dataclasses
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from causaljax import data
from causaljax.finetune import loop
from causaljax.finetune.generators import TFM, make_source
from causaljax.finetune.generators.common import valid_rows
from causaljax.finetune.loop import FinetuneConfig, StepShape, finetune, make_task, step_shape
from causaljax.finetune.sources import PoolSource, SCMSource
from causaljax.tfm.model import ModelConfig, init_params

MC = ModelConfig(width=16, depth=1, heads=2)


@pytest.fixture(scope="module")
def setup():
    table = data.load("pima")
    split = data.low_data_splits(table, 48, 16, 1, 0)[0]
    params = init_params(MC, jax.random.key(0))
    return table, split, params, make_task(table, split, MC, max_test=256)


def assert_valid(rows, table):
    rows = np.asarray(rows)
    assert rows.dtype == np.float32 and rows.shape[1] == table.n_cols
    assert np.isfinite(rows).all()
    for j, col in enumerate(table.columns):
        if col.n_levels:
            assert set(np.unique(rows[:, j])) <= set(range(col.n_levels)), col.name
        elif col.is_integer:
            np.testing.assert_array_equal(rows[:, j], np.round(rows[:, j]))


def test_step_shape():
    assert step_shape(50, FinetuneConfig()) == StepShape(40, 10, 0, 0)
    assert step_shape(50, FinetuneConfig(volume=2.0)) == StepShape(40, 10, 80, 20)
    assert step_shape(50, FinetuneConfig(volume=1.0, syn_query_share=0.0)) == StepShape(40, 10, 50, 0)
    assert step_shape(50, FinetuneConfig(volume=1.0, real_in_step=False)) == StepShape(0, 0, 40, 10)
    with pytest.raises(ValueError):
        step_shape(50, FinetuneConfig(volume=0.0, real_in_step=False))


def test_valid_rows_repairs_codes(setup):
    table = data.load("penguins")
    raw = table.values[:5].copy()
    raw[0, :] = np.nan
    raw[1, table.target_index] = 7.6
    out = valid_rows(table, raw)
    assert_valid(out, table)


@pytest.mark.parametrize("name", ["copula", "tabebm", "ctgan"])
def test_pool_generators_yield_valid_rows(setup, name):
    table, split, params, _ = setup
    train = data.load("penguins")  # numeric + categorical columns, 3 classes
    train = train.take(data.low_data_splits(train, 48, 0, 1, 0)[0].train)
    opts = {"tabebm": dict(steps=5), "ctgan": dict(epochs=2, batch_size=20)}.get(name, {})
    src = make_source(name, train, key=jax.random.key(0), n_rows=60, tfm=TFM(params, MC), **opts)
    assert isinstance(src, PoolSource) and src.rows.shape == (60, train.n_cols)
    assert_valid(src.rows, train)
    assert len(np.unique(np.asarray(src.rows)[:, train.target_index])) >= 2


def test_tabebm_moves_toward_low_energy(setup):
    """SGLD lowers the mean energy of the samples (noise 0)."""
    from causaljax.finetune.generators import tabebm

    table, split, params, _ = setup
    train = table.take(split.train)
    tfm = TFM(params, MC)
    a = tabebm.sample_tabebm(train, 40, tfm, jax.random.key(0), steps=0, noise=0.0)
    b = tabebm.sample_tabebm(train, 40, tfm, jax.random.key(0), steps=30, noise=0.0)
    assert not np.allclose(a, b)


def test_ctgan_missing_gives_install_hint(setup, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctgan", None)  # as if not installed: import fails
    table, split, *_ = setup
    with pytest.raises(ImportError, match=r"pip install -e \.\[ctgan\]"):
        make_source("ctgan", table.take(split.train), key=jax.random.key(0), n_rows=10)


def test_scm_generator_rows_valid_and_drawn_in_jit(setup):
    table, split, *_ = setup
    train = table.take(split.train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = make_source("scm", train, key=jax.random.key(0), n_rows=0, k=2, n_bootstrap=2,
                          families=("linear",))
    assert isinstance(src, SCMSource)
    rows = jax.jit(lambda s, k: s.draw(k, 21), static_argnums=())(src, jax.random.key(1))
    assert rows.shape == (21, train.n_cols)
    assert_valid(rows, train)


def test_scm_generator_tabulates_fitted_trees(setup):
    """The fitted tree ensembles reach the step as lookup tables that draw what walking the
    same fitted trees draws (the same fit, made again with ``tree_budget=None``)."""
    from causaljax import sampler

    table, split, *_ = setup
    train = table.take(split.train)
    options = dict(key=jax.random.key(0), n_rows=0, k=2, n_bootstrap=2, families=("trees",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tabulated = make_source("scm", train, **options).scm
        walked = make_source("scm", train, tree_budget=None, **options).scm
    assert tabulated.tree_tables is not None and walked.tree_tables is None
    key = jax.random.key(3)
    rows = np.asarray(sampler.sample(tabulated, key, 64, strategy="walk"))
    np.testing.assert_allclose(rows, np.asarray(sampler.sample(walked, key, 64, strategy="walk")),
                               atol=1e-4)
    assert_valid(rows.reshape(-1, train.n_cols), train)


def test_step_lowers_loss_on_fixed_batch(setup):
    *_, params, task = setup
    fc = FinetuneConfig(steps=10, lr=1e-3, warmup_share=0.0)
    batch = loop.make_batch(task, None, jax.random.key(0), step_shape(48, fc))
    state = loop.init_state(params, fc)
    upd = jax.jit(lambda s, b: loop.update(s, b, mc=MC, fc=fc))
    losses = []
    for _ in range(6):
        state, loss = upd(state, batch)  # loss before this update
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 1e-3


def test_batch_layout_with_synthetic_rows(setup):
    table, *_, task = setup
    assert table.target_index != 0

    @struct.dataclass
    class Marked:  # synthetic rows whose first feature is -1 and label 1
        d: int = struct.field(pytree_node=False)
        target: int = struct.field(pytree_node=False)

        def draw(self, key, n):
            rows = jnp.zeros((n, self.d)).at[:, 0].set(-1.0)
            return rows.at[:, self.target].set(1.0)

    shape = StepShape(30, 8, 5, 3)
    b = loop.make_batch(task, Marked(table.n_cols, table.target_index), jax.random.key(0), shape)
    x, y, ctx = np.asarray(b.x[0]), np.asarray(b.y[0]), np.asarray(b.ctx[0])
    syn = x[:, 0] == -1
    np.testing.assert_array_equal(np.flatnonzero(syn), list(range(30, 35)) + list(range(43, 46)))
    assert ctx.sum() == 35 and (y[syn] == 1).all()


def test_early_stopping_restores_best_weights(setup, monkeypatch):
    *_, params, task = setup
    script = iter([0.5, 0.6, 0.9, 0.7, 0.8, 0.6, 0.95, 0.99])  # best at the 3rd evaluation
    seen = []

    def fake_scores(p, mc, t, which, proba=None):
        if which == "val":
            seen.append(jax.tree.map(np.array, p))
            return next(script), 0.5
        return 0.5, 0.5

    monkeypatch.setattr(loop, "scores", fake_scores)
    fc = FinetuneConfig(steps=40, lr=1e-2, eval_every=2, patience=3)
    r = finetune(params, MC, task, fc)
    assert r.stopped == "patience" and r.best_step == 4 and r.steps == 10
    assert r.val_auc == 0.9 and len(r.history) == 6
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, r.params), seen[2])
    assert not np.allclose(np.asarray(jax.tree.leaves(r.params)[0]),
                           np.asarray(jax.tree.leaves(seen[-1])[0]))


def test_early_stopping_records_min_checkpoints(setup, monkeypatch):
    """Patience 1 would stop at the 2nd evaluation; the run still records min_checkpoints
    evaluations (the best stays the first), so its val-test gap is defined."""
    *_, params, task = setup
    val = iter([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4])
    test = iter([0.6, 0.7, 0.65, 0.8, 0.9, 0.95, 0.99])

    def fake_scores(p, mc, t, which, proba=None):
        return (next(val), 0.5) if which == "val" else (next(test), 0.4)

    monkeypatch.setattr(loop, "scores", fake_scores)
    fc = FinetuneConfig(steps=40, lr=1e-2, eval_every=2, patience=1, min_checkpoints=5)
    r = finetune(params, MC, task, fc)
    assert r.stopped == "patience" and r.best_step == 0 and r.steps == 8
    assert [h["step"] for h in r.history] == [0, 2, 4, 6, 8]
    assert [h["test_loss"] for h in r.history] == [0.4] * 5
    # val ranks (ties by equal loss share ranks): 5, 3.5, 3.5, 2, 1; test 1, 3, 2, 4, 5
    from scipy.stats import spearmanr

    want = 1 - spearmanr([0.9, 0.8, 0.8, 0.7, 0.6], [0.6, 0.7, 0.65, 0.8, 0.9]).statistic
    assert r.val_test_gap == pytest.approx(want) and r.val_test_gap > 1.5


def test_select_score_replaces_validation_auc(setup, monkeypatch):
    """With ``select``, checkpoints are chosen by its validation score, not by ROC-AUC, and it
    receives the same probabilities the AUC is computed from (one forward pass each)."""
    *_, params, task = setup
    aucs = iter([0.9, 0.8, 0.7, 0.6, 0.5])  # AUC alone would keep step 0
    chosen = iter([-3.0, -2.0, -1.0, -2.5, -4.0])  # select prefers the 3rd evaluation
    given = []

    def fake_scores(p, mc, t, which, proba=None):
        given.append((which, proba))
        return (next(aucs), 0.5) if which == "val" else (0.5, 0.5)

    def select(proba, which):
        assert any(w == which and q is proba for w, q in given)  # the very same array
        return next(chosen) if which == "val" else 0.0

    monkeypatch.setattr(loop, "scores", fake_scores)
    r = finetune(params, MC, task, FinetuneConfig(steps=8, lr=1e-2, eval_every=2, patience=9),
                 select=select)
    assert r.best_step == 4 and [h["val_select"] for h in r.history] == [-3, -2, -1, -2.5, -4]
    assert r.val_auc == 0.7  # the AUC recorded at the selected checkpoint
    assert all(proba.shape == (len(task.y_val if w == "val" else task.y_test),
                               int(task.n_classes)) for w, proba in given)


def test_nan_guard_skips_bad_steps(setup):
    table, _, params, task = setup

    @struct.dataclass
    class Broken:
        d: int = struct.field(pytree_node=False)

        def draw(self, key, n):
            return jnp.full((n, self.d), jnp.inf)

    fc = FinetuneConfig(steps=20, volume=0.5, eval_every=2, max_nan_steps=3, lr=1e-2)
    r = finetune(params, MC, task, fc, source=Broken(table.n_cols))
    assert r.stopped == "nan" and r.nan_steps >= 3
    for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_finetune_with_pool_compiles_once(setup):
    table, split, params, task = setup
    src = PoolSource(jnp.asarray(table.values[split.train]))
    loop.update_step.clear_cache()
    loop.synthetic_step_rows.clear_cache()
    fc = FinetuneConfig(steps=4, eval_every=2, volume=0.5, pool_rows=64)
    r = finetune(params, MC, task, fc, source=src)
    assert r.steps == 4 and [h["step"] for h in r.history] == [0, 2, 4]
    assert np.isfinite(r.test_auc) and r.stopped == "steps"
    # compiled once, not once per step
    assert loop.update_step._cache_size() == 1 and loop.synthetic_step_rows._cache_size() == 1
    # another source shape, seed and patience: a new draw program, the same optimizer step
    other = PoolSource(jnp.asarray(table.values[split.train][:40]))
    finetune(params, MC, task, dataclasses.replace(fc, seed=3, patience=2, pool_rows=None),
             source=other)
    assert loop.update_step._cache_size() == 1 and loop.synthetic_step_rows._cache_size() == 2


def test_train_step_stays_on_the_device(setup):
    """The in-step SCM draw and the optimizer step: no host transfer (``jax.transfer_guard``)
    and no recompilation across steps, once compiled."""
    table, split, params, task = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = make_source("scm", table.take(split.train), key=jax.random.key(0), n_rows=0, k=2,
                          n_bootstrap=2, families=("linear", "mlp"))
    fc = FinetuneConfig(steps=4, volume=1.0)
    shape = step_shape(int(task.x_train.shape[0]), fc)
    state, key = loop.init_state(params, fc), jax.random.key(1)
    state, _ = loop.train_step(state, task, src, key, mc=MC, fc=fc, shape=shape)  # compile
    sizes = loop.update_step._cache_size(), loop.synthetic_step_rows._cache_size()
    with jax.transfer_guard("disallow"):
        for _ in range(3):
            state, loss = loop.train_step(state, task, src, key, mc=MC, fc=fc, shape=shape)
    assert (loop.update_step._cache_size(), loop.synthetic_step_rows._cache_size()) == sizes
    assert int(state.step) == 4 and np.isfinite(float(loss))
