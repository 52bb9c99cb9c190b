#!/usr/bin/env bash
# The GPU runs behind the README's sequential-model results (issue 14), as one script that
# fits a lent GPU's short lease: everything runs side by side on one device, each run capped
# by wall time (+trainer.max_time), and every run ends with its test evaluation of the best
# checkpoint, so a capped run still leaves complete results (marked by its epoch count).
#
#   RUNS=/work/runs bash experiments/sequential_gpu.sh
#
# * BERT4Rec on ml1m: continues $RUNS/b4r_ml1m (stopped early on CPU at epoch 135 with
#   patience 20) from its last checkpoint with patience 60 and up to 1000 epochs.
# * gSASRec (experiment=gsasrec_ml1m) with gBCE t=0.75, and the same model with BCE and with
#   full-softmax CE, LONG wall time each: equal wall time on the same device.
# * contrastive on beauty: SASRec + CE with aux=[] and each positives= mode, 3 seeds.
# * context-aware SASRec against ID-only SASRec on beauty and on ml1m, 3 seeds.
# Environment: RUNS (run folders), TRAINER (trainer overrides), LONG / SHORT (max_time of
# the long runs and of each comparison run, DD:HH:MM:SS), EPOCHS_BEAUTY, EPOCHS_ML1M, EXTRA
# (overrides for every run, e.g. +trainer.limit_train_batches=2 for a dry run on CPU),
# B4R_CKPT (the BERT4Rec checkpoint to continue, in $RUNS/b4r_ml1m/checkpoints/; last-v1.ckpt
# there because that run's folder had been moved before RunCheckpoint overwrote last.ckpt).
set -uo pipefail
runs=${RUNS:-/work/runs}
trainer=${TRAINER:-trainer=gpu trainer.precision=32-true}
long=${LONG:-00:00:06:40}
short=${SHORT:-00:00:03:00}
epochs_beauty=${EPOCHS_BEAUTY:-20}
epochs_ml1m=${EPOCHS_ML1M:-40}
extra=${EXTRA:-}
python=${PYTHON:-python}
export PYTHON=$python OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$runs"
stamp() { echo "$(date +%s) $*"; }

long_run() {  # long_run NAME OVERRIDES...
  local name=$1
  shift
  stamp "start $name"
  # shellcheck disable=SC2086
  "$python" -m recsys.run "$@" $trainer $extra "+trainer.max_time=$long" logger=csv >"$runs/$name.log" 2>&1
  stamp "end $name rc=$?"
}

long_run b4r_ml1m model=bert4rec data=ml1m "paths.output_dir=$runs/b4r_ml1m" \
  "ckpt_path=$runs/b4r_ml1m/checkpoints/${B4R_CKPT:-last-v1.ckpt}" trainer.max_epochs=1000 eval.patience=60 &
long_run gsasrec_gbce experiment=gsasrec_ml1m "paths.output_dir=$runs/gsasrec_gbce" &
long_run gsasrec_bce experiment=gsasrec_ml1m loss=bce "~loss.t" "paths.output_dir=$runs/gsasrec_bce" &
long_run gsasrec_ce experiment=gsasrec_ml1m loss=ce sampler=full "~loss.t" "~sampler.num_negatives" \
  "~sampler.shared" "paths.output_dir=$runs/gsasrec_ce" &

compare() {  # compare NAME JOBS COMMON VARIANTS...
  local name=$1 jobs=$2 common=$3
  shift 3
  stamp "start $name"
  JOBS=$jobs bash experiments/comparison.sh "$runs/$name" "1 2 3" \
    "$common $trainer $extra +trainer.max_time=$short logger=csv" "$@"
  stamp "end $name"
}

compare contrastive_beauty 8 "data=beauty model=sasrec loss=ce trainer.max_epochs=$epochs_beauty" \
  "aux=[]" "aux=[contrastive] aux.contrastive.positives=same_target" \
  "aux=[contrastive] aux.contrastive.positives=dropout" "aux=[contrastive] aux.contrastive.positives=augment" &
compare context_beauty 4 "data=beauty trainer.max_epochs=$epochs_beauty" "model=sasrec" "model=sasrec_context" &
compare context_ml1m 4 "data=ml1m trainer.max_epochs=$epochs_ml1m" "model=sasrec" "model=sasrec_context" &
wait
stamp "all done"
