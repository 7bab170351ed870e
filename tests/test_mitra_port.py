"""causaljax.tfm.mitra against the reference: AutoGluon's own torch ``Tab2D``, random weights.

Each config builds ``autogluon.tabular.models.mitra._internal.models.tab2d.Tab2D`` (the raw
module, no download), fills every parameter with seeded random values, writes it as the
published checkpoints are (``save_pretrained``: config.json + model.safetensors), converts the
folder with ``read_mitra`` and compares eval-mode logits on random tables (batch 1, no
padding). Needs the ``autogluon.tabular[mitra]`` dev extra; skipped without it.
"""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[dev]')")
tab2d = pytest.importorskip("autogluon.tabular.models.mitra._internal.models.tab2d",
                            reason="autogluon.tabular[mitra] not installed (pip install -e "
                                   "'.[dev]')")

from causaljax.tfm import api
from causaljax.tfm import mitra as mj

TOL = 1e-4
CONFIGS = {
    "small": {"dim": 16, "dim_output": 5, "n_layers": 2, "n_heads": 2},
    "wide": {"dim": 24, "dim_output": 3, "n_layers": 1, "n_heads": 3},
}
# (config, n_ctx, n_query, n_features, n_classes, also under jax.jit, cells: "normal" | "ties")
CASES = [
    ("small", 24, 6, 5, 3, True, "ties"),     # rounded columns: equal values, bucket ties
    ("small", 10, 3, 1, 5, True, "normal"),   # one feature; n_classes = dim_output
    ("small", 40, 7, 9, 2, False, "ties"),    # a constant column (zero in every row)
    ("small", 2, 4, 3, 2, True, "normal"),    # two context rows
    ("small", 1200, 9, 2, 4, True, "ties"),   # more context rows than the 999 quantiles
    ("wide", 30, 5, 4, 3, True, "normal"),
]


def _random_torch_model(kw: dict, seed: int):
    torch.manual_seed(seed)
    m = tab2d.Tab2D(**kw, task="CLASSIFICATION", use_pretrained_weights=False,
                    path_to_weights="", device="cpu")
    with torch.no_grad():  # every parameter random (LayerNorms included)
        for k, v in m.state_dict().items():
            if "y_embedding" in k or "x_embedding" in k:
                v.copy_(torch.randn_like(v))
            elif v.ndim >= 2:
                v.copy_(torch.randn_like(v) * 0.7 / v.shape[-1] ** 0.5)
            elif "norm" in k and k.endswith("weight"):
                v.copy_(1.0 + 0.2 * torch.randn_like(v))
            else:
                v.copy_(0.2 * torch.randn_like(v))
    return m.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for i, (name, kw) in enumerate(CONFIGS.items()):
        m = _random_torch_model(kw, seed=i)
        folder = tmp_path_factory.mktemp("mitra") / name
        m.save_pretrained(str(folder))  # the published layout
        cfg, params = mj.read_mitra(folder)
        out[name] = (m, cfg, params, folder)
    return out


def _table(seed, n_ctx, n_q, n_f, n_c, cells):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_ctx + n_q, n_f)).astype(np.float32)
    if cells == "ties":
        x[:, 0] = np.round(2 * x[:, 0])  # a few distinct values: many equal cells
        if n_f > 2:
            x[:n_ctx, 2] = 0.0  # constant over the context rows
    y = np.concatenate([np.arange(min(n_c, n_ctx)), rng.integers(0, n_c, n_ctx - min(n_c, n_ctx))])
    rng.shuffle(y)
    return x[:n_ctx], y.astype(np.int32), x[n_ctx:]


def _reference(m, x_ctx, y_ctx, x_q, n_c):
    n_ctx, n_q, F = x_ctx.shape[0], x_q.shape[0], x_ctx.shape[1]
    with torch.no_grad():
        out = m(torch.from_numpy(x_ctx[None].copy()), torch.from_numpy(y_ctx[None].astype(np.int64)),
                torch.from_numpy(x_q[None].copy()), torch.zeros(1, F, dtype=torch.bool),
                torch.zeros(1, n_ctx, dtype=torch.bool), torch.zeros(1, n_q, dtype=torch.bool))
    return out[0, :, :n_c].numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-ctx{c[1]}-q{c[2]}-F{c[3]}-C{c[4]}"
                         f"-{c[6]}")
