#!/usr/bin/env bash
# NeuMF with the paper's pretraining (He et al. 2017, section 3.4.1), as one command:
# GMF alone, MLP alone, then NeuMF whose branches (embeddings, tower and each branch's
# head) start from the two runs' best checkpoints via init_from; the fused layer is
# alpha h_GMF + (1 - alpha) h_MLP with model.alpha (0.5, the paper's). All three runs use
# the paper's loss (BCE, 4 uniform negatives per positive) plus the extra overrides.
# The paper then trains NeuMF with plain SGD (Adam's state is not carried over); pass
# e.g. NEUMF_ARGS="optimizer._target_=torch.optim.SGD optimizer.lr=0.01" for that
# (default: the config's Adam). On ml1m (README, "NeuMF with the paper's pretraining on ml1m";
# 3 seeds, each stage to early stopping) the pretrained NeuMF scores test NDCG@10 0.0356
# fine-tuned with SGD and 0.0340 with Adam, against 0.0310 from scratch.
#
#   bash experiments/neumf_pretrain.sh OUT [OVERRIDES...]
#   e.g. bash experiments/neumf_pretrain.sh logs/neumf_pre data=ml1m trainer.max_epochs=20
#
# Runs go to OUT/gmf, OUT/mlp and OUT/neumf (hydra.run.dir); a stage whose metrics.json
# exists is skipped, so rerunning the command continues where it stopped.
set -euo pipefail
out=$1
shift
python=${PYTHON:-python}
paper=(model=neumf loss=bce sampler=uniform sampler.num_negatives=4)

stage() {  # stage NAME OVERRIDES...
  local name=$1
  shift
  if [[ -f $out/$name/metrics.json ]]; then
    echo "done:    $out/$name"
    return
  fi
  echo "start:   $out/$name"
  "$python" -m recsys.run "${paper[@]}" "$@" "hydra.run.dir=$out/$name"
}

stage gmf model.branches=gmf "$@"
stage mlp model.branches=mlp "$@"
init="init_from=[{ckpt: $out/gmf/checkpoints/best.ckpt, source: model.gmf, target: gmf}, "
init+="{ckpt: $out/mlp/checkpoints/best.ckpt, source: model.mlp, target: mlp}]"
# shellcheck disable=SC2086  # NEUMF_ARGS is a list of overrides
stage neumf model.branches=neumf "$init" "$@" ${NEUMF_ARGS:-}
