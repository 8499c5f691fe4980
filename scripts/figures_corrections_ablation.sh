#!/usr/bin/env bash
# Regenerates README "Corrections that take": every arm of the corrections ablation, one after the
# other on an otherwise idle machine (the trained arms get equal wall time, so nothing may run
# beside them), the sweep that chose the shipped boost's rule, sigma and margin, then one table and
# plot of the arms and one of the sweep:
#   bash scripts/figures_corrections_ablation.sh [MINUTES]
# MINUTES (default 25): training wall time of each trained arm and of the correction head.
# IHP_ARMS="network boost" runs a subset (network prev_mask wide_maps focus_crop boost head sweep);
# the tables take every arm whose folder holds results. About 2.5 hours in all on the 2-core
# development CPU (runs/ablation/, git-ignored; the trained networks stay there).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-25}"
arms="${IHP_ARMS:-network prev_mask wide_maps focus_crop boost head sweep}"
bin=.venv/bin
runs=runs/ablation
results=benchmarks/results/corrections_ablation
ablation() { $bin/python -m ihp_rt.benchmarks.corrections_ablation "$@"; }
mkdir -p $runs/sweep
for arm in $arms; do
    echo "== $arm ($(date -u +%H:%M:%S))"
    if [[ $arm == head ]]; then
        $bin/ihp-rt train --config configs/correction_head.yaml --out $runs/head --time-limit "$minutes"
        $bin/ihp-rt export --model $runs/head/last.pt -o $runs/head/model.onnx
        $bin/ihp-rt eval --data ../shared/data/ccp --names configs/ccp_val_names.txt --model $runs/head/model.onnx \
            --max-clicks 20 --click-radius 4 0 --out $runs/head/eval
    elif [[ $arm == sweep ]]; then  # folder names: rule, sigma (px), margin (logits)
        for rule in parts batch; do ablation --arm boost --boost-rule $rule --out $runs/sweep/${rule}_s16_m1; done
        for sigma in 8 12 24 32; do ablation --arm boost --boost-sigma $sigma --out $runs/sweep/clicks_s${sigma}_m1; done
        for margin in 0.25 3; do ablation --arm boost --boost-margin $margin --out $runs/sweep/clicks_s16_m$margin; done
        ln -sfn ../boost $runs/sweep/clicks_s16_m1  # the shipped values: the boost arm
    else
        ablation --arm "$arm" --minutes "$minutes" --out "$runs/$arm"
    fi
done
combine() {  # OUT FOLDER...: the table and plot of those of the folders that hold results
    local out=$1 done_arms=()
    shift
    for folder in "$@"; do
        [[ -e $folder/eval.json || -e $folder/eval/eval.json ]] && done_arms+=("$folder")
    done
    ablation --combine "${done_arms[@]}" --out "$out"
}
combine $results $runs/{network,prev_mask,wide_maps,focus_crop,head,boost}
combine $results/sweep $runs/sweep/{clicks_s16_m1,parts_s16_m1,batch_s16_m1,clicks_s8_m1,clicks_s12_m1} \
    $runs/sweep/{clicks_s24_m1,clicks_s32_m1,clicks_s16_m0.25,clicks_s16_m3}
