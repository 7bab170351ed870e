#!/usr/bin/env bash
# The full classification study (issue 20), fold by fold over every dataset the shipped TFM
# takes (hepatic_qsar: 376 features and leaf_flavia: 32 classes exceed its 100 / 10), so that
# a stopped run leaves whole folds of every dataset; rerun to resume (finished runs are skipped).
# Usage: bash notes/full_study/run.sh [FIRST_FOLDS LAST_FOLDS]   (default 1 10)
# Both cores: SHARD=0/2 taskset -c 0 bash notes/full_study/run.sh 7 10 &
#             SHARD=1/2 taskset -c 1 bash notes/full_study/run.sh 7 10 &
# (shards run disjoint (dataset, fold) groups into the same store; see the README)
set -u
cd "$(dirname "$0")/../.."
OUT=notes/full_study
DS="breast_cancer wine iris digits penguins anes96 fair credit_g breast_w pima glass birthwt
    spam7 churn credit_data hpc cells credit_card swiss_labor titanic wells smarket contraception"
SHARD_ARGS=()
[ -n "${SHARD:-}" ] && SHARD_ARGS=(--shard "$SHARD")
for F in $(seq "${1:-1}" "${2:-10}"); do
  python experiments/scale_volume.py --datasets $DS --folds "$F" --n-train 64 \
      --volumes 0,1,4,16 --methods real,causalmix,scm --out $OUT --no-progress --repair-alpha 0 "${SHARD_ARGS[@]}" || exit $?
  python experiments/scale_volume.py --datasets $DS --folds "$F" --n-train 64 \
      --volumes 1 --methods copula,tabebm,ctgan --out $OUT --no-progress --repair-alpha 0 "${SHARD_ARGS[@]}" || exit $?
done
