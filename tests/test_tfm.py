"""The in-context TFM: attention structure, training, checkpoints, shipped weights, classifier.

Golden values (``tests/data/tfm_golden.json``) pin the probabilities of the SHIPPED checkpoint
on a fixed input. Regenerating them is legitimate only when the shipped weights
(``causaljax/tfm/weights/default.msgpack``) are deliberately replaced (a new export); then run
``python tests/test_tfm.py --regenerate-golden`` and commit both together. A golden failure
with unchanged weights means the model code changed its function: that is a bug to explain.
"""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scripts import load_script
from sklearn.utils.estimator_checks import parametrize_with_checks

from causaljax.prior import PriorConfig, sample_batch
from causaljax.tfm.checkpoint import CheckpointError, load_weights, save_weights
from causaljax.tfm.classifier import TFMClassifier
from causaljax.tfm.model import ModelConfig, build, init_params
from causaljax.tfm.pretrain import (
    TrainConfig,
    init_state,
    loss_fn,
    prior_for,
    restore_run_checkpoint,
    save_run_checkpoint,
    train_step,
    validation_batches,
    validation_loss,
)

GOLDEN = Path(__file__).parent / "data" / "tfm_golden.json"
TINY = ModelConfig(width=32, depth=2, heads=2)


def _apply(params, cfg, x, y, ctx, row=None, feat=None):
    B, N, F = x.shape
    row = jnp.ones((B, N), bool) if row is None else row
    feat = jnp.arange(F)[None].repeat(B, 0) < 5 if feat is None else feat
    return np.asarray(build(cfg).apply({"params": params}, x, y, ctx, row, feat))


@pytest.fixture(scope="module")
def tiny():
    params = init_params(TINY, jax.random.key(1))
    rng = np.random.default_rng(0)
    N = 20
    x = np.zeros((1, N, TINY.max_features), np.float32)
    x[..., :5] = rng.normal(size=(1, N, 5))
    y = rng.integers(0, 3, size=(1, N)).astype(np.int32)
    ctx = np.arange(N)[None] < 12
    return params, x, y, ctx


# ----------------------------------------------------------------------------- leakage
def test_query_rows_do_not_influence_each_other(tiny):
    params, x, y, ctx = tiny
    base = _apply(params, TINY, x, y, ctx)
    x2 = x.copy()
    x2[0, 15, :5] += 3.0  # change one query row
    out = _apply(params, TINY, x2, y, ctx)
    others = [i for i in range(12, 20) if i != 15]
    np.testing.assert_allclose(out[0, others], base[0, others], atol=1e-5)
    np.testing.assert_allclose(out[0, :12], base[0, :12], atol=1e-5)  # context untouched too
    assert np.abs(out[0, 15] - base[0, 15]).max() > 1e-3  # the changed query does change


def test_context_labels_and_rows_matter(tiny):
    params, x, y, ctx = tiny
    base = _apply(params, TINY, x, y, ctx)
    y2 = y.copy()
    y2[0, 3] = (y2[0, 3] + 1) % 3  # change one context label
    out = _apply(params, TINY, x, y2, ctx)
    assert np.abs(out[0, 12:] - base[0, 12:]).max() > 1e-4
    y3 = y.copy()
    y3[0, 14] = (y3[0, 14] + 1) % 3  # a query's label is never seen
    np.testing.assert_allclose(_apply(params, TINY, x, y3, ctx), base, atol=1e-6)


def test_padding_rows_and_slots_are_ignored(tiny):
    params, x, y, ctx = tiny
    row = np.ones((1, 20), bool)
    row[0, 10] = False  # a padded context row
    base = _apply(params, TINY, x, y, ctx, row=row)
    x2 = x.copy()
    x2[0, 10, :5] = 100.0
    x2[0, :, 50] = 7.0  # a padded feature slot
    out = _apply(params, TINY, x2, y, ctx, row=row)
    np.testing.assert_allclose(out[0, 12:], base[0, 12:], atol=1e-5)


