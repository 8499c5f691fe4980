#!/usr/bin/env bash
# Regenerates README "Corrections that take": every arm of the corrections ablation, one after the
# other on an otherwise idle machine (the trained arms get equal wall time, so nothing may run
# beside them), then one table and one plot of them all:
#   bash scripts/figures_corrections_ablation.sh [MINUTES]
# MINUTES (default 25): training wall time of each trained arm and of the correction head.
# IHP_ARMS="network boost" runs a subset (network prev_mask wide_maps focus_crop boost
# head); the table takes every arm whose folder holds results. About 2 hours in all on the 2-core
# development CPU (runs/ablation/, git-ignored; the trained networks stay there).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-25}"
arms="${IHP_ARMS:-network prev_mask wide_maps focus_crop boost head}"
bin=.venv/bin
runs=runs/ablation
mkdir -p $runs
for arm in $arms; do
    echo "== $arm ($(date -u +%H:%M:%S))"
    if [[ $arm == head ]]; then
        $bin/ihp-rt train --config configs/correction_head.yaml --out $runs/head \
            --time-limit "$minutes"
        $bin/ihp-rt export --model $runs/head/last.pt -o $runs/head/model.onnx
        $bin/ihp-rt eval --data ../shared/data/ccp --names configs/ccp_val_names.txt --model $runs/head/model.onnx \
            --max-clicks 20 --click-radius 4 0 --out $runs/head/eval
    else
        $bin/python -m ihp_rt.benchmarks.corrections_ablation --arm "$arm" --minutes "$minutes" --out "$runs/$arm"
    fi
done
done_arms=()
for arm in network prev_mask wide_maps focus_crop boost head; do
    [[ -e $runs/$arm/eval.json || -e $runs/$arm/eval/eval.json ]] && done_arms+=("$runs/$arm")
done
$bin/python -m ihp_rt.benchmarks.corrections_ablation --combine "${done_arms[@]}" \
    --out benchmarks/results/corrections_ablation
