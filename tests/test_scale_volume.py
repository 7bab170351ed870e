"""Smoke tests of experiments/scale_volume.py (bench_finetune_step.py: in test_benchmarks.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--checkpoint", "random-tiny", "--datasets", "pima", "--folds", "1", "--n-train", "32",
        "--steps", "2", "--eval-every", "1", "--k-scms", "2", "--n-bootstrap", "2",
        "--families", "linear", "--max-test", "256", "--no-progress"]


def _script():
    return load_script("experiments", "scale_volume")


def test_smoke_runs_writes_and_resumes(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "experiments" / "scale_volume.py"), *TINY,
           "--volumes", "0,1", "--methods", "real,causalmix", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted((out / "runs").glob("*.parquet"))
    assert len(runs) == 3  # zeroshot, real, causalmix@1
    df = pd.read_parquet(out / "results.parquet")
    for col in ("dataset", "fold", "method", "volume", "n_train", "zero_shot_auc", "test_auc",
                "val_auc", "val_test_gap", "steps", "seconds", "run_id"):
        assert col in df.columns, col
    assert set(df.method) == {"zeroshot", "real", "causalmix"}
    assert df.test_auc.between(0, 1).all() and df.run_id.is_unique
    assert "| causalmix | 1 |" in (out / "summary.md").read_text()
    tuned = df[df.method != "zeroshot"]  # 3 checkpoints each (steps 0, 1, 2): a gap each
    assert tuned.val_test_gap.between(0, 2).all() and (tuned.checkpoints == 3).all()
    assert df[df.method == "zeroshot"].val_test_gap.isna().all()
    # one timing line per stage in the study's log (and on stderr); no bars off a terminal
    log = (out / "log.txt").read_text()
    for stage in ("stage inputs:", "stage runs:", "stage outputs:"):
        assert log.count(stage) == 1 and stage in res.stderr, stage
    assert "3 run(s); fitting generators" in log and "%|" not in res.stderr
    assert (out / "improvement_vs_volume.png").stat().st_size > 0
    assert (out / "gap_vs_volume.png").stat().st_size > 0
    # rerun: nothing left to do, nothing duplicated
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["ran"] == 0
    assert (out / "log.txt").read_text().count("stage runs: ") == 2  # appended
    assert sorted((out / "runs").glob("*.parquet")) == runs
    # --report-only on a larger grid: the outputs from the runs stored so far, no new run
    (out / "summary.md").unlink()
    res = subprocess.run(cmd[:-6] + ["--volumes", "0,1,4", "--methods", "real,causalmix",
                                     "--out", str(out), "--report-only"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert (report["ran"], report["stored"], report["grid"]) == (0, 3, 4)
    assert sorted((out / "runs").glob("*.parquet")) == runs
    assert "| causalmix | 1 |" in (out / "summary.md").read_text()


def _csv(tmp_path, n=80, classes=2):
    df = pd.DataFrame({"a": range(n), "b": [i % 7 for i in range(n)],
                       "label": [i % classes for i in range(n)]})
    path = tmp_path / "mine.csv"
    df.to_csv(path, index=False)
    return str(path)


def _csv_header(tmp_path, header: str, n=80):
    """A CSV written by hand with this header line (pandas would rename a duplicate)."""
    k = header.count(",") + 1
    path = tmp_path / f"dup_{abs(hash(header))}.csv"
    path.write_text(header + "\n" + "".join(
        ",".join(str((i * (j + 3)) % 11) for j in range(k - 1)) + f",{i % 2}\n"
        for i in range(n)))
    return str(path)


@pytest.mark.parametrize("case", ["unknown_target", "one_class", "too_few_rows",
                                  "negative_volume", "unknown_method", "unknown_dataset",
                                  "bad_shard", "duplicate_feature", "duplicate_target",
                                  "min_checkpoints"])
def test_bad_input_exits_2_and_keeps_out(tmp_path, case, capsys):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    keep = out / "runs" / "previous.parquet"
    keep.write_bytes(b"earlier results")
    base = ["--checkpoint", "random-tiny", "--out", str(out), "--no-progress"]
    args = {
        "unknown_target": ["--csv", _csv(tmp_path), "--target", "nope"],
        "one_class": ["--csv", _csv(tmp_path, classes=1), "--target", "label"],
        "too_few_rows": ["--csv", _csv(tmp_path, n=40), "--target", "label", "--n-train", "64"],
        "negative_volume": ["--datasets", "pima", "--volumes", "0,-1"],
        "unknown_method": ["--datasets", "pima", "--methods", "real,gan9000"],
        "unknown_dataset": ["--datasets", "no_such_data"],
        "bad_shard": ["--datasets", "pima", "--shard", "2/2"],
        "duplicate_feature": ["--csv", _csv_header(tmp_path, "a,a,b,y"), "--target", "y"],
        "duplicate_target": ["--csv", _csv_header(tmp_path, "a,b,y,y"), "--target", "y"],
        "min_checkpoints": ["--datasets", "pima", "--min-checkpoints", "1"],
    }[case]
    assert _script().main(base + args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err) < 2000
    if case.startswith("duplicate"):
        assert len(err.strip().splitlines()) == 1
        assert "duplicate column names ['{}']".format("a" if case == "duplicate_feature"
                                                      else "y") in err
    assert sorted(p.name for p in out.rglob("*")) == ["previous.parquet", "runs"]
    assert keep.read_bytes() == b"earlier results"


def test_min_checkpoints_default_is_the_finetune_default():
    from causaljax.eval.cli import MIN_CHECKPOINTS
    from causaljax.finetune.loop import FinetuneConfig

    assert MIN_CHECKPOINTS == FinetuneConfig.min_checkpoints


# 2 folds of one dataset: 2 (dataset, fold) groups of 3 runs (zeroshot, real, causalmix@1)
TWO_FOLDS = [a if a != "1" or TINY[i - 1] != "--folds" else "2" for i, a in enumerate(TINY)] + [
    "--volumes", "0,1", "--methods", "real,causalmix"]


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory) -> pd.DataFrame:
    """The TWO_FOLDS study run by one process, in this one: results.parquet by run id."""
    out = tmp_path_factory.mktemp("one")
    assert _script().main(TWO_FOLDS + ["--out", str(out)]) == 0
    return pd.read_parquet(out / "results.parquet").set_index("run_id").sort_index()


def test_vmap_folds_gives_the_runs_of_one_by_one(tmp_path, one_process_runs):
    """--vmap-folds runs the folds of a configuration as one program: same runs, same scores."""
    one = one_process_runs
    assert _script().main(TWO_FOLDS + ["--vmap-folds", "--out", str(tmp_path / "vmap")]) == 0
    vm = pd.read_parquet(tmp_path / "vmap" / "results.parquet").set_index("run_id").sort_index()
    assert list(one.index) == list(vm.index) and len(one) == 6  # 2 folds x 3 runs
    assert (one.best_step == vm.best_step).all() and (one.steps == vm.steps).all()
    for col in ("test_auc", "val_auc", "zero_shot_auc"):
        assert (one[col] - vm[col]).abs().max() < 2e-3, col


def test_two_shards_at_once_one_killed_and_rerun_give_the_runs_of_one(tmp_path,
                                                                         one_process_runs):
    """--shard 0/2 and 1/2 run at the same time into one --out; shard 1 is SIGKILLed once the
    first run is stored, then rerun: the store ends with exactly the one-process runs (none
    lost, none twice, same scores), and results.parquet holds all of them."""
    out = tmp_path / "shared"

    def command(i):
        return [sys.executable, str(ROOT / "experiments" / "scale_volume.py"), *TWO_FOLDS,
                "--shard", f"{i}/2", "--out", str(out)]

    logs = [open(tmp_path / f"shard{i}.log", "w+") for i in range(2)]
    procs = [subprocess.Popen(command(i), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True) for i, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + 300
        while not list((out / "runs").glob("*.parquet")) and procs[1].poll() is None:
            assert time.monotonic() < deadline, "no run stored within 300 s"
            time.sleep(0.1)
        os.killpg(procs[1].pid, signal.SIGKILL)
        assert procs[1].wait(timeout=30) == -signal.SIGKILL  # killed before it finished
        assert procs[0].wait(timeout=300) == 0, (logs[0].seek(0), logs[0].read())[1][-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()
    stored = len(list((out / "runs").glob("*.parquet")))
    assert 3 <= stored < 6  # shard 0's three, shard 1's before the kill
    res = subprocess.run(command(1), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["ran"] == 6 - stored  # only the rest
    assert len(list((out / "runs").glob("*.parquet"))) == 6
    both = pd.read_parquet(out / "results.parquet").set_index("run_id").sort_index()
    assert list(both.index) == list(one_process_runs.index)
    for col in ("test_auc", "val_auc", "zero_shot_auc", "best_step", "steps"):
        assert (both[col] == one_process_runs[col]).all(), col
    assert not list(out.glob(".*.tmp*"))  # no temp file of an output left behind
