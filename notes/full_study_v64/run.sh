#!/usr/bin/env bash
# Volume 64 of the full classification study (issue 20): causalmix and scm at 64 synthetic rows
# per real row (n_train 64: 4,096 synthetic + 64 real rows in every step), fold by fold over the
# datasets of notes/full_study, in a store of its own so that the 10-fold analysis there keeps
# every arm on every fold. The zeroshot and real runs were copied from notes/full_study's
# results.parquet (same run ids: they are restored, not rerun).
# Usage: bash notes/full_study_v64/run.sh [FIRST_FOLDS LAST_FOLDS]   (default 1 10; --folds F = folds 0..F-1)
set -u
cd "$(dirname "$0")/../.."
OUT=notes/full_study_v64
DS="breast_cancer wine iris digits penguins anes96 fair credit_g breast_w pima glass birthwt
    spam7 churn credit_data hpc cells credit_card swiss_labor titanic wells smarket contraception"
SHARD_ARGS=()
[ -n "${SHARD:-}" ] && SHARD_ARGS=(--shard "$SHARD")
for F in $(seq "${1:-1}" "${2:-10}"); do
  python experiments/scale_volume.py --datasets $DS --folds "$F" --n-train 64 \
      --volumes 0,64 --methods real,causalmix,scm --out $OUT --no-progress --repair-alpha 0 "${SHARD_ARGS[@]}" || exit $?
done
