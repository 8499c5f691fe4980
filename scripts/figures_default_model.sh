#!/usr/bin/env bash
# Regenerates every README figure that depends on the shipped default model, one after the other
# on an otherwise idle machine (never beside a training run: contention skews the timings):
#   bash scripts/figures_default_model.sh [OLD_DEFAULT_COMMIT]
# OLD_DEFAULT_COMMIT (default 35711b8, the first shipped default) names the commit whose
# ihp_default.pt the bench runs side by side with today's (README "Speed and memory").
# IHP_FIGURES_ONLY="eval bench" runs a subset: overlay parity eval clicks synthetic precision int8
# bench load page. About 15 minutes in all on the 2-core development CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
old_commit="${1:-35711b8}"
only="${IHP_FIGURES_ONLY:-overlay parity eval clicks synthetic precision int8 bench load page}"
bin=.venv/bin
results=benchmarks/results
data=../shared/data/ccp
val=configs/ccp_val_names.txt
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
wants() { [[ " $only " == *" $1 "* ]]; }
step() { echo "== $1 ($(date -u +%H:%M:%S))"; }

if wants overlay; then
    step "astronaut overlay"
    $bin/ihp-rt predict examples/astronaut.jpg --clicks examples/astronaut_clicks.json \
        -o "$tmp/astronaut_labels.png" --overlay $results/astronaut_overlay.png
fi
if wants parity; then
    step "ONNX parity"
    $bin/ihp-rt export --model ihp_rt/assets/ihp_default.pt -o "$tmp/default.onnx" --check 20 \
        | sed "s|$tmp/||" > $results/export_parity.txt
    cat $results/export_parity.txt
fi
if wants eval; then
    step "held-out photos"
    $bin/ihp-rt eval --data $data --names $val --max-clicks 20 --standard 85 50 --baselines --click-radius 4 0 \
        --save-examples 4 --out $results/eval_ccp_val
fi
if wants clicks; then
    step "click radius on the first 32 held-out photos"
    $bin/ihp-rt eval --data $data --names $val --limit 32 --max-clicks 10 --click-radius 0 2 4 6 8 12 \
        --out $results/eval_click_radius
fi
if wants synthetic; then
    step "synthetic people"
    $bin/ihp-rt synth --out "$tmp/synthetic_eval" --count 32 --seed 1000
    $bin/ihp-rt eval --data "$tmp/synthetic_eval" --max-clicks 20 --standard 85 50 --save-examples 2 \
        --out $results/eval_synthetic
fi
if wants precision || wants int8; then
    $bin/ihp-rt export --model ihp_rt/assets/ihp_default.pt -o "$tmp/default_fp16.onnx" --precision fp16
    $bin/ihp-rt export --model ihp_rt/assets/ihp_default.pt -o "$tmp/default_int8.onnx" --precision int8 \
        --calibration $data
fi
if wants precision; then
    step "FP32 / INT8 / FP16 on 16 photos"
    $bin/ihp-rt eval --data $data --names $val --limit 16 --max-clicks 10 --model ihp_rt/assets/ihp_default.onnx \
        --model "$tmp/default_int8.onnx" --model "$tmp/default_fp16.onnx" --out $results/eval_precision
fi
if wants int8; then
    step "FP32 / INT8 on 64 photos"
    $bin/ihp-rt eval --data $data --names $val --max-clicks 20 --standard 85 50 --model ihp_rt/assets/ihp_default.onnx \
        --model "$tmp/default_int8.onnx" --out $results/eval_int8_ccp_val
fi
if wants bench; then
    step "bench: today's default beside the one of $old_commit"
    git show "$old_commit:ihp_rt/assets/ihp_default.pt" > "$tmp/default_v1_mbv3.pt"
    $bin/ihp-rt bench --model ihp_rt/assets/ihp_default.pt --model "$tmp/default_v1_mbv3.pt" \
        -o $results/bench_default --calibration $data
fi
if wants load; then
    step "load"
    $bin/ihp-rt loadtest --sessions 1 --clicks 20 -o $results/load_1_ws
    $bin/ihp-rt loadtest --sessions 4 --clicks 20 -o $results/load_4_ws
    $bin/ihp-rt loadtest --sessions 4 --clicks 20 --transport http -o $results/load_4_http
    $bin/ihp-rt loadtest --workers 2 --threads 1 --sessions 4 --clicks 20 -o $results/load_2w_4_ws
    $bin/ihp-rt loadtest --workers 2 --threads 1 --sessions 4 --clicks 20 --transport http -o $results/load_2w_4_http
    $bin/ihp-rt loadtest --workers 2 --threads 1 --sessions 4 --clicks 20 --transport http --cache-images 0 \
        -o $results/load_2w_4_http_miss
fi
if wants page; then
    step "annotation page screenshot"
    $bin/python -m ihp_rt.benchmarks.page_screenshot -o $results/serve_page.png
fi
step "done"
