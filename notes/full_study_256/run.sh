#!/usr/bin/env bash
# The full classification study's second pass at n_train 256 (issue 20), on the 18 datasets of
# notes/full_study with at least 512 rows (256 train + 64 validation + >= 192 test rows; wine,
# iris, penguins, glass and birthwt are too small), fold by fold so that a stopped run leaves
# whole folds; rerun to resume (finished runs are skipped). SCM settings: the defaults of the
# session it started in (17: Markov repair 0.05; notes/repair_s17 has the 64-row arms with the
# same settings on folds 0-2, notes/full_study the 64-row pass without the repair).
# First pass: zero-shot, real, causalmix and scm at volumes 1 and 4; the other generators and
# volume 16 come after (their run ids are separate: adding them reruns nothing).
# Usage: bash notes/full_study_256/run.sh [FIRST_FOLDS LAST_FOLDS]   (default 1 10)
# Other arms / volumes (session 19: volume 16): VOLUMES=16 METHODS=causalmix,scm bash ... 1 10
# Both cores: SHARD=0/2 taskset -c 0 bash notes/full_study_256/run.sh &
#             SHARD=1/2 taskset -c 1 bash notes/full_study_256/run.sh &
set -u
cd "$(dirname "$0")/../.."
OUT=notes/full_study_256
DS="breast_cancer digits anes96 fair credit_g breast_w pima spam7 churn credit_data hpc cells
    credit_card swiss_labor titanic wells smarket contraception"
SHARD_ARGS=()
[ -n "${SHARD:-}" ] && SHARD_ARGS=(--shard "$SHARD")
for F in $(seq "${1:-1}" "${2:-10}"); do
  python experiments/scale_volume.py --datasets $DS --folds "$F" --n-train 256 \
      --volumes "${VOLUMES:-0,1,4}" --methods "${METHODS:-real,causalmix,scm}" --out $OUT \
      --no-progress \
      --repair-alpha 0.05 "${SHARD_ARGS[@]}" || exit $?
done