def test_missing_values_are_handled(tiny):
    params, x, y, ctx = tiny
    x2 = x.copy()
    x2[0, 2, 1] = np.nan
    x2[0, 14, 3] = np.nan
    out = _apply(params, TINY, x2, y, ctx)
    assert np.isfinite(out).all()
    assert np.abs(out - _apply(params, TINY, x, y, ctx)).max() > 1e-5


# ----------------------------------------------------------------------------- training
# one tiny configuration for both training tests, so the train step compiles once
TRAIN_MC = ModelConfig(width=16, depth=1, heads=2)
TRAIN_TC = TrainConfig(total_steps=40, lr=5e-3, warmup=3, tokens_per_step=256, row_buckets=(32,))
TRAIN_PC = prior_for(32, PriorConfig(n_nodes=6, max_prior_features=4, hidden=2, pool=32))


def _train(state, n):
    key = jax.random.key(0)
    for _ in range(n):
        state, metrics = train_step(state, key, mc=TRAIN_MC, tc=TRAIN_TC, pc=TRAIN_PC,
                                    batch_size=8)
    return state, metrics


def test_loss_falls_on_a_tiny_prior_run():
    val = validation_batches(TRAIN_PC, n_batches=4, batch_size=8)
    state = init_state(TRAIN_MC, TRAIN_TC)
    before, _ = validation_loss(state.params, TRAIN_MC, val)
    state, metrics = _train(state, 40)
    after, _ = validation_loss(state.params, TRAIN_MC, val)
    assert int(state.step) == 40 and np.isfinite(float(metrics["loss"]))
    assert after < before - 0.05, (before, after)


def test_bfloat16_compute_matches_float32():
    """The GPU path of pretrain_tfm.py (bf16 compute, f32 parameters), run on the CPU: the
    shipped weights give nearly the f32 loss on a prior batch, with finite f32 gradients."""
    params, mc, _ = load_weights("default")
    batch = sample_batch(jax.random.key(3), prior_for(64, PriorConfig()), 4)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True), static_argnums=(1, 3))
    grad = lambda dtype: value_and_grad(params, mc, batch, dtype)  # noqa: E731
    (loss32, _), _ = grad(jnp.float32)
    (loss16, _), grads16 = grad(jnp.bfloat16)
    assert abs(float(loss16) - float(loss32)) < 0.02, (float(loss16), float(loss32))
    for g in jax.tree.leaves(grads16):
        assert g.dtype == jnp.float32 and np.isfinite(np.asarray(g)).all()


def test_train_state_round_trip_and_resume(tmp_path):
    straight, _ = _train(init_state(TRAIN_MC, TRAIN_TC), 4)
    half, _ = _train(init_state(TRAIN_MC, TRAIN_TC), 2)
    save_run_checkpoint(half, str(tmp_path), {"wall_time_s": 1.5})
    restored, info = restore_run_checkpoint(init_state(TRAIN_MC, TRAIN_TC), str(tmp_path))
    assert info == {"wall_time_s": 1.5} and int(restored.step) == 2
    assert jax.tree.structure(restored) == jax.tree.structure(half)
    resumed, _ = _train(restored, 2)
    assert int(resumed.step) == 4
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(straight.params)[0],
                           jax.tree.leaves(init_state(TRAIN_MC, TRAIN_TC).params)[0])


def test_run_checkpoints_keep_the_newest_and_skip_unreadable_ones(tmp_path):
    state = init_state(TRAIN_MC, TRAIN_TC)
    for step in (1, 2, 3):
        save_run_checkpoint(state._replace(step=jnp.asarray(step, jnp.int32)), str(tmp_path),
                            {"step": step}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "3"]
    assert restore_run_checkpoint(state, str(tmp_path))[1] == {"step": 3}
    # damaged newest checkpoint: a warning, and the one before it
    for f in (tmp_path / "checkpoints" / "3" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="checkpoint 3 .* unreadable"):
        assert restore_run_checkpoint(state, str(tmp_path))[1] == {"step": 2}
    with pytest.raises(CheckpointError, match="no readable checkpoint"), pytest.warns(UserWarning):
        restore_run_checkpoint(init_state(TINY, TRAIN_TC), str(tmp_path))  # another model
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_run_checkpoint(state, str(tmp_path / "empty"))


