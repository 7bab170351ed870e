"""causaljax.tfm.tabpfn against the reference: tabpfn's own torch v2 module, random weights.

Each config builds ``tabpfn.architectures.tabpfn_v2.TabPFNV2`` (the raw module, through the
package's ``parse_config`` / ``get_architecture``), fills every parameter with seeded random
values (no download), saves ``{"state_dict", "config", "architecture_name"}`` with torch.save as
the package's checkpoints are, converts the file with ``read_tabpfn`` and compares eval-mode
logits on random tables. Needs the ``tabpfn`` extra (``pip install -e ".[dev]"``); skipped
without it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[dev]')")
pytest.importorskip("tabpfn", reason="tabpfn not installed (pip install -e '.[dev]')")
from tabpfn.architectures import tabpfn_v2 as ref_v2

from causaljax.tfm import api
from causaljax.tfm import tabpfn as tp

TOL = 1e-4
CONFIGS = {
    "fpg2": {"emsize": 16, "nlayers": 2, "nhead": 2, "features_per_group": 2,
             "max_num_classes": 5, "seed": 0},
    "fpg1": {"emsize": 24, "nlayers": 1, "nhead": 3, "features_per_group": 1,
             "max_num_classes": 4, "seed": 42},
}
# (config, n_ctx, n_query, n_features, n_classes, also under jax.jit, NaN/inf/constant cells)
CASES = [
    ("fpg2", 24, 6, 5, 3, True, False),   # 5 features: the last group is padded
    ("fpg2", 10, 3, 1, 5, True, False),   # one feature; n_classes = max_num_classes
    ("fpg2", 40, 7, 9, 2, True, True),    # NaN / +-inf / a constant column; 20 group randoms
    ("fpg1", 16, 4, 4, 2, False, False),  # features_per_group 1, seed 42
    ("fpg1", 30, 5, 2, 4, True, True),    # 2 classes below the max; scalar randn path
]


def _random_torch_model(kw: dict, seed: int):
    cfg, _ = ref_v2.parse_config(kw)
    torch.manual_seed(seed)
    m = ref_v2.get_architecture(cfg)
    with torch.no_grad():
        for v in m.state_dict().values():
            if v.ndim >= 2:  # weights (the package zero-initialises some: fill all)
                v.copy_(torch.randn_like(v) * 1.0 / v.shape[-1] ** 0.5)
            else:
                v.copy_(0.5 * torch.randn_like(v))
    return m.eval(), cfg


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for i, (name, kw) in enumerate(CONFIGS.items()):
        m, cfg = _random_torch_model(kw, seed=i)
        path = tmp_path_factory.mktemp("tabpfn") / f"{name}.ckpt"
        torch.save({"state_dict": m.state_dict(), "config": dataclasses.asdict(cfg),
                    "architecture_name": "tabpfn_v2"}, path)
        ours_cfg, params = tp.read_tabpfn(path)
        out[name] = (m, ours_cfg, params, path)
    return out


def _table(seed, n_ctx, n_q, n_f, n_c, special=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_ctx + n_q, n_f)).astype(np.float32)
    if special:
        x[rng.random(x.shape) < 0.1] = np.nan
        x[1, 0], x[n_ctx + 1, 0], x[2, -1] = np.inf, -np.inf, -np.inf
        if n_f > 2:
            x[:, 2] = 1.5  # constant over all rows
    y = np.concatenate([np.arange(n_c), rng.integers(0, n_c, n_ctx - n_c)])
    rng.shuffle(y)
    return x[:n_ctx], y.astype(np.int32), x[n_ctx:]


def _reference(m, x_ctx, y_ctx, x_q, n_c):
    X = torch.from_numpy(np.concatenate([x_ctx, x_q]))[:, None]
    with torch.no_grad():
        return m(X, torch.from_numpy(y_ctx.astype(np.float32)))[:, 0, :n_c].numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-ctx{c[1]}-q{c[2]}-F{c[3]}-C{c[4]}"
                         + ("-nan" if c[6] else ""))
def test_logits_match_reference(models, case):
    name, n_ctx, n_q, n_f, n_c, with_jit, special = case
    m, cfg, params, _ = models[name]
    x_ctx, y_ctx, x_q = _table(n_ctx * 100 + n_f * 10 + n_c, n_ctx, n_q, n_f, n_c, special)
    ref = _reference(m, x_ctx, y_ctx, x_q, n_c)
    assert ref.shape == (n_q, n_c) and np.isfinite(ref).all()
    # not trivially close: the logits differ between query rows by far more than TOL
    assert np.ptp(ref, axis=0).max() > 100 * TOL
    ours = np.asarray(tp.apply(cfg, params, x_ctx, y_ctx, x_q))
    assert ours.shape == (n_q, n_c) and ours.dtype == np.float32
    d = float(np.abs(ours - ref).max())
    print(f"\n{case}: max|d| = {d:.2e} (|ref| <= {np.abs(ref).max():.2f}, row spread "
          f"{np.ptp(ref, axis=0).max():.2f})")
    assert d <= TOL
    if with_jit:
        f = jax.jit(functools.partial(tp.apply, cfg, n_classes=n_c))
        dj = float(np.abs(np.asarray(f(params, x_ctx, y_ctx, x_q)) - ref).max())
        print(f"{case}: jit max|d| = {dj:.2e}")
        assert dj <= TOL


def test_group_embedding_randoms_match_torch():
    for seed in (0, 42, 2 ** 31 + 5):
        for rows, cols in ((1, 4), (3, 4), (1, 15), (4, 4), (5, 4), (7, 6), (3, 48), (11, 48)):
            g = torch.Generator().manual_seed(seed)
            want = torch.randn((rows, cols), generator=g).numpy()
            np.testing.assert_allclose(tp.torch_randn(seed, rows, cols), want, atol=1e-6,
                                       rtol=0, err_msg=f"seed {seed}, shape {(rows, cols)}")


def _to_base_layout(state: dict, nhead: int = 2) -> dict:
    """The single-file state dict in the published v2 checkpoints' (base) key layout."""
    out, n = {}, 0
    for k, v in state.items():
        p = k.split(".")
        if k == "feature_group_embedder.weight":
            out["encoder.5.layer.weight"] = v
        elif p[0] == "target_embedder":
            out[f"y_encoder.2.layer.{p[1]}"] = v
        elif p[0] == "output_projection":
            out[f"decoder_dict.standard.{p[1]}.{p[2]}"] = v
        elif p[0] == "blocks" and p[2] == "mlp":
            out[f"transformer_encoder.layers.{p[1]}.mlp.linear{1 if p[3] == '0' else 2}"
                ".weight"] = v
        elif p[0] == "blocks":
            n = max(n, int(p[1]) + 1)
        else:
            out[k] = v
    for i in range(n):
        for ours, base in (("per_sample_attention_between_features", "self_attn_between_features"),
                           ("per_column_attention_between_cells", "self_attn_between_items")):
            pre, b = f"blocks.{i}.{ours}", f"transformer_encoder.layers.{i}.{base}"
            q, k, v = (state[f"{pre}.{w}_projection.weight"] for w in "qkv")
            E = q.shape[1]  # fused [3, heads, head width, E]; out [heads, head width, E]
            out[f"{b}._w_qkv"] = torch.stack([q, k, v]).reshape(3, nhead, -1, E)
            out[f"{b}._w_out"] = state[f"{pre}.out_projection.weight"].T.reshape(nhead, -1, E)
    return out


