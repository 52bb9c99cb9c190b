#!/usr/bin/env bash
# A comparison that outlives one sitting: every (variant, seed) runs into
# OUT/<v>_<variant>__seed-<s>/ (hydra.run.dir, v = the variant's position), so `python -m recsys.report OUT` reads the
# folder like a sweep (variants = the overrides that differ). Run the same command again
# and finished runs (metrics.json) are skipped and an interrupted one resumes from its
# checkpoints/last.ckpt (exact resume; the report treats ckpt_path as the same variant).
# A run that fails writes failed.json and the next one starts, as in a sweep. Runs go seed
# by seed (every variant of the first seed, then of the next), so a comparison cut short
# still holds complete pairs; JOBS=N runs N at a time (default 1, one after the other),
# e.g. JOBS=8 on a GPU, where one small model leaves most of the device idle.
#
#   bash experiments/comparison.sh OUT "SEEDS" "COMMON OVERRIDES" "VARIANT OVERRIDES"...
#
# e.g. ID-only vs context-aware SASRec on ml1m, 3 seeds, 20 epochs each:
#   bash experiments/comparison.sh logs/context_ml1m "1 2 3" "data=ml1m trainer.max_epochs=20" \
#     "model.context_features=[]" "model.context_features=[all]"
#   python -m recsys.report logs/context_ml1m && python -m recsys.report logs/context_ml1m --max-target-count 5
set -uo pipefail
out=$1 seeds=$2 common=$3
shift 3
python=${PYTHON:-python}
jobs_max=${JOBS:-1}
mkdir -p "$out"

run_one() {  # run_one DIR VARIANT SEED
  local dir=$1 variant=$2 seed=$3 resume=()
  if [[ -f $dir/checkpoints/last.ckpt ]]; then
    resume=("ckpt_path=$dir/checkpoints/last.ckpt")
    echo "resume:  $dir"
  else
    echo "start:   $dir"
  fi
  # shellcheck disable=SC2086  # common and variant are lists of overrides
  "$python" -m recsys.run $common $variant "seed=$seed" "${resume[@]}" "hydra.run.dir=$dir" >"$dir.log" 2>&1 \
    && echo "done:    $dir" || echo "failed:  $dir (see $dir.log)"
}

for seed in $seeds; do
  v=0
  for variant in "$@"; do
    slug=$(echo "$variant" | tr ' /=[],:{}' '__-_____' | tr -s '_' | cut -c1-120)
    dir="$out/${v}_${slug}__seed-${seed}"
    v=$((v + 1))
    if [[ -f $dir/metrics.json ]]; then
      echo "done:    $dir"
      continue
    fi
    while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n; done
    run_one "$dir" "$variant" "$seed" &
  done
done
wait
