#!/usr/bin/env bash
# A comparison that outlives one sitting: every (variant, seed) runs in turn into
# OUT/<n>_<variant>__seed-<s>/ (hydra.run.dir), so `python -m recsys.report OUT` reads the
# folder like a sweep (variants = the overrides that differ). Run the same command again
# and finished runs (metrics.json) are skipped and an interrupted one resumes from its
# checkpoints/last.ckpt (exact resume; the report treats ckpt_path as the same variant).
# A run that fails writes failed.json and the next one starts, as in a sweep.
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
mkdir -p "$out"
n=0
for variant in "$@"; do
  for seed in $seeds; do
    slug=$(echo "$variant" | tr ' /=[],:{}' '__-_____' | tr -s '_' | cut -c1-120)
    dir="$out/${n}_${slug}__seed-${seed}"
    n=$((n + 1))
    if [[ -f $dir/metrics.json ]]; then
      echo "done:    $dir"
      continue
    fi
    resume=()
    if [[ -f $dir/checkpoints/last.ckpt ]]; then
      resume=("ckpt_path=$dir/checkpoints/last.ckpt")
      echo "resume:  $dir"
    else
      echo "start:   $dir"
    fi
    # shellcheck disable=SC2086  # common and variant are lists of overrides
    "$python" -m recsys.run $common $variant "seed=$seed" "${resume[@]}" "hydra.run.dir=$dir" >"$dir.log" 2>&1 \
      || echo "failed:  $dir (see $dir.log)"
  done
done