# ----------------------------------------------------------------------------- checkpoints
def test_weights_round_trip(tmp_path):
    params = init_params(TINY, jax.random.key(2))
    meta = save_weights(params, TINY, tmp_path / "w.msgpack", train_steps=3)
    loaded, cfg, side = load_weights(tmp_path / "w.msgpack")
    assert cfg == TINY and side["sha256"] == meta["sha256"] and side["train_steps"] == 3
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)


def test_corrupt_and_mismatched_checkpoints_raise(tmp_path):
    params = init_params(TINY, jax.random.key(2))
    path = tmp_path / "w.msgpack"
    save_weights(params, TINY, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(path)
    # right checksum, wrong architecture in the sidecar
    save_weights(params, TINY, path)
    side = json.loads(path.with_suffix(".json").read_text())
    side["config"]["width"] = 48
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="does not match"):
        load_weights(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "nope.msgpack")
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_weights(path)


def _golden_input():
    rng = np.random.default_rng(123)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    return x[:30], y[:30], x[30:]


def _golden_probs():
    x_ctx, y_ctx, x_q = _golden_input()
    clf = TFMClassifier(n_estimators=2, random_state=0, preprocessing=("none",))
    clf.fit(x_ctx, y_ctx)
    return clf.predict_proba(x_q)


def test_shipped_checkpoint_golden_probabilities():
    _, _, meta = load_weights("default")
    assert meta["size_bytes"] <= 25e6 and meta["train_steps"] > 0
    golden = json.loads(GOLDEN.read_text())
    assert golden["sha256"] == meta["sha256"], (
        "shipped weights changed: regenerate the golden values (see the module docstring)")
    np.testing.assert_allclose(_golden_probs(), np.asarray(golden["probs"]), atol=2e-5)


# ----------------------------------------------------------------------------- classifier
def _blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 3)) + 2.5 * y[:, None] * np.array([1.0, -1.0, 0.0])
    return x.astype(np.float32), y


def test_classifier_on_numpy():
    x, y = _blobs(200)
    labels = np.array(["no", "yes"])[y]
    clf = TFMClassifier(n_estimators=2).fit(x[:120], labels[:120])
    proba = clf.predict_proba(x[120:])
    assert proba.shape == (80, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert list(clf.classes_) == ["no", "yes"]
    assert (clf.predict(x[120:]) == labels[120:]).mean() > 0.9  # Bayes accuracy ~0.99


def test_classifier_on_pandas_matches_codes():
    x, y = _blobs(120, seed=1)
    color = np.where(x[:, 2] > 0, "red", "blue")
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "color": color})
    df.loc[3, "a"] = np.nan
    clf = TFMClassifier(n_estimators=1).fit(df.iloc[:80], y[:80])
    p_df = clf.predict_proba(df.iloc[80:])
    # independent encoding: sorted levels -> codes blue=0, red=1; NaN stays missing
    codes = np.stack([df.a, df.b, (df.color == "red").astype(float)], 1).astype(np.float32)
    p_np = TFMClassifier(n_estimators=1).fit(codes[:80], y[:80]).predict_proba(codes[80:])
    np.testing.assert_allclose(p_df, p_np, atol=1e-6)
    # unseen level -> treated as missing, still a valid prediction
    q = df.iloc[80:82].copy()
    q["color"] = "green"
    assert np.isfinite(clf.predict_proba(q)).all()


def test_context_subsampling_ensemble_and_query_batching():
    x, y = _blobs(300, seed=2)
    clf = TFMClassifier(n_estimators=3, max_context=64, query_batch=32, random_state=1)
    p = clf.fit(x[:200], y[:200]).predict_proba(x[200:])
    again = TFMClassifier(n_estimators=3, max_context=64, query_batch=100, random_state=1)
    np.testing.assert_allclose(again.fit(x[:200], y[:200]).predict_proba(x[200:]), p, atol=1e-5)
    assert (p.argmax(1) == y[200:]).mean() > 0.85


