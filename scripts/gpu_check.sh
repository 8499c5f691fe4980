#!/usr/bin/env bash
# The one prepared GPU check of ihp-rt (issue 12), for a lent H100/H200.
#
# What it runs (benchmarks/gpu_check.py has the details), each part in its own process with its
# own time limit inside a 450 s budget, so the whole run takes at most 8 minutes:
#   the gpu-marked tests (CuPy kernel vs the reference), the CMake/CTest kernel check, torch-CUDA
#   parity with the CPU masks, `ihp-rt bench` rows for torch-cuda FP32 and FP16 on the default
#   model and the paper's ResNet-101 at 473x473 (p50/p95/p99, peak GPU memory, against the
#   paper's 20 ms / 1,799 MB), the click-encoding benchmark with the CuPy kernel, training steps/s
#   of the default recipe, and the per-click step captured in a CUDA graph vs without.
# Results: benchmarks/results/gpu/gpu_check.{json,md,log}, rewritten after every part, and copied
# to $OUT/gpu/ when $OUT is set (the device tool brings $OUT back). Exit 0 when every part passed.
# Without a CUDA GPU it says so, writes nothing and exits 0.
#
# On the device machine (PyTorch with CUDA, CuPy, nvcc and CMake are there; no TensorRT, no
# onnxruntime-gpu, no network), from the repository root, one call:
#   run(command="bash scripts/gpu_check.sh", timeout_s=540)
# Nothing is installed: the package is staged in a temporary folder the way pyproject.toml maps
# it (ihp_rt/, export/ as ihp_rt.export, benchmarks/ as ihp_rt.benchmarks; symbolic links to this
# tree) and put first on PYTHONPATH, so pinned packages missing there (onnxslim, ...) do not
# matter: no part imports them. Settings: PYTHON (default python3), IHP_GPU_CHECK_OUT (results
# folder), IHP_GPU_CHECK_BUDGET (seconds), IHP_GPU_CHECK_ONLY (comma-separated parts).
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
stage="$(mktemp -d "${TMPDIR:-/tmp}/ihp_rt_stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

"$python" - "$repo" "$stage" <<'PY' || { echo "gpu_check: could not stage the package with $python" >&2; exit 2; }
import sys
import tomllib
from pathlib import Path

repo, stage = Path(sys.argv[1]), Path(sys.argv[2])
package = stage / "ihp_rt"
package.mkdir()
for entry in (repo / "ihp_rt").iterdir():
    if entry.name != "__pycache__":
        (package / entry.name).symlink_to(entry)
mapped = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-dir", {})
for name, folder in mapped.items():
    parent, _, child = name.rpartition(".")
    assert parent == "ihp_rt" and child, f"unexpected package-dir entry {name}"
    (package / child).symlink_to(repo / folder)
PY

args=(--repo "$repo" --out "${IHP_GPU_CHECK_OUT:-$repo/benchmarks/results/gpu}")
[ -n "${OUT:-}" ] && args+=(--mirror "$OUT/gpu")
[ -n "${IHP_GPU_CHECK_BUDGET:-}" ] && args+=(--budget "$IHP_GPU_CHECK_BUDGET")
[ -n "${IHP_GPU_CHECK_ONLY:-}" ] && args+=(--only "$IHP_GPU_CHECK_ONLY")
# Run from the staging folder: Python puts the working directory first on sys.path, and there
# ihp_rt is the staged package (with export and benchmarks), not the bare folder of this tree.
cd "$stage" && PYTHONPATH="$stage${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    "$python" -m ihp_rt.benchmarks.gpu_check "${args[@]}"