def test_base_layout_checkpoint(models, tmp_path):
    m, cfg, params, _ = models["fpg2"]
    base = _to_base_layout(m.state_dict())
    # the package itself reads this layout back to the same module state
    m2, _ = _random_torch_model(CONFIGS["fpg2"], seed=7)
    m2.load_state_dict(base)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k].numpy(), v.numpy(), err_msg=k)
    path = tmp_path / "v2_base.ckpt"  # as published: no "architecture_name"
    torch.save({"state_dict": base, "config": {**CONFIGS["fpg2"], "nan_handling": True}}, path)
    cfg2, p2 = tp.read_tabpfn(path)
    assert cfg2 == cfg
    jax.tree.map(np.testing.assert_array_equal, params, p2)


def test_model_object_bare_state_dict_and_adapter(models):
    m, cfg, params, path = models["fpg2"]
    model = tp.TabPFN(cfg)
    assert model.limits == tp.TabPFNLimits(max_classes=5, max_features=500,
                                           max_context_rows=10_000)
    p2 = tp.convert_tabpfn(m.state_dict(), config=CONFIGS["fpg2"])
    jax.tree.map(np.testing.assert_array_equal, params, p2)
    fresh = jax.eval_shape(model.init, jax.random.key(0))  # shapes only: no compile
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, fresh, params)))
    tfm = api.tabpfn_from_checkpoint(path)
    assert tfm.handles_missing and tfm.limits == api.Limits(500, 5, 10_000)
    x_ctx, y_ctx, x_q = _table(3, 24, 6, 5, 3)
    np.testing.assert_array_equal(np.asarray(tfm.apply(tfm.params, x_ctx, y_ctx, x_q)),
                                  np.asarray(tp.apply(cfg, params, x_ctx, y_ctx, x_q)))
    with pytest.raises(ValueError, match="at most 5 classes; got 6"):
        tfm.apply(tfm.params, np.zeros((6, 2)), np.arange(6), np.zeros((1, 2)))