def test_quantile_member_sees_normal_scores_of_the_context():
    """A "quantile" member equals a "none" member fed the features pre-mapped to normal scores
    by sklearn's QuantileTransformer fitted on the context rows only."""
    from sklearn.preprocessing import QuantileTransformer

    x, y = _blobs(150, seed=3)
    x[:, 0] = np.exp(x[:, 0])  # skewed feature
    qt = QuantileTransformer(n_quantiles=100, output_distribution="normal").fit(x[:100])
    p_q = TFMClassifier(n_estimators=1, preprocessing=("quantile",)).fit(
        x[:100], y[:100]).predict_proba(x[100:])
    p_ref = TFMClassifier(n_estimators=1, preprocessing=("none",)).fit(
        qt.transform(x[:100]), y[:100]).predict_proba(qt.transform(x[100:]))
    np.testing.assert_allclose(p_q, p_ref, atol=1e-5)
    # one query's transform never depends on the other queries
    p_one = TFMClassifier(n_estimators=1, preprocessing=("quantile",)).fit(
        x[:100], y[:100]).predict_proba(x[100:101])
    np.testing.assert_allclose(p_one, p_q[:1], atol=1e-5)
    with pytest.raises(ValueError, match="preprocessing must be"):
        TFMClassifier(preprocessing=("log",)).fit(x[:100], y[:100])


def test_onehot_member_sees_indicators_of_the_context_levels():
    """An "onehot" member equals an "ordinal" member fed the indicator columns built
    independently with pandas (levels seen in the context; 2-level columns stay codes)."""
    x, y = _blobs(160, seed=4)
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"a": x[:, 0], "shade": np.where(y == 1, rng.choice(["r", "g"], 160),
                                                       rng.choice(["g", "b", "k"], 160)),
                       "flag": rng.choice(["u", "v"], 160), "b": x[:, 1]})
    ctx, q = df.iloc[:100], df.iloc[100:]
    one = dict(n_estimators=1, preprocessing=("none",))
    p_oh = TFMClassifier(**one, categorical_encoding=("onehot",)).fit(ctx, y[:100]).predict_proba(q)
    levels = sorted(ctx.shade.unique())
    ind = lambda f: np.stack([f.a, *[(f.shade == v) for v in levels], f.flag == "v", f.b],
                             1).astype(np.float32)
    p_ref = TFMClassifier(**one).fit(ind(ctx), y[:100]).predict_proba(ind(q))
    np.testing.assert_allclose(p_oh, p_ref, atol=1e-5)
    # the default ensemble mixes both encodings; an unseen level is all zeros, still finite
    clf = TFMClassifier(n_estimators=4).fit(ctx, y[:100])
    assert list(clf.is_categorical_) == [False, True, True, False]
    q2 = q.iloc[:3].copy()
    q2["shade"] = "purple"
    assert np.isfinite(clf.predict_proba(q2)).all()
    # a NumPy array with categorical_features given as indices = the DataFrame's codes
    codes = clf._encode(df, fitting=False)
    p_np = TFMClassifier(n_estimators=4, categorical_features=[1, 2]).fit(
        codes[:100], y[:100]).predict_proba(codes[100:])
    np.testing.assert_allclose(p_np, clf.predict_proba(q), atol=1e-5)


def test_onehot_keeps_within_the_feature_slots():
    from causaljax.tfm.classifier import _onehot

    rng = np.random.default_rng(0)
    x = rng.integers(0, 15, size=(200, 12)).astype(np.float32)
    x[0, 0] = np.nan
    is_cat = np.ones(12, bool)
    ctx, q = _onehot(x[:150], x[150:], is_cat, max_features=100)
    assert ctx.shape[1] <= 100 and q.shape[1] == ctx.shape[1]
    assert ctx.shape[1] == 100 - (100 - 12) % 14  # 6 columns expanded (+14 each), 6 kept
    assert np.isnan(ctx[0, :15]).all()  # a missing cell is missing in every indicator
    assert np.nansum(ctx[1:, :15], 1).max() == 1


def test_categorical_features_argument_is_checked():
    x, y = _blobs(60, seed=5)
    for bad, msg in (("auto", "categorical_features must be"), ([True, False], "mask has shape"),
                     ([5], "out of range")):
        with pytest.raises(ValueError, match=msg):
            TFMClassifier(categorical_features=bad).fit(x, y)
    with pytest.raises(ValueError, match="categorical_encoding must be"):
        TFMClassifier(categorical_encoding="onehot").fit(x, y)


