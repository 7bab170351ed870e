#!/usr/bin/env bash
# One call when an accelerator is lent: the hot paths' throughput on this machine's device,
# in at most ~8 minutes on one GPU, into OUT/device_check.json + OUT/device_check.md.
#
#   bash benchmarks/device_check.sh [--smoke] [OUT]      (OUT default: results/device_check)
#
# Parts (each under its own time limit; one that fails or runs out is reported as such and
# the others still run):
#   sampler   rows/s and datasets/s of 512-row x 20-node linear and MLP SCMs, k = 64 .. 1e5,
#             with the share of the device's memory-bandwidth roofline (bytes written);
#             gradient-boosting SCMs next to DoWhy on the same fitted model (needs dowhy)
#   prior     pretraining-prior datasets/s at 1024 rows x 20 and x 100 features
#   finetune  the fine-tuning step, real-only vs CausalMixFT (in-step SCM draws)
#   pretrain  pretraining steps/s and prior datasets/s of the default model
# --smoke: CPU-sized versions of every part (the test suite runs it).
set -u
cd "$(dirname "$0")/.."
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
OUT=${1:-results/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=python

if [ "$SMOKE" = 1 ]; then
  # the smoke checks that every part runs, on a CPU that other jobs may share (a test suite
  # in parallel): its limits only catch a hang, they are no time budget
  GRID=linear,mlp:128:6:4,16; TREES=(--dowhy-rows 1000)
  PRIOR=(--rows 64 --batch 2 --repeats 1); PRIOR_FEATURES="4 8"
  FINETUNE=(--checkpoint random-tiny --rows 64 --steps 2 --repeats 1 --run-steps 2 --k-scms 2
            --vmap-runs 2)
  PRETRAIN=(--quick --steps 4 --eval-every 1000)
  LIMIT_SAMPLER=600 LIMIT_PRIOR=600 LIMIT_FINETUNE=600 LIMIT_PRETRAIN=600
else  # one GPU: ~8 minutes in all
  GRID=linear,mlp:512:20:64,1024,16384,100000; TREES=(--dowhy-rows 100000,1000000)
  PRIOR=(--rows 1024 --batch 64 --repeats 10); PRIOR_FEATURES="20 100"
  FINETUNE=(); PRETRAIN=(--steps 40 --eval-every 100000)
  LIMIT_SAMPLER=170 LIMIT_PRIOR=60 LIMIT_FINETUNE=120 LIMIT_PRETRAIN=100
fi

part() {  # part NAME LIMIT_S COMMAND...: run it, log to OUT/NAME.log, record its exit code
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >>"$OUT/parts.txt"
  tail -n 4 "$OUT/$name.log"
}

: >"$OUT/parts.txt"
"$PY" - <<'EOF' >"$OUT/device.txt" 2>&1
import jax
d = jax.devices()[0]
print(f"{d.device_kind} x{jax.device_count()} ({d.platform}), jax {jax.__version__}")
EOF
cat "$OUT/device.txt"
if "$PY" -c "import dowhy" 2>/dev/null; then
  SAMPLER_PARTS=grid,dowhy
else
  SAMPLER_PARTS=grid
  echo "dowhy is not installed: the gradient-boosting comparison is skipped" | tee "$OUT/notes.txt"
fi
part sampler "$LIMIT_SAMPLER" "$PY" benchmarks/bench_sampler.py --parts "$SAMPLER_PARTS" --grid "$GRID" \
    --dowhy-families trees "${TREES[@]}" --rngs key,hash --out "$OUT/sampler"
for F in $PRIOR_FEATURES; do
  part "prior_$F" "$LIMIT_PRIOR" "$PY" benchmarks/bench_prior.py --features "$F" "${PRIOR[@]}"
done
part finetune "$LIMIT_FINETUNE" "$PY" benchmarks/bench_finetune_step.py "${FINETUNE[@]}" \
    --out "$OUT/finetune_step.json"
part pretrain "$LIMIT_PRETRAIN" "$PY" experiments/pretrain_tfm.py "${PRETRAIN[@]}" --no-progress \
    --out "$OUT/pretrain"
"$PY" benchmarks/device_report.py "$OUT"
