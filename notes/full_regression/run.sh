#!/usr/bin/env bash
# The regression counterpart of the full study (issue 20, part 5): every packaged regression
# dataset x 10 folds at n_train 64, zero-shot / real / causalmix and scm at volumes 1 and 4 /
# copula at 1 and 4, fold by fold so that a stopped run leaves whole folds; rerun to resume.
# Usage: bash notes/full_regression/run.sh [FIRST_FOLDS LAST_FOLDS]  (default 1 10; --folds F = folds 0..F-1)
set -u
cd "$(dirname "$0")/../.."
OUT=notes/full_regression
DS="auto_mpg biomass birthweight carseats concrete cps1985 cpus diabetes housing sacramento salaries"
SHARD_ARGS=()
[ -n "${SHARD:-}" ] && SHARD_ARGS=(--shard "$SHARD")
for F in $(seq "${1:-1}" "${2:-10}"); do
  python experiments/regression_volume.py --datasets $DS --folds "$F" --n-train 64 \
      --volumes 0,1,4 --methods real,causalmix,scm,copula --out $OUT --no-progress --repair-alpha 0 \
      "${SHARD_ARGS[@]}" || exit $?
done