def test_logits_match_reference(models, case):
    name, n_ctx, n_q, n_f, n_c, with_jit, cells = case
    m, cfg, params, _ = models[name]
    x_ctx, y_ctx, x_q = _table(n_ctx * 100 + n_f * 10 + n_c, n_ctx, n_q, n_f, n_c, cells)
    ref = _reference(m, x_ctx, y_ctx, x_q, n_c)
    assert ref.shape == (n_q, n_c) and np.isfinite(ref).all()
    assert np.ptp(ref, axis=0).max() > 100 * TOL  # the query rows differ: not a trivial pass
    ours = np.asarray(mj.apply(cfg, params, x_ctx, y_ctx, x_q, n_classes=n_c))
    assert ours.shape == (n_q, n_c) and ours.dtype == np.float32
    d = float(np.abs(ours - ref).max())
    print(f"\n{case}: max|d| = {d:.2e} (|ref| <= {np.abs(ref).max():.2f})")
    assert d <= TOL
    if with_jit:
        f = jax.jit(functools.partial(mj.apply, cfg, n_classes=n_c))
        assert float(np.abs(np.asarray(f(params, x_ctx, y_ctx, x_q)) - ref).max()) <= TOL


def test_quantile_embedding_matches_reference():
    """The parameter-free x embedding on its own, exactly (bucket indices are integers)."""
    emb = tab2d.Tab2DQuantileEmbeddingX(8)
    for seed, n_ctx, n_q in ((0, 7, 5), (1, 300, 20), (2, 2500, 30)):
        x_ctx, _, x_q = _table(seed, n_ctx, n_q, 3, 2, "ties")
        ref_c, ref_q = emb(torch.from_numpy(x_ctx[None].copy()), torch.from_numpy(x_q[None].copy()),
                           torch.zeros(1, n_ctx, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool))
        ours_c, ours_q = mj.quantile_embed(x_ctx, x_q)
        np.testing.assert_allclose(np.asarray(ours_c), ref_c[0].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(ours_q), ref_q[0].numpy(), atol=1e-5, rtol=0)


def test_checkpoint_layouts_and_adapter(models, tmp_path):
    m, cfg, params, folder = models["small"]
    assert cfg == mj.MitraConfig(**CONFIGS["small"])
    # a bare state dict + config; a torch file; a .safetensors file with config.json beside it
    same = [mj.convert_mitra(dict(m.state_dict()), config=CONFIGS["small"]),
            mj.convert_mitra(folder / "model.safetensors")]
    pt = tmp_path / "model.pt"
    torch.save(m.state_dict(), pt)
    same.append(mj.convert_mitra(pt, config=cfg))
    for p2 in same:
        jax.tree.map(np.testing.assert_array_equal, params, p2)
    fresh = jax.eval_shape(functools.partial(mj.init, cfg), jax.random.key(0))
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, fresh, params)))
    tfm = api.mitra_from_checkpoint(folder)
    assert tfm.limits == api.Limits(500, 5, 10_000) and not tfm.handles_missing
    x_ctx, y_ctx, x_q = _table(3, 24, 6, 5, 3, "normal")
    np.testing.assert_array_equal(np.asarray(tfm.apply(tfm.params, x_ctx, y_ctx, x_q)),
                                  np.asarray(mj.apply(cfg, params, x_ctx, y_ctx, x_q)))


def test_published_default_size_builds():
    """The published classifier's shapes (512 wide, 12 layers, 10 classes): 75.7 M
    parameters, the reference's keys and count."""
    n_ours = sum(int(np.prod(s)) for _, _, s, _ in mj.param_spec(mj.MitraConfig()))
    ref = tab2d.Tab2D(**mj.MitraConfig().to_dict(), use_pretrained_weights=False,
                      path_to_weights="", device="cpu")
    assert n_ours == sum(p.numel() for p in ref.parameters())
    assert {k for _, k, _, _ in mj.param_spec(mj.MitraConfig())} == set(ref.state_dict())


