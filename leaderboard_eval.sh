#!/bin/sh
# Score the leaderboard reconstructions of one experiment (see README, "Evaluate").
# Override with environment variables, e.g.  EXP_NAME=my_run DATA_ROOT=/data sh leaderboard_eval.sh
EXP_NAME="${EXP_NAME:-demo}"
DATA_ROOT="${DATA_ROOT:-../Data}"
RESULT_ROOT="${RESULT_ROOT:-../result}"

python3 leaderboard_eval.py \
  -lp "${DATA_ROOT}/leaderboard/" \
  -yp "${RESULT_ROOT}/${EXP_NAME}/reconstructions_leaderboard" \
  "$@"
