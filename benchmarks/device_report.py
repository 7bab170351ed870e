"""Collect the parts of ``benchmarks/device_check.sh`` into OUT/device_check.json and a short
OUT/device_check.md table, each figure with the device it was measured on.

    python benchmarks/device_report.py OUT

A part that failed or ran past its limit appears with its exit code and the end of its log,
never as a number."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def last_json_line(path: Path) -> dict | None:
    """The last line of a log that parses as a JSON object (bench_prior prints one)."""
    for line in reversed(path.read_text(errors="replace").splitlines() if path.exists() else []):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def sampler_rows(out: Path) -> list[dict]:
    path = out / "sampler" / "bench_sampler.json"
    if not path.exists():
        return []
    rows = []
    for r in json.loads(path.read_text())["results"]:
        if r["part"] == "grid":
            share = ("" if r["roofline"] is None
                     else f", {r['roofline']:.1%} of the bandwidth roofline")
            rows.append({"what": f"sampler {r['family']} {r['strategy']}, k={r['k']} x "
                                 f"{r['n']} rows x {r['d']} nodes",
                         "figure": f"{r['rows_per_s']:,.0f} rows/s, {r['datasets_per_s']:,.0f} "
                                   f"datasets/s{share}", **r})
        elif r["part"] == "dowhy":
            rows.append({"what": f"gradient-boosting SCM, {r['n']:,} rows (rng {r['rng']})",
                         "figure": f"{r['ours_rows_per_s']:,.0f} rows/s, "
                                   f"{r['speedup']:.1f}x DoWhy in the same run", **r})
    return rows


def prior_rows(out: Path) -> list[dict]:
    rows = []
    for log in sorted(out.glob("prior_*.log")):
        r = last_json_line(log)
        if r:
            rows.append({"what": f"prior datasets, {r['rows']} rows x {r['features']} features "
                                 f"(batch {r['batch']}, rng {r['rng']})",
                         "figure": f"{r['datasets_per_s']:,.1f} datasets/s", **r})
    return rows


def finetune_rows(out: Path) -> list[dict]:
    path = out / "finetune_step.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    ms = r["step_ms"]
    return [{"what": f"fine-tuning step, {r['rows_per_step']} rows ({r['dataset']})",
             "figure": f"real {ms['real']:.1f} ms, CausalMixFT {ms['causalmix']:.1f} ms "
                       f"(ratio {r['ratio_causalmix_over_real']:.2f}); "
                       f"{r['runs_per_hour']['causalmix']:,.0f} CausalMixFT runs/h",
             "step_ms": ms, "ratio_causalmix_over_real": r["ratio_causalmix_over_real"],
             "runs_per_hour": r["runs_per_hour"]}]


def pretrain_rows(out: Path) -> list[dict]:
    """Median step time of the pretraining run's log (steps after the first 5: compilation)."""
    log, run = out / "pretrain" / "train_log.csv", out / "pretrain" / "run.json"
    if not log.exists() or not run.exists():
        return []
    with open(log) as f:
        steps = [(int(r["step"]), float(r["wall_s"]), int(r["rows"])) for r in csv.DictReader(f)]
    steps = steps[5:] if len(steps) > 7 else steps
    if len(steps) < 2:
        return []
    step_s = statistics.median(b[1] - a[1] for a, b in zip(steps, steps[1:]))
    tokens = json.loads(run.read_text())["train"]["tokens_per_step"]
    rows = statistics.median(s[2] for s in steps)
    return [{"what": f"pretraining step, {tokens} rows per step",
             "figure": f"{1 / step_s:,.2f} steps/s, {tokens // rows / step_s:,.1f} prior "
                       f"datasets/s trained on",
             "step_s": step_s, "tokens_per_step": tokens}]


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    device = (out / "device.txt").read_text().strip() if (out / "device.txt").exists() else "?"
    parts = {}
    if (out / "parts.txt").exists():
        for line in (out / "parts.txt").read_text().split("\n"):
            if line.strip():
                name, rc, seconds = line.split()
                parts[name] = {"exit": int(rc), "seconds": int(seconds)}
    rows = sampler_rows(out) + prior_rows(out) + finetune_rows(out) + pretrain_rows(out)
    failed = {name: p | {"log_tail": (out / f"{name}.log").read_text(errors="replace")[-1500:]}
              for name, p in parts.items() if p["exit"] != 0}
    notes = (out / "notes.txt").read_text().strip() if (out / "notes.txt").exists() else ""
    report = {"device": device, "parts": parts, "failed": failed, "notes": notes,
              "results": rows}
    (out / "device_check.json").write_text(json.dumps(report, indent=1, default=str))
    lines = [f"# Device check: {device}", "", "| measurement | figure |", "|---|---|"]
    lines += [f"| {r['what']} | {r['figure']} |" for r in rows]
    lines += [""] + [f"- part {n}: exit {p['exit']} after {p['seconds']} s (124: past its limit)"
                     for n, p in failed.items()]
    lines += [f"- {notes}"] if notes else []
    (out / "device_check.md").write_text("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