# --- bad checkpoints ------------------------------------------------------------------------


def test_missing_wrong_and_unexpected_keys(models):
    state = dict(models["small"][0].state_dict())
    bad = {k: v for k, v in state.items() if k != "layers.1.attention2.o.bias"}
    with pytest.raises(ValueError, match="missing key 'layers.1.attention2.o.bias'"):
        mj.read_mitra(bad, config=CONFIGS["small"])
    with pytest.raises(ValueError, match=r"'y_embedding.y_embedding.weight' has shape \(5, 16\); "
                                         r"the config expects \(3, 16\)"):
        mj.read_mitra(state, config={**CONFIGS["small"], "dim_output": 3})
    with pytest.raises(ValueError, match="unexpected key 'layers.2.layer_norm1.weight'"):
        mj.read_mitra({**state, "layers.2.layer_norm1.weight": torch.ones(16)},
                      config=CONFIGS["small"])
    with pytest.raises(ValueError, match="needs config="):
        mj.read_mitra(state)
    with pytest.raises(ValueError, match="classification-only"):
        mj.read_mitra(state, config={**CONFIGS["small"], "task": "REGRESSION"})


def test_bad_files(models, tmp_path):
    folder = models["small"][3]
    good = (folder / "model.safetensors").read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        mj.read_mitra(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not be read as JSON"):
        mj.read_mitra(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no model.safetensors .*autogluon/mitra-classifier"):
        mj.read_mitra(empty)
    with pytest.raises(ValueError, match="does not exist"):
        mj.read_mitra(tmp_path / "nope.pt", config=CONFIGS["small"])
    assert json.loads((folder / "config.json").read_text())["task"] == "CLASSIFICATION"


_EXECUTED = []


def _mark():
    _EXECUTED.append(1)
    return "ran"


class _Payload:
    def __reduce__(self):
        return (_mark, ())


def test_pickled_code_is_not_executed(models, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({**models["small"][0].state_dict(), "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        mj.read_mitra(path, config=CONFIGS["small"])
    assert not _EXECUTED


# --- bad inputs -----------------------------------------------------------------------------


def test_limits_and_input_checks(models):
    _, cfg, params, _ = models["small"]
    x_ctx, y_ctx, x_q = _table(0, 12, 3, 4, 3, "normal")
    with pytest.raises(ValueError, match="dim_output=5"):
        mj.apply(cfg, params, np.zeros((6, 2)), np.arange(6), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="501 features > .* max_features=500"):
        mj.apply(cfg, params, np.zeros((2, 501)), np.arange(2), np.zeros((1, 501)))
    with pytest.raises(ValueError, match="max_context_rows=10000"):
        mj.apply(cfg, params, np.zeros((10_001, 1)), np.arange(10_001) % 2, np.zeros((1, 1)))
    assert mj.limits(cfg, ignore_pretraining_limits=True).max_features is None
    nan = x_ctx.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="x_ctx holds NaN or inf"):
        mj.apply(cfg, params, nan, y_ctx, x_q)
    with pytest.raises(ValueError, match="x_ctx has 4 features but x_query has 3"):
        mj.apply(cfg, params, x_ctx, y_ctx, x_q[:, :3])
    with pytest.raises(ValueError, match="one label per context row"):
        mj.apply(cfg, params, x_ctx, y_ctx[:-1], x_q)
    with pytest.raises(ValueError, match="n_classes must be given"):
        jax.jit(functools.partial(mj.apply, cfg))(params, x_ctx, y_ctx, x_q)
    with pytest.raises(ValueError, match="integer labels"):
        mj.apply(cfg, params, x_ctx, y_ctx.astype(np.float32), x_q)
    with pytest.raises(ValueError, match="n_heads=3 does not divide dim=16"):
        mj.MitraConfig(dim=16, n_heads=3)
    # a class absent from the context is allowed (the label embedding takes any class)
    assert mj.apply(cfg, params, x_ctx, np.where(y_ctx == 1, 0, y_ctx), x_q,
                    n_classes=3).shape == (3, 3)
