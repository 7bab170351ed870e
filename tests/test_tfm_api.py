"""causaljax.tfm.api: the model interface, its adapters, and TFMClassifier(model=...)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from causaljax.tfm import TFMClassifier, api
from causaljax.tfm import tabicl as tj

SMALL = tj.TabICLConfig(max_classes=4, embed_dim=16, col_num_blocks=1, col_nhead=2,
                        col_num_inds=4, row_num_blocks=1, row_nhead=2, row_num_cls=2,
                        icl_num_blocks=1, icl_nhead=2)


def _data(seed=0, n=40, f=3, c=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return x, y % c


def test_shipped_adapter_matches_the_default_classifier():
    x, y = _data()
    kw = {"n_estimators": 1, "preprocessing": ("none",), "categorical_encoding": ("ordinal",)}
    p_default = TFMClassifier(**kw).fit(x[:30], y[:30]).predict_proba(x[30:])
    p_model = TFMClassifier(model=api.shipped(), **kw).fit(x[:30], y[:30]).predict_proba(x[30:])
    np.testing.assert_allclose(p_model, p_default, atol=1e-5)


def test_tabicl_adapter_in_the_classifier_and_under_jit():
    model = api.tabicl(SMALL)
    model = model.with_params(model.init(jax.random.key(0)))
    x, y = _data(1)
    x[3, 1] = np.nan  # filled with the context mean for a model without missing-value support
    clf = TFMClassifier(model=model, n_estimators=2, preprocessing=("none",),
                        categorical_encoding=("ordinal",)).fit(x[:30], y[:30])
    p = clf.predict_proba(x[30:])
    assert p.shape == (10, 3) and np.allclose(p.sum(1), 1) and np.isfinite(p).all()
    xc, yc, xq = x[:30].copy(), y[:30].astype(np.int32), x[30:]
    xc[3, 1] = 0.0
    f = jax.jit(functools.partial(model.apply, n_classes=3))
    np.testing.assert_allclose(np.asarray(f(model.params, xc, yc, xq)),
                               np.asarray(model.apply(model.params, xc, yc, xq)), atol=1e-5)


def test_limits_and_defaults():
    rt = api.row_token()
    assert rt.limits == api.Limits(max_features=100, max_classes=10)
    with pytest.raises(ValueError, match="at most 10 classes; got 11"):
        rt.apply(None, np.zeros((11, 2)), np.arange(11), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="at most 100 features; got 101"):
        rt.apply(None, np.zeros((2, 101)), np.arange(2), np.zeros((1, 101)))
    with pytest.raises(ValueError, match="pass n_classes"):
        jax.jit(api.tabicl(SMALL).apply)(None, np.zeros((2, 2)), np.arange(2), np.zeros((1, 2)))
    assert TFMClassifier().get_params()["model"] is None
    with pytest.raises(ValueError, match="with parameters"):
        TFMClassifier(model=api.tabicl(SMALL)).fit(*_data())
