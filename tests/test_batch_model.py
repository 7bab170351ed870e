"""The fine-tuning loop, the batched runs and the study scripts on the ported TFMs.

``causaljax.tfm.batch_model`` lets ``finetune.loop`` drive TabICL, TabPFN v2 and Mitra
(``Ported``) as it drives the row-token model. Checked here against the ports' own ``apply``
(itself checked against the reference packages in test_tabicl_port.py / test_tabpfn_port.py /
test_mitra_port.py): the loop's logits
and loss, fine-tuning one by one and batched, and ``scale_volume.py --model``. The checkpoint
files are written by the reference packages' own torch modules with seeded random weights
(Mitra: skipped without autogluon.tabular[mitra]).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scripts import load_script

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[dev]')")
pytest.importorskip("tabicl", reason="tabicl not installed (pip install -e '.[dev]')")
pytest.importorskip("tabpfn", reason="tabpfn not installed (pip install -e '.[dev]')")
from tabicl._model.tabicl import TabICL as TorchTabICL  # noqa: E402
from tabpfn.architectures import tabpfn_v2  # noqa: E402

from causaljax import data  # noqa: E402
from causaljax.eval import cli  # noqa: E402
from causaljax.finetune.batched import finetune_runs  # noqa: E402
from causaljax.finetune.loop import (  # noqa: E402
    Batch,
    FinetuneConfig,
    finetune,
    loss_fn,
    make_task,
    zero_shot,
)
from causaljax.finetune.sources import PoolSource  # noqa: E402
from causaljax.tfm import batch_model, mitra, tabicl, tabpfn  # noqa: E402

TABICL = {"max_classes": 4, "embed_dim": 16, "col_num_blocks": 1, "col_nhead": 2,
          "col_num_inds": 4, "row_num_blocks": 1, "row_nhead": 2, "row_num_cls": 2,
          "icl_num_blocks": 1, "icl_nhead": 2}
TABPFN = {"emsize": 16, "nlayers": 1, "nhead": 2, "features_per_group": 2,
          "max_num_classes": 4, "seed": 0}
MITRA = {"dim": 16, "dim_output": 4, "n_layers": 1, "n_heads": 2}
MODULES = {"tabicl": tabicl, "tabpfn": tabpfn, "mitra": mitra}


def _randomize(module, seed: int):
    """Every parameter seeded random (the packages zero-initialise some projections)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if k.endswith("rope.freqs"):
                continue
            if v.ndim >= 2:  # weights: ~ unit-variance outputs
                v.copy_(torch.randn_like(v) * 0.7 / v.shape[-1] ** 0.5)
            elif ("norm" in k or "ln" in k) and k.endswith("weight"):
                v.copy_(1.0 + 0.2 * torch.randn_like(v))
            else:  # biases, scales
                v.copy_(0.2 * torch.randn_like(v))
    return module


def _checkpoint(kind: str, folder):
    """The checkpoint as published: a .ckpt file (TabICL, TabPFN v2), a folder (Mitra)."""
    path = folder / "model.ckpt"
    if kind == "tabicl":
        m = _randomize(TorchTabICL(**TABICL), 0)
        torch.save({"config": TABICL, "state_dict": m.state_dict()}, path)
    elif kind == "tabpfn":
        cfg, _ = tabpfn_v2.parse_config(TABPFN)
        m = _randomize(tabpfn_v2.get_architecture(cfg), 0)
        torch.save({"state_dict": m.state_dict(), "config": TABPFN,
                    "architecture_name": "tabpfn_v2"}, path)
    else:
        tab2d = pytest.importorskip("autogluon.tabular.models.mitra._internal.models.tab2d",
                                    reason="autogluon.tabular[mitra] not installed")
        path = folder / "mitra-classifier"
        _randomize(tab2d.Tab2D(**MITRA, task="CLASSIFICATION", use_pretrained_weights=False,
                               path_to_weights="", device="cpu"), 0).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """checkpoints(kind): the checkpoint path of a port, written on first use."""
    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = _checkpoint(kind, tmp_path_factory.mktemp(kind))
        return made[kind]

    return get


@pytest.fixture(params=batch_model.PORTS)
def ported(request, checkpoints):
    """(kind, params, Ported spec, model id) loaded as the study scripts load it."""
    path = checkpoints(request.param)
    params, mc, model_id = cli.load_model(str(path), request.param)
    assert model_id.startswith(f"{request.param}:{path.name}@")
    return request.param, params, mc, model_id


