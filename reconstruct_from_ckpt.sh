#!/bin/sh
# Reconstruct the leaderboard with one experiment's best checkpoint (see README, "Reconstruct").
# Override with environment variables, e.g.  EXP_NAME=my_run DATA_ROOT=/data GPU=-1 sh reconstruct_from_ckpt.sh
EXP_NAME="${EXP_NAME:-demo}"
DATA_ROOT="${DATA_ROOT:-../Data}"
RESULT_ROOT="${RESULT_ROOT:-../result}"

python3 reconstruct_from_ckpt.py \
  -c "${RESULT_ROOT}/${EXP_NAME}/checkpoints/best_model.pt" \
  -p "${DATA_ROOT}/leaderboard/" \
  -g "${GPU:-0}" \
  -b "${BATCH:-1}" \
  "$@"
