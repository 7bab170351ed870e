"""Several local CPU processes as one JAX runtime (``causaljax.distributed``, gloo collectives):
the sharded draw and the data-parallel fine-tuning step equal the one-process results."""

import textwrap
import time

import jax
import numpy as np
import pandas as pd
import pytest
from multiprocess import run_processes
from scm_factory import make_scm, mixed_table, scm_for_table

from causaljax import distributed, sampler
from causaljax.finetune import loop
from causaljax.tfm.model import ModelConfig, init_params

MC = ModelConfig(width=16, depth=1, heads=2, max_features=8, max_classes=4)
# (k SCMs, n rows, hidden units, rng): split over SCMs when k is a multiple of the device
# count (each device draws whole SCMs: bit for bit), else over rows (each device solves its own
# rows: XLA may round a linear solve of fewer rows differently, within float32 ulps)
DRAWS = ((8, 40, 4, "key"), (3, 64, 0, "hash"))
SCM_SPLIT = {f"draw{i}" for i, (k, *_) in enumerate(DRAWS) if k % 8 == 0}  # 8 = k of stream

WORKER = textwrap.dedent("""
    import sys, time
    T0 = time.monotonic()
    def lap(what):
        print(what, round(time.monotonic() - T0, 1), flush=True)
    coordinator, n, pid, out, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
    from causaljax import distributed
    distributed.initialize(coordinator, n, pid, timeout_s=60)
    import jax, numpy as np
    from causaljax import sampler
    from causaljax.distributed import to_host
    from test_multiprocess import DRAWS, finetune_inputs, make_scm, mixed_table, scm_for_table
    from causaljax.finetune import loop
    assert jax.process_count() == n and jax.device_count() > jax.local_device_count()
    mesh = distributed.global_mesh()
    lap("initialized")
    results = {}
    for i, (k, rows, hidden, rng) in enumerate(DRAWS):
        scm = make_scm(seed=k, k=k, hidden=hidden, n_levels=(0, 2, 0, 0))
        draw = sampler.sample(scm, jax.random.key(7), rows, rng=rng)
        assert not draw.is_fully_addressable and len(draw.sharding.device_set) == jax.device_count()
        results[f"draw{i}"] = to_host(draw)
    lap("draws")
    scm = make_scm(seed=3, k=8, hidden=0, n_levels=(0, 3, 0, 0))
    for i, chunk in enumerate(sampler.stream(scm, jax.random.key(1), 40, 16)):
        results[f"stream{i}"] = to_host(chunk)
    lap("stream")
    if parts == "draws":
        np.savez(f"{out}/result.{pid}.npz", **results)
        print("OK", pid)
        sys.exit(0)
    df, table = mixed_table()
    mixed = scm_for_table(table, k=8)
    sampler.to_pandas(sampler.sample(mixed, jax.random.key(2), 24), table).to_parquet(
        f"{out}/pandas.{pid}.parquet")
    written = sampler.write(mixed, table, f"{out}/rows.parquet", 1001, chunk_rows=200,
                            key=jax.random.key(3))
    results["written"] = np.asarray(written)
    lap("pandas and write")
    state, batch, mc, fc = finetune_inputs()
    state, loss = loop.update_on_mesh(mesh, mc=mc, fc=fc)(*loop.place_on_mesh(state, batch, mesh))
    results["loss"] = to_host(loss)
    for j, leaf in enumerate(jax.tree.leaves(state.params)):
        results[f"param{j}"] = to_host(leaf)
    lap("step")
    np.savez(f"{out}/result.{pid}.npz", **results)
    print("OK", pid)
""")


def finetune_inputs():
    """(state, batch, mc, fc) of one fine-tuning step on a random tiny TFM: 64 rows."""
    from causaljax.finetune.loop import Batch, FinetuneConfig, init_state

    rng = np.random.default_rng(0)
    n, f = 64, MC.max_features
    fc = FinetuneConfig(steps=4, lr=1e-2)
    state = init_state(init_params(MC, jax.random.key(0)), fc)
    batch = Batch(rng.normal(size=(1, n, f)).astype(np.float32),
                  rng.integers(0, 3, (1, n)).astype(np.int32), (np.arange(n) < 40)[None],
                  (np.arange(f) < 6)[None], np.array([3], np.int32))
    return state, batch, MC, fc


def _reference_draws() -> dict:
    """The worker's draws in this (one-device) process."""
    ref = {}
    for i, (k, rows, hidden, rng) in enumerate(DRAWS):
        scm = make_scm(seed=k, k=k, hidden=hidden, n_levels=(0, 2, 0, 0))
        ref[f"draw{i}"] = np.asarray(sampler.sample(scm, jax.random.key(7), rows, rng=rng))
    scm = make_scm(seed=3, k=8, hidden=0, n_levels=(0, 3, 0, 0))
    for i, chunk in enumerate(sampler.stream(scm, jax.random.key(1), 40, 16)):
        ref[f"stream{i}"] = np.asarray(chunk)
    return ref


def _check_draws(tmp_path, n):
    """Every process gathered the one-process draws: bit for bit where whole SCMs are on a
    device, within float32 ulps where the rows are split."""
    ref = _reference_draws()
    for pid in range(n):
        got = dict(np.load(tmp_path / f"result.{pid}.npz"))
        for name in ref:
            if name in SCM_SPLIT or name.startswith("stream"):
                np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
            else:
                np.testing.assert_allclose(got[name], ref[name], rtol=1e-6, atol=1e-6,
                                           err_msg=name)


def test_four_processes_draw_like_one(tmp_path):
    finished = run_processes(WORKER, 4, tmp_path, args=("draws",))
    assert all(f"OK {i}" in f.stdout for i, f in enumerate(finished))
    _check_draws(tmp_path, 4)


