"""Step time of real-only fine-tuning vs CausalMixFT at the same batch size, and fine-tuning
runs per hour.

Command:
    python benchmarks/bench_finetune_step.py                 # ~2-4 min on a 2-core CPU
    python benchmarks/bench_finetune_step.py --checkpoint random-tiny --rows 64 --steps 5 --out /tmp/b.json

Both arms feed ``--rows`` rows per step (query share 0.2): "real" takes all of them from the
real training rows; "causalmix" takes half from the real rows and draws the other half INSIDE
the jitted step from the fitted SCM ensemble (volume 1); "pool" is causalmix with the
synthetic half picked from a fixed pool (the step without the draw); "causalmix_dense" draws
with the dense walk instead of the compact layout (the in-step draw before it). The SCMs are
those every study fits (``--families``, default linear, MLP and trees). Timings alternate
between the arms (median of --repeats blocks of --steps steps), so load on the machine hits
all arms alike. Prints the ratio causalmix / real (target: <= 1.10) and writes JSON (--out).
Runs per hour: wall time of complete fine-tuning runs (--run-steps steps, validation and test
evaluation every 5 steps, --rows rows per step) after compilation; and --vmap-runs causalmix
runs (seeds) one after the other vs the same runs vmapped into one program
(``finetune.batched.finetune_runs``).

--architectures: instead, the real and causalmix step times of every architecture at its
published size in one run: the shipped row-token model, and TabICL (the tabicl constructor's
defaults), TabPFN v2 (the v2 classifier's size) and Mitra (the published classifier's size)
with random weights (the step time does not depend on the values):

    python benchmarks/bench_finetune_step.py --architectures --steps 2 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax

from causaljax.eval.cli import PORTS
from causaljax.runtime import malloc_note


def published_size_models(key):
    """(name, params, model spec) of every architecture at its published size: the shipped
    row-token model, and each port with random weights of its published shapes."""
    from causaljax.eval.cli import load_model
    from causaljax.tfm import mitra, tabicl, tabpfn
    from causaljax.tfm.batch_model import Ported

    params, mc, model_id = load_model("default")
    yield f"row-token ({model_id})", params, mc
    for kind, module, cfg in (("tabicl", tabicl, tabicl.TabICLConfig()),
                              ("tabpfn", tabpfn, tabpfn.TabPFNConfig()),
                              ("mitra", mitra, mitra.MitraConfig())):
        yield kind, module.init(cfg, key), Ported(kind, cfg)


def n_params(params) -> int:
    return sum(int(a.size) for a in jax.tree.leaves(params))


def time_steps(arms, params, mc, shapes, key, steps: int, repeats: int):
    """(median ms per step, every block's ms, first-call s) of each arm's jitted train step;
    the arms alternate block by block, so load on the machine hits them alike."""
    from causaljax.finetune.loop import init_state, train_step

    states = {name: init_state(params, fc) for name, (_, _, fc) in arms.items()}

    def block(name, n):
        task, source, fc = arms[name]
        state = states[name]
        t = time.perf_counter()
        for _ in range(n):
            state, loss = train_step(state, task, source, key, mc=mc, fc=fc, shape=shapes[name])
        loss.block_until_ready()
        states[name] = state
        return (time.perf_counter() - t) / n

    compile_s = {name: block(name, 1) for name in arms}  # first call compiles
    times = {name: [] for name in arms}
    for _ in range(repeats):
        for name in arms:
            times[name].append(block(name, steps))
    step_ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    return step_ms, {k: [1000 * x for x in v] for k, v in times.items()}, compile_s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="pima")
    p.add_argument("--rows", type=int, default=128, help="rows per step (both arms)")
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--run-steps", type=int, default=30)
    p.add_argument("--k-scms", type=int, default=8)
    p.add_argument("--families", default="linear,mlp,trees",
                   help="scm.fit's mechanism families (default: those every study fits)")
    p.add_argument("--vmap-runs", type=int, default=5, help="runs vmapped together")
    p.add_argument("--checkpoint", default="default",
                   help="row-token weights ('default', 'random-tiny', a .msgpack path), or the "
                        "checkpoint of --model tabicl / tabpfn / mitra")
    p.add_argument("--model", default="row-token", choices=("row-token", *PORTS))
    p.add_argument("--architectures", action="store_true",
                   help="the real / causalmix step time of each architecture at its published "
                        "size (random weights), in one run")
    p.add_argument("--repair-alpha", type=float, default=None,
                   help="Markov repair level of the SCMs' DAGs (0: none; default: the SCM "
                        "generator's)")
    p.add_argument("--out", default="benchmarks/results/bench_finetune_step.json")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")

    from causaljax import data
    from causaljax.eval.cli import load_model
    from causaljax.finetune.batched import finetune_runs
    from causaljax.finetune.generators.scm import fit_scms
    from causaljax.finetune.loop import (
        FinetuneConfig,
        finetune,
        make_task,
        scores,
        step_shape,
    )
    from causaljax.finetune.sources import PoolSource, SCMSource, scm_source

    table = data.load(args.dataset)
    half = args.rows // 2
    split_full = data.low_data_splits(table, args.rows, 32, 1, 0)[0]
    split_half = data.low_data_splits(table, half, 32, 1, 0)[0]
    t0 = time.perf_counter()
    scm = fit_scms(table.take(split_half.train), key=jax.random.key(0), k=args.k_scms,
                   n_bootstrap=5, families=tuple(args.families.split(",")),
                   **({} if args.repair_alpha is None else {"repair_alpha": args.repair_alpha}))
    fit_s = time.perf_counter() - t0
    fresh = scm_source(scm)  # draws from the compact layout
    if args.architectures:
        return architectures(args, table, split_full, split_half, fresh, fit_s)
    params, mc, model_id = load_model(args.checkpoint, args.model)
    task_full, task_half = make_task(table, split_full, mc), make_task(table, split_half, mc)
    dense = SCMSource(scm)  # draws with the dense walk (the in-step draw before the layout)
    pool = PoolSource(fresh.draw(jax.random.key(1), 4096))
    # the same (static) configs time the steps and the complete runs: compiled once
    fc_real = FinetuneConfig(steps=args.run_steps, eval_every=5, patience=10**6)
    fc_mix = dataclasses.replace(fc_real, volume=1.0)
    arms = {
        "real": (task_full, None, fc_real),
        "causalmix": (task_half, fresh, fc_mix),
        "causalmix_dense": (task_half, dense, fc_mix),
        "pool": (task_half, pool, fc_mix),
    }
    shapes = {name: step_shape(int(t.x_train.shape[0]), fc) for name, (t, _, fc) in arms.items()}
    assert len({s.n_rows for s in shapes.values()}) == 1, shapes
    key = jax.random.key(2)
    step_ms, times_ms, compile_s = time_steps(arms, params, mc, shapes, key, args.steps,
                                              args.repeats)
    ratio = step_ms["causalmix"] / step_ms["real"]

    run_s = {}
    for name, task in (("real", task_full), ("causalmix", task_half)):
        _, source, fc = arms[name]
        scores(params, mc, task, "val")  # compile the evaluation
        t = time.perf_counter()
        finetune(params, mc, task, fc, source=source)
        run_s[name] = time.perf_counter() - t

    # R seeds of one configuration: one after the other vs vmapped (both compiled first)
    R = args.vmap_runs
    keys = [jax.random.key(100 + r) for r in range(R)]
    finetune_runs(params, mc, [task_half] * R, fc_mix, sources=[fresh] * R, keys=keys)
    t = time.perf_counter()
    for k in keys:
        finetune(params, mc, task_half, fc_mix, source=fresh, key=k)
    seq_s = time.perf_counter() - t
    t = time.perf_counter()
    finetune_runs(params, mc, [task_half] * R, fc_mix, sources=[fresh] * R, keys=keys)
    vmap_s = time.perf_counter() - t

    result = dict(
        dataset=args.dataset, rows_per_step=shapes["real"].n_rows, model=model_id,
        model_config=mc.to_dict(), k_scms=args.k_scms, device=str(jax.devices()[0]),
        cpu_count=os.cpu_count(), step_ms=step_ms, compile_s=compile_s,
        ratio_causalmix_over_real=ratio, ratio_pool_over_real=step_ms["pool"] / step_ms["real"],
        ratio_dense_over_real=step_ms["causalmix_dense"] / step_ms["real"],
        draw_share=(step_ms["causalmix"] - step_ms["pool"]) / step_ms["causalmix"],
        families=args.families,
        target_ratio=1.10, within_target=ratio <= 1.10, scm_fit_s=fit_s,
        run_steps=args.run_steps, run_seconds=run_s, runs_per_hour={k: 3600 / v for k, v in run_s.items()},
        times_ms=times_ms,
        vmap_runs=R, sequential_runs_s=seq_s, vmapped_runs_s=vmap_s,
        vmap_speedup=seq_s / vmap_s, malloc=malloc_note())
    print(f"malloc: {malloc_note()}")
    print(f"step time (ms, median of {args.repeats}x{args.steps}): "
          + ", ".join(f"{k} {v:.1f}" for k, v in step_ms.items()))
    print(f"causalmix / real step time ratio: {ratio:.3f} (target <= 1.10); with the dense walk "
          f"{result['ratio_dense_over_real']:.3f}; in-step draw share of the causalmix step "
          f"(vs the pool arm): {result['draw_share']:.1%} (families {args.families})")
    print(f"runs per hour ({args.run_steps} steps, eval every 5): real "
          f"{result['runs_per_hour']['real']:.0f}, causalmix {result['runs_per_hour']['causalmix']:.0f}")
    print(f"{R} causalmix runs: one by one {seq_s:.1f} s, vmapped {vmap_s:.1f} s "
          f"({seq_s / vmap_s:.2f}x; {3600 * R / vmap_s:.0f} runs per hour)")
    write_json(result, args.out)
    return 0


def architectures(args, table, split_full, split_half, source, fit_s) -> int:
    """--architectures: real vs causalmix step time of each architecture (published size)."""
    from causaljax.finetune.loop import FinetuneConfig, make_task, step_shape

    fc_real = FinetuneConfig(steps=args.run_steps, eval_every=5, patience=10**6)
    fc_mix = dataclasses.replace(fc_real, volume=1.0)
    rows = []
    for name, params, mc in published_size_models(jax.random.key(3)):
        arms = {"real": (make_task(table, split_full, mc), None, fc_real),
                "causalmix": (make_task(table, split_half, mc), source, fc_mix)}
        shapes = {a: step_shape(int(t.x_train.shape[0]), fc) for a, (t, _, fc) in arms.items()}
        step_ms, times_ms, compile_s = time_steps(arms, params, mc, shapes, jax.random.key(2),
                                                  args.steps, args.repeats)
        row = dict(model=name, n_params=n_params(params), step_ms=step_ms,
                   ratio_causalmix_over_real=step_ms["causalmix"] / step_ms["real"],
                   compile_s=compile_s, times_ms=times_ms)
        rows.append(row)
        print(f"{name}: {row['n_params'] / 1e6:.1f} M parameters; step ms real "
              f"{step_ms['real']:.1f}, causalmix {step_ms['causalmix']:.1f} (ratio "
              f"{row['ratio_causalmix_over_real']:.3f}; compile {compile_s['real']:.0f} s / "
              f"{compile_s['causalmix']:.0f} s)", flush=True)
    result = dict(dataset=args.dataset, rows_per_step=args.rows, k_scms=args.k_scms,
                  families=args.families, scm_fit_s=fit_s, device=str(jax.devices()[0]),
                  cpu_count=os.cpu_count(), steps=args.steps, repeats=args.repeats,
                  architectures=rows, malloc=malloc_note())
    out = args.out.replace(".json", "_architectures.json") if args.out.endswith(".json") \
        else args.out
    write_json(result, out)
    return 0


def write_json(result: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
