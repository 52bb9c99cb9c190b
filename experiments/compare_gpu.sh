#!/usr/bin/env bash
# Issue 16's evidence on a lent GPU: the fair loss comparison (python -m recsys.compare) of
# SASRec on ml1m for every main loss, one protocol process per loss side by side on the one
# device (only=[<loss>] on a shared out_dir; the last process to finish writes the report
# over all losses). The protocol resumes, so a lease that ends mid-way loses at most the
# runs in flight: run the same command in the next lease (or on CPU) to continue.
#
#   OUT=/work/runs/compare_ml1m bash experiments/compare_gpu.sh
#
# Environment: OUT (protocol folder), LOSSES, TRIALS, TRIAL_EPOCHS, FINAL_EPOCHS, SEEDS
# (e.g. [1,2,3]), TRAINER (trainer overrides), EXTRA (overrides for every run, e.g.
# "data=synthetic" and TRAINER=trainer=cpu for a dry run on CPU).
set -uo pipefail
out=${OUT:-/work/runs/compare_ml1m}
losses=${LOSSES:-ce ssm ssm_mixed bce gbce bpr infonce nss poly}
trials=${TRIALS:-8}
trial_epochs=${TRIAL_EPOCHS:-5}
final_epochs=${FINAL_EPOCHS:-20}
seeds=${SEEDS:-[1,2,3]}
trainer=${TRAINER:-trainer=gpu trainer.precision=32-true}
extra=${EXTRA:-}
python=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
list=$(echo "$losses" | tr -s ' ' ',')
mkdir -p "$out"
for loss in $losses; do
  "$python" -m recsys.compare "losses=[$list]" "only=[$loss]" "common=\"data=ml1m model=sasrec $trainer $extra\"" \
    "trials=$trials" "trial_budget=\"trainer.max_epochs=$trial_epochs\"" "final_budget=\"trainer.max_epochs=$final_epochs\"" \
    "seeds=$seeds" "out_dir=$out" >"$out/$loss.log" 2>&1 &
  sleep 2  # the first process writes protocol.json
done
wait
"$python" -m recsys.compare "losses=[$list]" "common=\"data=ml1m model=sasrec $trainer $extra\"" "trials=$trials" \
  "trial_budget=\"trainer.max_epochs=$trial_epochs\"" "final_budget=\"trainer.max_epochs=$final_epochs\"" \
  "seeds=$seeds" "out_dir=$out" | tail -n 30
