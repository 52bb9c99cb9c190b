#!/usr/bin/env bash
# Issue 17 item 6 on a lent GPU: SASRec + CE on ml1m with trainer=gpu end to end (epoch time
# and evaluation time from the wall time of 1- and 6-epoch runs, test metrics to set beside
# the same runs on CPU), the same through trainer=ddp on one GPU, and the 1M-item
# bounded-memory bench on the GPU. One script, so it fits one short lease.
#
#   RUNS=/work/runs/speed_gpu bash experiments/speed_gpu.sh
#   TRAINER=trainer=cpu RUNS=/work/runs/speed_cpu bash experiments/speed_gpu.sh   # the CPU reference
#
# The per-epoch figure is (wall(6 epochs) - wall(1 epoch)) / 5: start-up, data loading and the
# final test cancel out; each epoch includes its validation pass (6,040 users, full ranking).
# Environment: RUNS (run folders), TRAINER (trainer overrides; default full precision on the
# GPU, so the metrics compare with CPU), DDP (set to 0 to skip the DDP runs), BOUNDED (0 to
# skip the bounded-memory bench), DATA (ml1m), EXTRA (overrides for every run), PYTHON.
# A dry run on CPU: TRAINER=trainer=cpu DDP=0 BOUNDED=0 DATA=synthetic EXTRA=+trainer.limit_train_batches=2
set -uo pipefail
runs=${RUNS:-/work/runs/speed_gpu}
trainer=${TRAINER:-trainer=gpu trainer.precision=32-true}
ddp=${DDP:-1}
bounded=${BOUNDED:-1}
extra=${EXTRA:-}
data=${DATA:-ml1m}
python=${PYTHON:-python}
mkdir -p "$runs"

timed() {  # timed NAME OVERRIDES...: one run, its wall time in $runs/times.txt
  local name=$1
  shift
  local start end
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$python" -m recsys.run "data=$data" model=sasrec loss=ce seed=1 logger=csv "paths.log_dir=$runs/$name" "$@" $extra \
    >"$runs/$name.log" 2>&1
  local rc=$?
  end=$(date +%s.%N)
  echo "$name rc=$rc wall_s=$("$python" -c "print(round($end - $start, 2))")" | tee -a "$runs/times.txt"
}

# shellcheck disable=SC2086
timed sasrec_e1 $trainer trainer.max_epochs=1
# shellcheck disable=SC2086
timed sasrec_e6 $trainer trainer.max_epochs=6
if [ "$ddp" = 1 ]; then
  timed sasrec_ddp1_e1 trainer=ddp trainer.accelerator=gpu trainer.devices=1 trainer.precision=32-true trainer.max_epochs=1
  timed sasrec_ddp1_e6 trainer=ddp trainer.accelerator=gpu trainer.devices=1 trainer.precision=32-true trainer.max_epochs=6
fi
if [ "$bounded" = 1 ]; then
  "$python" -m experiments.bench --bounded-only --out "$runs/bounded.json" >"$runs/bounded.log" 2>&1
  echo "bounded rc=$?" | tee -a "$runs/times.txt"
fi
"$python" - "$runs" <<'PY'
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
walls = {}
for line in (runs / "times.txt").read_text().splitlines():
    name, *fields = line.split()
    walls[name] = dict(f.split("=") for f in fields)
for prefix in ("sasrec", "sasrec_ddp1"):
    one, six = walls.get(f"{prefix}_e1"), walls.get(f"{prefix}_e6")
    if one and six:
        print(f"{prefix}: epoch with validation {(float(six['wall_s']) - float(one['wall_s'])) / 5:.2f} s")
    for name in (f"{prefix}_e1", f"{prefix}_e6"):
        found = list((runs / name).glob("**/metrics.json"))
        if found:
            m = json.loads(found[0].read_text())
            print(f"  {name}: test NDCG@10 {m['test/ndcg@10']:.4f} HR@10 {m['test/hr@10']:.4f}")
PY
