"""Pretrain the in-context TFM on the random-SCM prior (causaljax.prior).

Commands:
    python experiments/pretrain_tfm.py --quick --out runs/pretrain_quick     # ~2-4 min on CPU
    nohup python experiments/pretrain_tfm.py --out runs/pretrain --minutes 100 --steps 6000 &
    python experiments/pretrain_tfm.py --resume --out runs/pretrain --minutes 30   # continue
    python experiments/pretrain_tfm.py --export runs/pretrain   # -> causaljax/tfm/weights/default.*
    python experiments/pretrain_tfm.py --average default runs/w2.msgpack --dest runs/avg.msgpack
    # warm start: a new schedule (fresh optimizer) from the shipped weights
    python experiments/pretrain_tfm.py --init-from default --out runs/pretrain2 --seed 1 \
        --lr 5e-4 --steps 5000 --minutes 110

Output in --out: run.json (configs; a resumed run reuses it), checkpoints/<step>/ (Orbax: the
whole train state + step, wall time, device; the last two kept) every --ckpt-minutes,
train_log.csv, val_log.csv (held-out prior loss), loss.png. The learning-rate schedule
(warmup + cosine) runs over --steps; --minutes stops earlier if the budget runs out. Float32
on CPU, bfloat16 compute on GPU.
Resume continues from the latest checkpoint with the same step count and data (each step's
prior batch is drawn from fold_in(key, step)). --init-from starts a new run (step 0, new
schedule, fresh AdamW moments) from the parameters of a weights file ("default" = the shipped
ones); the exported sidecar then counts the earlier steps and wall time too. Use a new --seed so
the warm-started run draws prior batches the first run did not see.

Several devices or processes: with more than one device (``jax.device_count()``) every step
runs data-parallel over all of them (``train_step_on_mesh``: parameters replicated, the step's
prior datasets split over the devices; the batch is rounded up to a multiple of the device
count). Over several processes (hosts), start the same command in each with
``--distributed`` (cluster detected: SLURM, Open MPI, TPU pods) or ``--coordinator HOST:PORT
--num-processes N --process-id I``; every process saves and restores the Orbax checkpoints
together, process 0 alone writes the logs, run.json and the plot.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causaljax import distributed, progress
from causaljax.prior import PriorConfig
from causaljax.tfm import checkpoint as ckpt_lib
from causaljax.tfm.model import ModelConfig, n_params
from causaljax.tfm.pretrain import (
    TrainConfig,
    bucket_of,
    init_state,
    optimizer,
    prior_for,
    restore_run_checkpoint,
    save_run_checkpoint,
    train_step,
    train_step_on_mesh,
    validation_batches,
    validation_loss,
)


def configs(args):
    if args.quick:
        mc = ModelConfig(width=64, depth=2, heads=2)
        tc = TrainConfig(total_steps=args.steps or 150, lr=2e-3, warmup=20, tokens_per_step=1024,
                         row_buckets=(64,), seed=args.seed)
        pc = PriorConfig(n_nodes=16, max_prior_features=12, pool=256)
    else:
        mc = ModelConfig(width=args.width, depth=args.depth, heads=args.heads)
        tc = TrainConfig(total_steps=args.steps, lr=args.lr, warmup=min(300, args.steps // 10),
                         tokens_per_step=args.tokens, row_buckets=tuple(args.row_buckets),
                         seed=args.seed)
        pc = PriorConfig(n_trees=args.trees, tree_prob=args.tree_prob, warp=args.warp)
    return mc, tc, pc


def truncate_csv(path: str, max_step: int) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= max_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(keep)


def append_csv(path: str, header: list, row: list) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(header)
        w.writerow(row)


def plot(out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    if not os.path.exists(os.path.join(out, "train_log.csv")):
        return
    tr = pd.read_csv(os.path.join(out, "train_log.csv"))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(tr.step, tr.loss.rolling(50, min_periods=1).mean(), label="train (50-step mean)")
    vpath = os.path.join(out, "val_log.csv")
    if os.path.exists(vpath):
        va = pd.read_csv(vpath)
        ax.plot(va.step, va.val_loss, "o-", label="held-out prior")
    ax.set_xlabel("step")
    ax.set_ylabel("query cross-entropy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)


def save_checkpoint(state, out: str, wall: float) -> str:
    return save_run_checkpoint(state, out, {
        "step": int(distributed.local_copy(state.step)), "wall_time_s": wall,
        "device": jax.devices()[0].device_kind, "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")})


def load_run(out: str):
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    tc = run["train"]
    tc["row_buckets"] = tuple(tc["row_buckets"])
    # runs written before these options drew threefry uniforms and sampled noise pools
    prior = {"rng": "key", "noise_pools": "sampled", **run["prior"]}
    return ModelConfig(**run["model"]), TrainConfig(**tc), PriorConfig(**prior)


def export(run_dir: str, dest: str) -> None:
    mc, tc, _ = load_run(run_dir)
    try:
        state, info = restore_run_checkpoint(init_state(mc, tc), run_dir)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    with open(os.path.join(run_dir, "run.json")) as f:
        before = json.load(f).get("init_from", {"train_steps": 0, "wall_time_s": 0.0})
    meta = ckpt_lib.save_weights(
        state.params, mc, dest, train_steps=before["train_steps"] + info["step"],
        planned_steps=before["train_steps"] + tc.total_steps,
        wall_time_s=round(before["wall_time_s"] + info["wall_time_s"], 1), device=info["device"],
        source=f"{os.path.basename(os.path.normpath(run_dir))} step {info['step']}",
        train_config=tc.to_dict(), warm_start=before)
    print(json.dumps({k: v for k, v in meta.items() if k != "train_config"}, indent=2))


def average(sources: list[str], dest: str) -> None:
    """Parameter mean of weights files of one model ("checkpoint averaging": a run and its
    continuation, or sibling runs from one start). The sidecar counts the longest source's steps
    and wall time and lists every source with its own wall time and warm start, so the compute
    of sibling branches (wall time minus their common start's) can be added up from it."""
    loaded = [ckpt_lib.load_weights(source) for source in sources]
    mc = loaded[0][1]
    if any(cfg != mc for _, cfg, _ in loaded):
        raise SystemExit("--average: the weights files hold different model configs")
    mean = jax.tree.map(lambda *leaves: sum(leaves) / len(leaves), *[p for p, _, _ in loaded])
    metas = [meta for _, _, meta in loaded]
    longest = max(metas, key=lambda m: m.get("train_steps", 0))
    meta = ckpt_lib.save_weights(
        mean, mc, dest, train_steps=longest.get("train_steps", 0),
        wall_time_s=longest.get("wall_time_s", 0.0), device=longest.get("device", "unknown"),
        averaged=[{"weights": str(source), "sha256": m["sha256"],
                   "train_steps": m.get("train_steps", 0),
                   "wall_time_s": m.get("wall_time_s", 0.0),
                   "warm_start_sha256": m.get("warm_start", {}).get("sha256")}
                  for source, m in zip(sources, metas)])
    print(json.dumps(meta, indent=2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="runs/pretrain")
    ap.add_argument("--quick", action="store_true", help="tiny model and prior, a few CPU minutes")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    ap.add_argument("--export", metavar="RUN_DIR", help="export RUN_DIR's latest checkpoint")
    ap.add_argument("--average", metavar="WEIGHTS", nargs="+",
                    help="write the parameter mean of these weights files to --dest")
    ap.add_argument("--init-from", metavar="WEIGHTS",
                    help="warm start: a new run from these weights ('default' = shipped)")
    ap.add_argument("--dest", default=str(ckpt_lib.WEIGHTS_DIR / "default.msgpack"))
    ap.add_argument("--steps", type=int, default=0, help="schedule length (default 6000; quick 150)")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    ap.add_argument("--ckpt-minutes", type=float, default=2.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tokens", type=int, default=3072, help="rows per step (batch x rows)")
    ap.add_argument("--row-buckets", type=int, nargs="+", default=[128, 128, 256, 256, 512],
                    help="rows per prior dataset, one drawn per step (context + queries)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", type=int, default=0,
                    help="prior: random regression trees per node (0: none, the prior before "
                         "session 20)")
    ap.add_argument("--tree-prob", type=float, default=0.5,
                    help="prior: fraction of the datasets whose mechanisms use the trees")
    ap.add_argument("--warp", type=float, default=0.0,
                    help="prior: most fraction of numeric features given a random monotone warp")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it goes to stderr, and only when it is a terminal)")
    ap.add_argument("--distributed", action="store_true",
                    help="join the other processes of a cluster job (jax.distributed, detected)")
    ap.add_argument("--coordinator", help="HOST:PORT of process 0 (with the next two)")
    ap.add_argument("--num-processes", type=int)
    ap.add_argument("--process-id", type=int)
    args = ap.parse_args(argv)
    args.out = os.path.abspath(args.out)
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        try:  # before anything else starts JAX
            distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        except distributed.DistributedError as e:
            raise SystemExit(f"pretrain_tfm.py: {e}") from None
    lead = jax.process_index() == 0  # writes the logs, run.json and the plot

    if args.export:
        export(args.export, args.dest)
        return
    if args.average:
        average(args.average, args.dest)
        return
    if not args.quick and not args.steps:
        args.steps = 6000
    os.makedirs(args.out, exist_ok=True)
    run_json = os.path.join(args.out, "run.json")
    init_params = init_from = None
    if args.resume:
        mc, tc, pc = load_run(args.out)
    else:
        mc, tc, pc = configs(args)
        if args.init_from:
            init_params, mc, meta = ckpt_lib.load_weights(args.init_from)
            init_from = {"weights": str(args.init_from), "sha256": meta["sha256"],
                         "train_steps": meta.get("train_steps", 0),
                         "wall_time_s": meta.get("wall_time_s", 0.0)}
        if lead:
            with open(run_json, "w") as f:
                json.dump({"model": mc.to_dict(), "train": tc.to_dict(),
                           "prior": dataclasses.asdict(pc), "argv": sys.argv[1:],
                           **({"init_from": init_from} if init_from else {})}, f, indent=2)
            for name in ("train_log.csv", "val_log.csv"):
                if os.path.exists(os.path.join(args.out, name)):
                    os.remove(os.path.join(args.out, name))
    dtype = jnp.bfloat16 if jax.default_backend() == "gpu" else jnp.float32
    state = init_state(mc, tc)
    if init_params is not None:
        state = state._replace(params=init_params, opt_state=optimizer(tc).init(init_params))
    mesh = distributed.global_mesh() if jax.device_count() > 1 else None
    if mesh is not None:  # data-parallel: the state replicated on every device
        state = distributed.replicate(state, mesh)
    wall = 0.0
    if args.resume:
        try:
            state, info = restore_run_checkpoint(state, args.out)
        except FileNotFoundError as e:
            raise SystemExit(f"--resume: {e}") from None
        wall, step = info["wall_time_s"], int(info["step"])
        for name in ("train_log.csv", "val_log.csv"):
            if lead:
                truncate_csv(os.path.join(args.out, name), step)
        print(f"resumed from {args.out} at step {step}", flush=True)
        if step >= tc.total_steps:
            print(f"the run already reached its {tc.total_steps} steps", flush=True)
            return
    print(f"model {n_params(state.params):,} parameters, backend {jax.default_backend()}, "
          f"dtype {jnp.dtype(dtype).name}, steps {tc.total_steps}, {jax.device_count()} "
          f"device(s) in {jax.process_count()} process(es)", flush=True)

    key = jax.random.key(tc.seed)
    val_pc = prior_for(256 if not args.quick else 128, pc)
    val = validation_batches(val_pc, n_batches=4, batch_size=16 if not args.quick else 8)
    budget = args.minutes * 60 if args.minutes else float("inf")
    t_start, last_ckpt = time.perf_counter(), time.perf_counter()
    pending = None  # metrics of the previous step, fetched one step late

    def log(p):
        step, bucket, m, t = p
        if not lead:
            return
        append_csv(os.path.join(args.out, "train_log.csv"),
                   ["step", "wall_s", "rows", "loss", "acc", "grad_norm"],
                   [step, round(t, 2), bucket, float(m["loss"]), float(m["acc"]),
                    float(m["grad_norm"])])

    def run_eval():
        vl, va = validation_loss(distributed.local_copy(state.params), mc, val, dtype)
        if not lead:
            return
        append_csv(os.path.join(args.out, "val_log.csv"), ["step", "wall_s", "val_loss", "val_acc"],
                   [step, round(wall_now(), 2), vl, va])
        progress.echo(f"step {step}  val_loss {vl:.4f}  val_acc {va:.3f}  "
                      f"wall {wall_now() / 60:.1f} min")

    def wall_now():
        return wall + time.perf_counter() - t_start

    step = int(distributed.local_copy(state.step))  # the host's count from here on
    if step == 0:
        run_eval()
    bar = progress.bar(total=tc.total_steps, initial=step, desc="pretraining",
                       unit="step", leave=True, show=not args.no_progress)
    while step < tc.total_steps:  # at least one step per call, then the budget
        rows = bucket_of(step, tc)
        pc_b = prior_for(rows, pc)
        batch_size = max(tc.tokens_per_step // rows, 1)
        if mesh is None:
            state, metrics = train_step(state, key, mc=mc, tc=tc, pc=pc_b, batch_size=batch_size,
                                        dtype=dtype)
        else:  # the datasets split over the devices: a multiple of their count
            batch_size = -(-batch_size // mesh.size) * mesh.size
            state, metrics = train_step_on_mesh(mesh, mc=mc, tc=tc, pc=pc_b,
                                                batch_size=batch_size, dtype=dtype)(state)
            metrics = distributed.local_copy(metrics)
        step += 1
        if pending is not None:
            log(pending)  # the previous step's metrics: ready by now, no wait on this step
        pending = (step, rows, metrics, wall_now())
        bar.update(1)
        if step % 25 == 0:
            progress.echo(f"step {step}  loss {float(metrics['loss']):.4f}  "
                          f"wall {wall_now() / 60:.1f} min")
        if step % args.eval_every == 0:
            run_eval()
        if time.perf_counter() - last_ckpt > args.ckpt_minutes * 60:
            log(pending)
            pending = None
            try:
                save_checkpoint(state, args.out, wall_now())
                if lead:
                    plot(args.out)
            except OSError as e:  # a full or briefly unavailable disk: retry at the next one
                print(f"warning: checkpoint at step {step} failed: {e}", flush=True)
            last_ckpt = time.perf_counter()
        if time.perf_counter() - t_start >= budget:
            break
    bar.close()
    if pending is not None:
        log(pending)
    if step % args.eval_every != 0:
        run_eval()
    path = save_checkpoint(state, args.out, wall_now())
    if lead:
        plot(args.out)
    print(f"done: step {step}, wall {wall_now() / 60:.1f} min, checkpoint {path}",
          flush=True)


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    main()
