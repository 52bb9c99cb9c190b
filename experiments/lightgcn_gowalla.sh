#!/usr/bin/env bash
# LightGCN on Gowalla in CPU time, the README's staged recipe (sampled softmax, 4096 shared
# uniform negatives): stage 1 fits without regularization at Adam 5e-3 (early-stopped on
# val Recall@20); stages 2 and 3 each start from the previous stage's best checkpoint and
# add L2 on the batch's input embeddings (aux=[embedding_l2], weight 0.02 then 0.05) with
# Adam 1e-3 decayed to 0 over 6 epochs. About 2 h on 2 CPU cores.
#   bash experiments/lightgcn_gowalla.sh [OUT_DIR] [extra overrides for every stage...]
set -euo pipefail
out=${1:-logs/lightgcn_gowalla_staged}
shift || true
python=${PYTHON:-python}

stage() {  # stage NAME INIT_CKPT OVERRIDES...
  local name=$1 init=$2
  shift 2
  local init_args=()
  if [[ -n $init ]]; then
    init_args=("init_from=[{ckpt: $init, source: model, target: \"\"}]")
  fi
  if [[ -f $out/$name/metrics.json ]]; then
    echo "stage $name: already done ($out/$name/metrics.json), skipping"
    return
  fi
  "$python" -m recsys.run experiment=lightgcn_gowalla "hydra.run.dir=$out/$name" "${init_args[@]}" "$@"
}

finetune=(optimizer.lr=0.001 trainer.max_epochs=6 trainer.check_val_every_n_epoch=1
  "+scheduler={_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true, T_max: 6}" "aux=[embedding_l2]")
stage stage1 "" "$@"
stage stage2 "$out/stage1/checkpoints/best.ckpt" "${finetune[@]}" aux.embedding_l2.weight=0.02 "$@"
stage stage3 "$out/stage2/checkpoints/best.ckpt" "${finetune[@]}" aux.embedding_l2.weight=0.05 "$@"
echo "test metrics of the final stage: $out/stage3/metrics.json"
