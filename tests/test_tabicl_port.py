"""causaljax.tfm.tabicl against the reference: tabicl's own torch module, random weights.

Each config builds ``tabicl._model.tabicl.TabICL`` (the raw classifier module), fills every
parameter with seeded random values (no download), saves ``{"config", "state_dict"}`` with
torch.save as the package's checkpoints are, converts the file with ``read_tabicl`` and compares
eval-mode logits on random tables (AMP off: on a CPU tabicl would otherwise autocast to
bfloat16). Needs the ``tabicl`` extra (``pip install -e ".[dev]"``); skipped without it.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[dev]')")
pytest.importorskip("tabicl", reason="tabicl not installed (pip install -e '.[dev]')")
from tabicl._model.inference_config import InferenceConfig
from tabicl._model.tabicl import TabICL as TorchTabICL

from causaljax.tfm import tabicl as tj

TOL = 1e-4
SMALL = {"max_classes": 4, "embed_dim": 16, "col_num_blocks": 1, "col_nhead": 2,
         "col_num_inds": 4, "row_num_blocks": 2, "row_nhead": 2, "row_num_cls": 2,
         "icl_num_blocks": 1, "icl_nhead": 2}
CONFIGS = {
    # the published defaults' choices: feature groups "same", QASSMax, pre-norm, GELU
    "default": dict(SMALL, row_num_blocks=1),  # (2 row blocks: variants2)
    # affine column embedding (with its LNs), bias-free LN, non-interleaved RoPE, ReLU, SSMax
    "variants1": dict(SMALL, col_feature_group=False, col_affine=True, bias_free_ln=True,
                      row_rope_interleaved=False, activation="relu", col_ssmax="ssmax",
                      icl_ssmax="ssmax-mlp", row_num_blocks=1),
    # post-norm, "valid" feature groups of 2, no target-aware column embedding, the other SSMax
    # kinds, two row blocks, three CLS tokens
    "variants2": dict(SMALL, norm_first=False, col_feature_group="valid",
                      col_feature_group_size=2, col_target_aware=False, col_ssmax="qassmax-mlp",
                      icl_ssmax="ssmax-mlp-elementwise", row_num_cls=3),
}
# (config, n_ctx, n_query, n_features, n_classes, also under jax.jit)
CASES = [
    ("default", 24, 6, 5, 3, True),
    ("default", 10, 3, 1, 4, True),     # one feature; n_classes = max_classes (native limit)
    ("default", 30, 5, 3, 7, True),     # > max_classes: mixed radix + hierarchical tree
    ("variants1", 16, 4, 4, 2, False),
    ("variants2", 16, 4, 5, 3, False),
]
NO_AMP = {k: {"use_amp": False} for k in ("COL_CONFIG", "ROW_CONFIG", "ICL_CONFIG")}


def _random_torch_model(kw: dict, seed: int):
    torch.manual_seed(seed)
    m = TorchTabICL(**kw)
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if k.endswith("rope.freqs"):  # fixed buffer-like parameter
                continue
            if v.ndim >= 2:  # weights: ~ unit-variance outputs
                v.copy_(torch.randn_like(v) * 0.7 / v.shape[-1] ** 0.5)
            elif ("norm" in k or "ln" in k) and k.endswith("weight"):
                v.copy_(1.0 + 0.2 * torch.randn_like(v))
            else:  # biases, SSMax scales
                v.copy_(0.2 * torch.randn_like(v))
    return m.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for i, (name, kw) in enumerate(CONFIGS.items()):
        m = _random_torch_model(kw, seed=i)
        path = tmp_path_factory.mktemp("tabicl") / f"{name}.ckpt"
        torch.save({"config": kw, "state_dict": m.state_dict()}, path)
        cfg, params = tj.read_tabicl(path)
        out[name] = (m, cfg, params, path)
    return out


def _table(seed, n_ctx, n_q, n_f, n_c):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_ctx + n_q, n_f)).astype(np.float32)
    y = np.concatenate([np.arange(n_c), rng.integers(0, n_c, n_ctx - n_c)])
    rng.shuffle(y)
    return x[:n_ctx], y.astype(np.int32), x[n_ctx:]


def _reference(m, x_ctx, y_ctx, x_q):
    icfg = InferenceConfig()
    icfg.update_from_dict(NO_AMP)
    X = torch.from_numpy(np.concatenate([x_ctx, x_q]))[None]
    with torch.no_grad():
        return m(X, torch.from_numpy(y_ctx).float()[None], inference_config=icfg)[0].numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-ctx{c[1]}-q{c[2]}-F{c[3]}-C{c[4]}")
def test_logits_match_reference(models, case):
    name, n_ctx, n_q, n_f, n_c, with_jit = case
    m, cfg, params, _ = models[name]
    x_ctx, y_ctx, x_q = _table(n_ctx * 100 + n_f * 10 + n_c, n_ctx, n_q, n_f, n_c)
    ref = _reference(m, x_ctx, y_ctx, x_q)
    assert ref.shape == (n_q, n_c)
    ours = np.asarray(tj.apply(cfg, params, x_ctx, y_ctx, x_q))
    assert ours.shape == (n_q, n_c) and ours.dtype == np.float32
    d = float(np.abs(ours - ref).max())
    print(f"\n{case}: max|d| = {d:.2e} (|ref| <= {np.abs(ref).max():.2f})")
    assert d <= TOL
    if with_jit:
        f = jax.jit(functools.partial(tj.apply, cfg, n_classes=n_c))
        dj = float(np.abs(np.asarray(f(params, x_ctx, y_ctx, x_q)) - ref).max())
        print(f"{case}: jit max|d| = {dj:.2e}")
        assert dj <= TOL


def test_model_object_and_bare_state_dict(models):
    m, cfg, params, _ = models["default"]
    model = tj.TabICL(cfg)
    assert model.limits.native_classes == 4
    p2 = tj.convert_tabicl(m.state_dict(), config=CONFIGS["default"])
    jax.tree.map(np.testing.assert_array_equal, params, p2)
    fresh = jax.eval_shape(model.init, jax.random.key(0))  # shapes only: no compile
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, fresh, params)) \
        == [True] * len(jax.tree.leaves(params))


# --- bad checkpoints ----------------------------------------------------------------------


def _ckpt(models):
    m = models["default"][0]
    return {"config": dict(CONFIGS["default"]), "state_dict": dict(m.state_dict())}


def test_missing_key_named(models):
    ck = _ckpt(models)
    del ck["state_dict"]["icl_predictor.decoder.2.weight"]
    with pytest.raises(ValueError, match="missing key 'icl_predictor.decoder.2.weight'"):
        tj.read_tabicl(ck)


def test_wrong_shape_named(models):
    ck = _ckpt(models)
    ck["state_dict"]["row_interactor.cls_tokens"] = torch.zeros(3, 16)
    with pytest.raises(ValueError, match=r"'row_interactor.cls_tokens' has shape \(3, 16\)"):
        tj.read_tabicl(ck)
    ck = _ckpt(models)
    ck["config"]["embed_dim"] = 32  # a checkpoint for another width
    with pytest.raises(ValueError, match="col_embedder.in_linear.weight"):
        tj.read_tabicl(ck)


def test_unexpected_key_named(models):
    ck = _ckpt(models)
    ck["state_dict"]["icl_predictor.extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match="unexpected key 'icl_predictor.extra.weight'"):
        tj.read_tabicl(ck)


def test_corrupt_and_missing_files(tmp_path, models):
    bad = tmp_path / "corrupt.ckpt"
    good = models["default"][3].read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="could not be read"):
        tj.read_tabicl(bad)
    with pytest.raises(ValueError, match="does not exist"):
        tj.read_tabicl(tmp_path / "nope.ckpt")
    bare = tmp_path / "bare.ckpt"
    torch.save(models["default"][0].state_dict(), bare)
    with pytest.raises(ValueError, match="needs config="):
        tj.read_tabicl(bare)


_EXECUTED = []


def _mark():
    _EXECUTED.append(1)
    return "ran"


class _Payload:
    def __reduce__(self):
        return (_mark, ())


def test_pickled_code_is_not_executed(tmp_path, models):
    ck = _ckpt(models)
    ck["payload"] = _Payload()
    path = tmp_path / "evil.ckpt"
    torch.save(ck, path)
    with pytest.raises(ValueError, match="weights_only"):
        tj.read_tabicl(path)
    assert not _EXECUTED


# --- bad inputs -------------------------------------------------------------------------------


def test_input_checks(models):
    _, cfg, params, _ = models["default"]
    x_ctx, y_ctx, x_q = _table(0, 12, 3, 4, 3)
    with pytest.raises(ValueError, match="x_ctx has 4 features but x_query has 3"):
        tj.apply(cfg, params, x_ctx, y_ctx, x_q[:, :3])
    with pytest.raises(ValueError, match="one label per context row"):
        tj.apply(cfg, params, x_ctx, y_ctx[:-1], x_q)
    with pytest.raises(ValueError, match="at least 1 feature"):
        tj.apply(cfg, params, x_ctx[:, :0], y_ctx, x_q[:, :0])
    with pytest.raises(ValueError, match="must lie in 0..2"):
        tj.apply(cfg, params, x_ctx, np.where(y_ctx == 2, -1, y_ctx), x_q, n_classes=3)
    with pytest.raises(ValueError, match=r"labels \[1\] of 0..2 have no context row"):
        tj.apply(cfg, params, x_ctx, np.where(y_ctx == 1, 0, y_ctx), x_q)
    with pytest.raises(ValueError, match="n_classes must be given"):
        jax.jit(functools.partial(tj.apply, cfg))(params, x_ctx, y_ctx, x_q)
    with pytest.raises(ValueError, match="integer labels"):
        tj.apply(cfg, params, x_ctx, y_ctx.astype(np.float32), x_q)
    with pytest.raises(ValueError, match="classification-only"):
        tj.TabICLConfig(max_classes=0)
    with pytest.raises(ValueError, match="keys this port does not know"):
        tj.TabICLConfig.from_dict({"bogus": 1})