def _reference_logits(kind, mc, params, x_ctx, y_ctx, x_q, n_classes):
    return np.asarray(MODULES[kind].apply(mc.config, params, x_ctx, y_ctx, x_q,
                                          n_classes=n_classes))


def test_the_ports_are_the_ones_the_scripts_offer():
    assert cli.PORTS == batch_model.PORTS


def test_loop_logits_and_loss_are_the_ports(ported):
    """batch_logits: the port's logits on the query rows (one program for every class count:
    the full head, classes >= n_classes masked), zeros on the context rows; loss_fn: the mean
    cross-entropy of the query rows of those logits."""
    kind, params, mc, _ = ported
    assert isinstance(mc, batch_model.Ported) and mc.kind == kind and mc.max_classes == 4
    rng = np.random.default_rng(1)
    n_ctx, n_q, F, C = 20, 7, 5, 3
    x = rng.normal(size=(n_ctx + n_q, F)).astype(np.float32)
    y = np.concatenate([np.arange(n_ctx) % C, rng.integers(0, C, n_q)]).astype(np.int32)
    ctx = np.arange(n_ctx + n_q) < n_ctx
    logits = np.asarray(batch_model.batch_logits(
        mc, params, jnp.asarray(x[None]), jnp.asarray(y[None]), jnp.asarray(ctx[None]),
        jnp.ones((1, F), bool), jnp.asarray([C]), n_ctx=n_ctx))[0]
    ref = _reference_logits(kind, mc, params, x[:n_ctx], y[:n_ctx], x[n_ctx:], C)
    assert logits.shape == (n_ctx + n_q, 4)
    np.testing.assert_allclose(logits[n_ctx:, :C], ref, atol=1e-5)
    assert np.ptp(ref, axis=0).max() > 1e-3  # the query rows' logits differ: not a trivial pass
    assert (logits[n_ctx:, C:] == -1e9).all() and (logits[:n_ctx, :C] == 0).all()
    batch = Batch(*(jnp.asarray(a) for a in (x[None], y[None], ctx[None], np.ones((1, F), bool),
                                              np.asarray([C]))))
    loss = float(jax.jit(loss_fn, static_argnums=(1, 3))(params, mc, batch, n_ctx))
    expected = optax.softmax_cross_entropy_with_integer_labels(ref, y[n_ctx:]).mean()
    assert loss == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="n_ctx"):
        batch_model.batch_logits(mc, params, batch.x, batch.y, batch.ctx, batch.feat,
                                 batch.n_classes)


def test_gradient_steps_lower_the_loss_on_each_port(ported):
    """The loop's loss, differentiated through the port: 15 Adam steps on one small batch of
    a learnable task (the label is the sign of feature 0) lower it by a clear margin."""
    _, params, mc, _ = ported
    rng = np.random.default_rng(2)
    n_ctx, n_q, F = 24, 24, 3
    x = rng.normal(size=(n_ctx + n_q, F)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    batch = Batch(*(jnp.asarray(a) for a in (x[None], y[None], (np.arange(n_ctx + n_q) < n_ctx)[None],
                                              np.ones((1, F), bool), np.asarray([2]))))
    grad = jax.jit(jax.value_and_grad(loss_fn), static_argnums=(1, 3))
    opt = optax.adam(3e-3)
    state = opt.init(params)
    losses = []
    for _ in range(15):
        loss, g = grad(params, mc, batch, n_ctx)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def test_finetune_one_by_one_and_batched_on_a_port(ported):
    """The loop fine-tunes a port on the table's own features (no padding), with in-step
    synthetic rows; zero-shot scores are the step-0 checkpoint's; the batched program gives
    the runs of the loop (TabPFN; the batched program is model-agnostic, and TabICL's step
    compiles slowly on a CPU)."""
    kind, params, mc, _ = ported
    table = data.load("iris")  # 4 features, 3 classes
    splits = data.low_data_splits(table, 32, 32, 2 if kind == "tabpfn" else 1, 0)
    tasks = [make_task(table, s, mc, max_test=256) for s in splits]
    assert tasks[0].x_train.shape == (32, 4) and bool(tasks[0].feat.all())
    fc = FinetuneConfig(steps=2, eval_every=1, lr=3e-3, volume=1.0, min_checkpoints=2)
    sources = [PoolSource(jnp.asarray(table.values[np.asarray(s.train)])) for s in splits]
    one = [finetune(params, mc, t, fc, source=src) for t, src in zip(tasks, sources)]
    for res, task in zip(one, tasks):
        assert res.steps == 2 and [h["step"] for h in res.history] == [0, 1, 2]
        assert all(np.isfinite(h["train_loss"]) for h in res.history[1:])
        assert 0 <= res.test_auc <= 1 and res.nan_steps == 0
        assert zero_shot(params, mc, task)["test_auc"] == pytest.approx(
            res.history[0]["test_auc"], abs=1e-6)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), one[0].params, params)
    assert one[0].best_step == 0 or max(jax.tree.leaves(moved)) > 0
    if kind != "tabpfn":
        return
    batched = finetune_runs(params, mc, tasks, fc, sources=sources)
    for a, b in zip(one, batched):
        assert a.best_step == b.best_step and a.steps == b.steps
        for ha, hb in zip(a.history, b.history):
            assert ha["val_auc"] == pytest.approx(hb["val_auc"], abs=2e-3)
            assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-3, nan_ok=True)