def test_two_processes_draw_write_and_step_like_one(tmp_path):
    """2 processes x 2 devices: draws, stream, to_pandas, write (one part per process) and
    the data-parallel fine-tuning step."""
    assert jax.process_count() == 1
    n = 2
    finished = run_processes(WORKER, n, tmp_path, devices_per_process=2, args=("all",))
    assert all(f"OK {i}" in f.stdout for i, f in enumerate(finished))
    _check_draws(tmp_path, n)
    state, batch, mc, fc = finetune_inputs()
    state, loss = jax.jit(lambda s, b: loop.update(s, b, mc=mc, fc=fc))(state, batch)
    ref = {"loss": np.asarray(loss)} | {f"param{j}": np.asarray(leaf)
                                        for j, leaf in enumerate(jax.tree.leaves(state.params))}
    for pid in range(n):  # the step: float32 rounding of a gradient reduced over devices
        got = dict(np.load(tmp_path / f"result.{pid}.npz"))
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], rtol=2e-5, atol=2e-6, err_msg=name)
    _, table = mixed_table()
    one = sampler.to_pandas(sampler.sample(scm_for_table(table, k=8), jax.random.key(2), 24),
                            table)
    for pid in range(n):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"pandas.{pid}.parquet"), one)
    # write: each process its own part; the parts together are the one-process file
    parts = sorted(tmp_path.glob("rows.part-*-of-*.parquet"))
    assert [p.name for p in parts] == ["rows.part-00000-of-00002.parquet",
                                      "rows.part-00001-of-00002.parquet"]
    whole = tmp_path / "one.parquet"
    assert sampler.write(scm_for_table(table, k=8), table, whole, 1001, chunk_rows=200,
                         key=jax.random.key(3)) == 1001
    written = sum(int(np.load(tmp_path / f"result.{p}.npz")["written"]) for p in range(n))
    assert written == 1001
    merged = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    expected = pd.read_parquet(whole)
    key = list(expected.columns)
    pd.testing.assert_frame_equal(merged.sort_values(key, ignore_index=True),
                                  expected.sort_values(key, ignore_index=True))


@pytest.mark.parametrize("args, message", [
    (("127.0.0.1:1", 2, None), "give all of"),
    (("127.0.0.1:1", 2, 2), "process_id must be in 0..1"),
    (("127.0.0.1:1", 0, 0), "num_processes must be an int >= 1"),
    (("localhost", 2, 0), "HOST:PORT"),
])
def test_initialize_rejects_bad_arguments(args, message):
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.initialize(*args)


def test_a_coordinator_that_never_answers_fails_in_bounded_time(tmp_path):
    """Process 1 of 2 with nobody at the coordinator's port: a clear error within the wait."""
    script = textwrap.dedent("""
        import sys, time
        from causaljax import distributed
        t0 = time.monotonic()
        try:
            distributed.initialize(sys.argv[1], 2, 1, timeout_s=3)
        except distributed.DistributedError as e:
            print("ERROR", round(time.monotonic() - t0, 1), e)
    """)
    out = run_processes(script, 1, tmp_path, timeout_s=90)[0].stdout
    assert out.startswith("ERROR") and "no coordinator at 127.0.0.1:" in out
    assert float(out.split()[1]) < 10


def test_a_process_count_that_does_not_match_ends_in_bounded_time(tmp_path):
    """The coordinator expects 2 processes, only 1 starts: the process ends by itself with
    JAX's fatal DEADLINE_EXCEEDED within the timeout, never a hang."""
    script = textwrap.dedent("""
        import sys
        from causaljax import distributed
        distributed.initialize(sys.argv[1], 2, 0, timeout_s=3)
        print("joined")
    """)
    t0 = time.monotonic()
    (finished,) = run_processes(script, 1, tmp_path, timeout_s=90, check=False)
    assert finished.returncode not in (0, -9) and "joined" not in finished.stdout
    assert "DEADLINE_EXCEEDED" in finished.stderr
    assert time.monotonic() - t0 < 60


PRETRAIN = textwrap.dedent("""
    import sys
    coordinator, n, pid, out, *argv = sys.argv[1:]
    from scripts import load_script
    load_script("experiments", "pretrain_tfm").main(
        argv + ["--coordinator", coordinator, "--num-processes", n, "--process-id", pid])
    print("OK", pid)
""")
QUICK = ["--quick", "--eval-every", "1000", "--no-progress", "--ckpt-minutes", "1000"]


def _losses(run) -> list[float]:
    return pd.read_csv(run / "train_log.csv").loss.tolist()


def test_two_processes_pretrain_checkpoint_and_resume(tmp_path):
    """pretrain_tfm.py over 2 processes (data-parallel step, Orbax checkpoint written by both),
    resumed over 2 processes: the same losses as one process running all the steps."""
    from scripts import load_script

    run = tmp_path / "two"
    # the time budget stops the first launch after one step; the second resumes to all 4
    for name, more in (("first", ["--minutes", "0.001"]), ("resumed", ["--resume"])):
        finished = run_processes(PRETRAIN, 2, tmp_path / name, timeout_s=400,
                                 args=(*QUICK, "--steps", "4", "--out", str(run), *more))
        assert all(f"OK {i}" in f.stdout for i, f in enumerate(finished))
        assert "2 device(s) in 2 process(es)" in finished[0].stdout
    assert "resumed from" in finished[0].stdout and "at step 1" in finished[1].stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["1", "4"]
    one = tmp_path / "one"
    load_script("experiments", "pretrain_tfm").main(QUICK + ["--steps", "4", "--out", str(one)])
    assert len(_losses(run)) == 4  # the resumed log has steps 1..4, once each
    np.testing.assert_allclose(_losses(run), _losses(one), rtol=1e-4)