# --- bad checkpoints ----------------------------------------------------------------------


def _ckpt(models):
    m = models["fpg2"][0]
    return {"config": dict(CONFIGS["fpg2"]), "state_dict": dict(m.state_dict())}


def test_missing_key_named(models):
    ck = _ckpt(models)
    del ck["state_dict"]["output_projection.2.weight"]
    with pytest.raises(ValueError, match="missing key 'output_projection.2.weight'"):
        tp.read_tabpfn(ck)
    base = _to_base_layout(_ckpt(models)["state_dict"])
    del base["transformer_encoder.layers.1.mlp.linear2.weight"]
    with pytest.raises(ValueError, match=r"missing key 'blocks.1.mlp.2.weight' \(after "
                                         "translating the base"):
        tp.read_tabpfn(base, config=CONFIGS["fpg2"])


def test_wrong_shape_named(models):
    ck = _ckpt(models)
    ck["state_dict"]["target_embedder.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"'target_embedder.bias' has shape \(3,\)"):
        tp.read_tabpfn(ck)
    ck = _ckpt(models)
    ck["config"]["features_per_group"] = 1  # a checkpoint for another group size
    with pytest.raises(ValueError, match=r"'feature_group_embedder.weight' has shape \(16, 4\)"):
        tp.read_tabpfn(ck)
    ck = _ckpt(models)
    ck["config"]["max_num_classes"] = 10
    with pytest.raises(ValueError, match="output_projection.2.weight"):
        tp.read_tabpfn(ck)


def test_unexpected_key_and_architecture(models):
    ck = _ckpt(models)
    ck["state_dict"]["blocks.0.extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match="unexpected key 'blocks.0.extra.weight'"):
        tp.read_tabpfn(ck)
    ck = _ckpt(models)
    ck["architecture_name"] = "tabpfn_v2_5"
    with pytest.raises(ValueError, match="architecture_name='tabpfn_v2_5'"):
        tp.read_tabpfn(ck)


def test_corrupt_and_missing_files(tmp_path, models):
    bad = tmp_path / "corrupt.ckpt"
    good = models["fpg2"][3].read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="could not be read"):
        tp.read_tabpfn(bad)
    with pytest.raises(ValueError, match="does not exist"):
        tp.read_tabpfn(tmp_path / "nope.ckpt")
    bare = tmp_path / "bare.ckpt"
    torch.save(models["fpg2"][0].state_dict(), bare)
    with pytest.raises(ValueError, match="needs config="):
        tp.read_tabpfn(bare)


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
        tp.read_tabpfn(path)
    assert not _EXECUTED


# --- bad inputs -------------------------------------------------------------------------------


def test_limits_and_input_checks(models):
    _, cfg, params, _ = models["fpg2"]
    x_ctx, y_ctx, x_q = _table(0, 12, 3, 4, 3)
    with pytest.raises(ValueError, match="max_num_classes=5"):
        tp.apply(cfg, params, np.zeros((6, 2)), np.arange(6), np.zeros((1, 2)))
    wide_c, wide_q = np.zeros((2, 501), np.float32), np.zeros((1, 501), np.float32)
    with pytest.raises(ValueError, match="501 features > .* max_features=500"):
        tp.apply(cfg, params, wide_c, np.arange(2), wide_q)
    assert tp.limits(cfg, ignore_pretraining_limits=True).max_features is None
    with pytest.raises(ValueError, match="max_context_rows=10000"):
        tp.apply(cfg, params, np.zeros((10_001, 1)), np.arange(10_001) % 2, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="x_ctx has 4 features but x_query has 3"):
        tp.apply(cfg, params, x_ctx, y_ctx, x_q[:, :3])
    with pytest.raises(ValueError, match="one label per context row"):
        tp.apply(cfg, params, x_ctx, y_ctx[:-1], x_q)
    with pytest.raises(ValueError, match="at least 1 feature"):
        tp.apply(cfg, params, x_ctx[:, :0], y_ctx, x_q[:, :0])
    with pytest.raises(ValueError, match=r"labels \[1\] of 0..2 have no context row"):
        tp.apply(cfg, params, x_ctx, np.where(y_ctx == 1, 0, y_ctx), x_q)
    with pytest.raises(ValueError, match="n_classes must be given"):
        jax.jit(functools.partial(tp.apply, cfg))(params, x_ctx, y_ctx, x_q)
    with pytest.raises(ValueError, match="integer labels"):
        tp.apply(cfg, params, x_ctx, y_ctx.astype(np.float32), x_q)
    with pytest.raises(ValueError, match="classification-only"):
        tp.TabPFNConfig(max_num_classes=-1)
    with pytest.raises(ValueError, match="features_per_group=3"):
        tp.TabPFNConfig(features_per_group=3)