def test_limits_raise_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at most 100 features"):
        TFMClassifier().fit(rng.normal(size=(20, 101)), np.arange(20) % 2)
    with pytest.raises(ValueError, match="at most 10 classes"):
        TFMClassifier().fit(rng.normal(size=(22, 3)), np.arange(22) % 11)


# scikit-learn's estimator checks. Checks that cannot apply to an in-context model would be
# listed here, each with its reason (``expected_failed_checks``, strict: a listed check that
# passes fails the test). None is needed: an in-context model validates its input like any
# estimator, "fit" stores the context, and every check of scikit-learn 1.9 passes. The tag
# allow_nan=True (NaN = a missing cell, given to the model as missing) means sklearn's
# check_estimators_nan_inf does not run; test_classifier_input_checks covers inf instead.
SKLEARN_EXPECTED_FAILED: dict[str, str] = {}


@parametrize_with_checks([TFMClassifier(n_estimators=1, query_batch=64)],
                         expected_failed_checks=lambda est: SKLEARN_EXPECTED_FAILED,
                         xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_classifier_input_checks():
    """The errors scikit-learn's checks ask for, with the values they name."""
    from sklearn.exceptions import DataConversionWarning, NotFittedError

    x, y = _blobs(60, seed=6)
    with pytest.raises(NotFittedError):
        TFMClassifier().predict(x)
    clf = TFMClassifier(n_estimators=1).fit(x[:40], y[:40])
    assert clf.n_features_in_ == 3
    with pytest.raises(ValueError, match="3 features"):
        clf.predict(x[40:, :2])
    bad = x.copy()
    bad[0, 1] = np.inf
    for fit_x, pred_x in ((bad[:40], x[40:]), (x[:40], bad[:20])):
        with pytest.raises(ValueError, match="infinity"):
            TFMClassifier(n_estimators=1).fit(fit_x, y[:40]).predict(pred_x)
    # NaN is a missing cell, not an error: same as the model fed NaN directly
    nan = x.copy()
    nan[:5, 0] = np.nan
    p_nan = TFMClassifier(n_estimators=1).fit(nan[:40], y[:40]).predict_proba(nan[40:])
    assert np.isfinite(p_nan).all()
    with pytest.raises(ValueError, match="Unknown label type"):
        TFMClassifier().fit(x[:40], np.linspace(0, 1, 40))
    with pytest.raises(ValueError, match="requires y"):
        TFMClassifier().fit(x[:40], None)
    with pytest.warns(DataConversionWarning):
        p2 = TFMClassifier(n_estimators=1).fit(x[:40], y[:40, None]).predict_proba(x[40:])
    np.testing.assert_allclose(p2, clf.predict_proba(x[40:]), atol=1e-6)
    with pytest.raises(ValueError, match="Reshape"):
        clf.predict(x[40])


def test_classifier_rejects_duplicate_dataframe_columns():
    x, y = _blobs(40, seed=7)
    df = pd.DataFrame(x, columns=["a", "a", "b"])
    with pytest.raises(ValueError, match=r"duplicate column names \['a'\]"):
        TFMClassifier().fit(df, y)
    ok = TFMClassifier(n_estimators=1).fit(pd.DataFrame(x, columns=["a", "c", "b"]), y)
    with pytest.raises(ValueError, match="duplicate column names"):
        ok.predict(df)


# ----------------------------------------------------------------------------- script
def _pretrain_script():

    return load_script("experiments", "pretrain_tfm")


def test_average_of_weights_files(tmp_path):
    one, two = init_params(TINY, jax.random.key(1)), init_params(TINY, jax.random.key(2))
    save_weights(one, TINY, tmp_path / "a.msgpack", train_steps=10, wall_time_s=5.0)
    save_weights(two, TINY, tmp_path / "b.msgpack", train_steps=30, wall_time_s=9.0)
    script = _pretrain_script()
    script.main(["--average", str(tmp_path / "a.msgpack"), str(tmp_path / "b.msgpack"),
                 "--dest", str(tmp_path / "avg.msgpack")])
    mean, cfg, meta = load_weights(tmp_path / "avg.msgpack")
    assert cfg == TINY and (meta["train_steps"], meta["wall_time_s"]) == (30, 9.0)
    sources = [(a["train_steps"], a["wall_time_s"]) for a in meta["averaged"]]
    assert sources == [(10, 5.0), (30, 9.0)]
    for m, a, b in zip(jax.tree.leaves(mean), jax.tree.leaves(one), jax.tree.leaves(two)):
        np.testing.assert_allclose(m, (np.asarray(a) + np.asarray(b)) / 2, rtol=1e-6)
    save_weights(init_params(ModelConfig(width=64, depth=2, heads=2), jax.random.key(3)),
                 ModelConfig(width=64, depth=2, heads=2), tmp_path / "wide.msgpack")
    with pytest.raises(SystemExit, match="different model configs"):
        script.main(["--average", str(tmp_path / "a.msgpack"), str(tmp_path / "wide.msgpack"),
                     "--dest", str(tmp_path / "bad.msgpack")])


def test_committed_state_reproduces_the_shipped_weights(tmp_path):
    """checkpoints/pretrain holds the last run's Orbax state (for resuming). Exported, it gives
    the shipped weights byte for byte; when those are a parameter mean (`--average`), it gives
    one of their sources, and its mean with the other sources, committed in `averaged_with/`,
    gives the shipped weights byte for byte."""
    committed = Path(__file__).parents[1] / "checkpoints" / "pretrain"
    script, exported = _pretrain_script(), tmp_path / "run.msgpack"
    script.main(["--export", str(committed), "--dest", str(exported)])
    shipped = load_weights("default")[2]
    if "averaged" in shipped:
        files = [exported, *sorted((committed / "averaged_with").glob("*.msgpack"))]
        by_sha = {load_weights(f)[2]["sha256"]: str(f) for f in files}
        sources = [by_sha[source["sha256"]] for source in shipped["averaged"]]
        script.main(["--average", *sources, "--dest", str(tmp_path / "mean.msgpack")])
        exported = tmp_path / "mean.msgpack"
    assert load_weights(exported)[2]["sha256"] == shipped["sha256"]


@pytest.mark.slow
def test_pretrain_script_quick_resume_and_export(tmp_path):
    """experiments/pretrain_tfm.py: a few quick steps, resume to more steps, export weights."""
    script = _pretrain_script()
    out = tmp_path / "run"
    script.main(["--quick", "--steps", "6", "--out", str(out), "--eval-every", "3",
                 "--minutes", "0.001"])  # the time budget stops it after one step
    first = sorted((out / "checkpoints").iterdir())
    assert len(first) == 1 and int(first[0].name) >= 1
    script.main(["--resume", "--out", str(out)])  # continues to the planned 6 steps
    log = pd.read_csv(out / "train_log.csv")
    assert log.step.tolist() == list(range(1, 7))  # each step logged once, in order
    assert (out / "loss.png").exists() and len(pd.read_csv(out / "val_log.csv")) >= 2
    script.main(["--resume", "--out", str(out)])  # a finished run: nothing more to do
    assert pd.read_csv(out / "train_log.csv").equals(log)
    script.main(["--export", str(out), "--dest", str(tmp_path / "w.msgpack")])
    _, cfg, meta = load_weights(tmp_path / "w.msgpack")
    assert meta["train_steps"] == 6 and cfg.width == 64
    # a run records its prior; a run.json written before the prior's options resumes with
    # the prior it was trained on (threefry uniforms, sampled noise pools)
    assert script.load_run(str(out))[2].noise_pools == "quantiles"
    run = json.loads((out / "run.json").read_text())
    for option in ("rng", "noise_pools"):
        del run["prior"][option]
    (out / "run.json").write_text(json.dumps(run))
    prior = script.load_run(str(out))[2]
    assert (prior.rng, prior.noise_pools) == ("key", "sampled")


if __name__ == "__main__" and "--regenerate-golden" in sys.argv:
    _, _, meta = load_weights("default")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"sha256": meta["sha256"], "train_steps": meta["train_steps"],
                                  "probs": _golden_probs().tolist()}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
