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

from causaljax.runtime import malloc_note


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
                        "checkpoint file of --model tabicl / tabpfn")
    p.add_argument("--model", default="row-token", choices=("row-token", "tabicl", "tabpfn"))
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
        init_state,
        make_task,
        scores,
        step_shape,
        train_step,
    )
    from causaljax.finetune.sources import PoolSource, SCMSource, scm_source

    params, mc, model_id = load_model(args.checkpoint, args.model)
    table = data.load(args.dataset)
    half = args.rows // 2
    split_full = data.low_data_splits(table, args.rows, 32, 1, 0)[0]
    split_half = data.low_data_splits(table, half, 32, 1, 0)[0]
    task_full, task_half = make_task(table, split_full, mc), make_task(table, split_half, mc)
    t0 = time.perf_counter()
    scm = fit_scms(table.take(split_half.train), key=jax.random.key(0), k=args.k_scms,
                   n_bootstrap=5, families=tuple(args.families.split(",")),
                   **({} if args.repair_alpha is None else {"repair_alpha": args.repair_alpha}))
    fit_s = time.perf_counter() - t0
    fresh = scm_source(scm)  # draws from the compact layout
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
    for _ in range(args.repeats):
        for name in arms:
            times[name].append(block(name, args.steps))
    step_ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
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
        times_ms={k: [1000 * x for x in v] for k, v in times.items()},
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
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from causaljax.runtime import reexec_with_hugepages

    reexec_with_hugepages()  # huge-page malloc: see causaljax.runtime
    sys.exit(main())
