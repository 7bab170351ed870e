#!/usr/bin/env bash
# Issue 23, part 3: the study's SCM arms with the Markov repair of the sampled DAGs (the default
# since session 17, --repair-alpha 0.05), on the datasets and splits of notes/full_study (run
# there without the repair: --repair-alpha 0), folds 0..2, fold by fold; rerun to resume.
# Compare: python experiments/compare_settings.py notes/full_study notes/repair_s17
# Usage: bash notes/repair_s17/run.sh [FIRST_FOLDS LAST_FOLDS]   (default 1 3)
# Both cores: SHARD=0/2 taskset -c 0 bash notes/repair_s17/run.sh &
#             SHARD=1/2 taskset -c 1 bash notes/repair_s17/run.sh &
set -u
cd "$(dirname "$0")/../.."
OUT=notes/repair_s17
DS="breast_cancer wine iris digits penguins anes96 fair credit_g breast_w pima glass birthwt
    spam7 churn credit_data hpc cells credit_card swiss_labor titanic wells smarket contraception"
SHARD_ARGS=()
[ -n "${SHARD:-}" ] && SHARD_ARGS=(--shard "$SHARD")
for F in $(seq "${1:-1}" "${2:-3}"); do
  python experiments/scale_volume.py --datasets $DS --folds "$F" --n-train 64 \
      --volumes 0,1,4 --methods real,causalmix,scm --out $OUT --no-progress \
      --repair-alpha 0.05 "${SHARD_ARGS[@]}" || exit $?
done
