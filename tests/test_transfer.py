"""Research question 4 (causaljax/eval/transfer.py, experiments/transfer.py): the transfer
tables against hand-computed values, and the script."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scripts import bad_input_exits_2, load_script

from causaljax.eval.transfer import effect_table, grid, paired_table, transfer_table

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--checkpoint", "random-tiny", "--sources", "pima", "--targets", "pima", "breast_w",
        "credit_g", "--n-train", "32", "--steps", "2", "--eval-every", "1", "--k-scms", "2",
        "--n-bootstrap", "2", "--families", "linear", "--max-test", "128", "--no-progress"]
DOMAINS = {"h1": "health", "h2": "health", "f1": "finance"}


def _script():
    return load_script("experiments", "transfer")


def _runs():
    """Two methods fine-tuned on h1, scored on h2 (same domain) and f1 (other domain)."""
    def run(method, auc, t_aucs):
        return dict(dataset="h1", fold=0, method=method, volume=0.0, test_auc=auc,
                    zero_shot_auc=0.70, target_names=["h2", "f1"], target_aucs=t_aucs,
                    target_zero_shot_aucs=[0.80, 0.60])
    return pd.DataFrame([run("real", 0.75, [0.78, 0.50]), run("causalmix", 0.74, [0.81, 0.61])])


def test_transfer_table_kinds_and_deltas():
    long = transfer_table(_runs(), DOMAINS)
    real = long[long.method == "real"].set_index("target")
    assert real.kind.to_dict() == {"h1": "source", "h2": "same domain", "f1": "other domain"}
    np.testing.assert_allclose(real.delta.loc[["h1", "h2", "f1"]], [0.05, -0.02, -0.10])
    eff = effect_table(long, n_boot=50).set_index(["method", "kind"])
    assert eff.loc[("real", "other domain"), "harmed"] == 1.0
    assert eff.loc[("causalmix", "other domain"), "harmed"] == 0.0
    np.testing.assert_allclose(eff.loc[("causalmix", "same domain"), "delta_median"], 0.01)


def test_paired_table_against_real():
    paired = paired_table(transfer_table(_runs(), DOMAINS)).set_index("kind")
    assert paired.loc["other domain", "win_rate"] == 1.0
    assert paired.loc["source", "win_rate"] == 0.0
    np.testing.assert_allclose(paired.loc["same domain", "diff_median"], 0.03)


def test_grid_leaves_the_source_out_of_its_targets():
    configs = grid(["a", "b"], 2, ["real", "causalmix"], 2.0, ["a", "b", "c"], base={})
    assert len(configs) == 8
    assert {c["targets"] for c in configs if c["dataset"] == "a"} == {"b,c"}
    assert {c["volume"] for c in configs if c["method"] == "real"} == {0.0}
    assert {c["volume"] for c in configs if c["method"] == "causalmix"} == {2.0}


def test_script_runs_writes_and_resumes(tmp_path):
    out = tmp_path / "out"
    mod = _script()
    assert mod.main(TINY + ["--out", str(out)]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df.method) == ["causalmix", "real"] and df.run_id.is_unique
    long = pd.read_csv(out / "transfer.csv")
    assert len(long) == 2 * 3  # per run: the source and two targets
    assert set(long.kind) == {"source", "same domain", "other domain"}
    assert long.auc.between(0, 1).all() and long.zero_shot_auc.between(0, 1).all()
    # the pretrained weights' target scores do not depend on the method fine-tuned
    zs = long[long.kind != "source"].groupby("target").zero_shot_auc.nunique()
    assert (zs == 1).all()
    assert "| real | other domain |" in (out / "summary.md").read_text()
    runs = sorted((out / "runs").glob("*.parquet"))
    assert mod.main(TINY + ["--out", str(out)]) == 0  # resumes: nothing left, nothing twice
    assert sorted((out / "runs").glob("*.parquet")) == runs
    # lr 0 keeps the pretrained weights: every target's delta is exactly zero
    assert mod.main(TINY + ["--lr", "0", "--out", str(tmp_path / "frozen")]) == 0
    frozen = pd.read_csv(tmp_path / "frozen" / "transfer.csv")
    assert (frozen.delta == 0).all() and (frozen.auc == frozen.zero_shot_auc).all()


@pytest.mark.parametrize("args, message", [
    (["--methods", "zeroshot"], "does not fine-tune"), (["--methods", "nope"], "unknown method"),
    (["--volume", "-1"], "--volume"), (["--sources", "nope"], "unknown dataset"),
    (["--sources", "pima", "--targets", "pima"], "besides the source")])
def test_bad_input_exits_2(tmp_path, capsys, args, message):
    err = bad_input_exits_2("experiments", "transfer", TINY + args, tmp_path / "out", capsys)
    assert message in err