def test_scale_volume_runs_on_a_port_and_resumes(checkpoints, tmp_path, capsys):
    """scale_volume.py --model: the study on a port (TabPFN; the script's model handling is
    one code path for both ports), resumed without rerunning anything."""
    out = tmp_path / "out"
    args = ["--model", "tabpfn", "--checkpoint", str(checkpoints("tabpfn")), "--datasets", "iris", "--folds", "1",
            "--n-train", "32", "--steps", "2", "--eval-every", "1", "--k-scms", "2",
            "--n-bootstrap", "2", "--families", "linear", "--max-test", "128", "--volumes", "0,1",
            "--methods", "real,causalmix", "--no-progress", "--out", str(out)]
    script = load_script("experiments", "scale_volume")
    assert script.main(args) == 0
    import pandas as pd

    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df.method) == ["causalmix", "real", "zeroshot"]
    assert df.test_auc.between(0, 1).all()
    capsys.readouterr()
    assert script.main(args) == 0  # resumed: nothing left to run
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ran"] == 0


@pytest.mark.parametrize("case", ["missing_file", "missing_mitra", "tabebm", "row_token_file"])
def test_bad_model_input_exits_2_and_writes_nothing(tmp_path, case, capsys):
    out = tmp_path / "out"
    base = ["--datasets", "iris", "--no-progress", "--out", str(out)]
    msgpack = tmp_path / "weights.msgpack"
    msgpack.write_bytes(b"\x80not a torch checkpoint")
    args = {"missing_file": ["--model", "tabicl", "--checkpoint", str(tmp_path / "no.ckpt")],
            "missing_mitra": ["--model", "mitra", "--checkpoint", str(tmp_path / "no-folder")],
            "tabebm": ["--model", "tabpfn", "--checkpoint", "x.ckpt", "--methods", "tabebm"],
            "row_token_file": ["--model", "tabpfn", "--checkpoint", str(msgpack)]}[case]
    assert load_script("experiments", "scale_volume").main(base + args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err) < 2000
    assert {"missing_file": "not found; expected a tabicl-classifier-*.ckpt file from "
                            "https://huggingface.co/jingang/TabICL",
            "missing_mitra": "from https://huggingface.co/autogluon/mitra-classifier",
            "tabebm": "row-token model only", "row_token_file": "tabpfn"}[case] in err
    if case.startswith("missing"):  # one line: which file, where its authors publish it
        assert err.strip().count("\n") == 0
    assert not out.exists() or not list(out.rglob("*.parquet"))


def test_zero_shot_on_a_port_and_a_missing_checkpoint(checkpoints, tmp_path, capsys):
    """zero_shot.py --model: the port behind TFMClassifier; a missing file exits 2."""
    script = load_script("experiments", "zero_shot")
    out = tmp_path / "zs.csv"
    base = ["--datasets", "iris", "--n-train", "32", "--folds", "1", "--n-estimators", "1",
            "--no-baselines", "--no-progress", "--out", str(out)]
    df = script.main(base + ["--model", "tabpfn", "--checkpoint", str(checkpoints("tabpfn"))])
    assert list(df.model) == ["tabpfn"] and df.roc_auc.between(0, 1).all()
    assert "tabpfn" in (tmp_path / "zs.md").read_text().splitlines()[0]
    capsys.readouterr()
    assert script.main(base + ["--model", "mitra", "--checkpoint", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "huggingface.co/autogluon/mitra-classifier" in err and err.strip().count("\n") == 0
