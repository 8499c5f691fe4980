"""The CUDA kernel must at least compile wherever nvcc exists.

Most development machines have nvcc but no GPU, so the CuPy kernel tests (marker ``gpu``) never run
there. This test builds the CMake check program (csrc/check_click_maps.cu, which includes the same
ihp_rt/encoding/click_maps.cu the package loads through CuPy) and runs it through CTest: on a GPU it
compares the kernel with a C++ reference, without one it exits 77 and CTest reports it skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED = 77  # the check program's exit code without a CUDA device (CTest SKIP_RETURN_CODE)


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def has_gpu() -> bool:
    """True when ``nvidia-smi -L`` exists and succeeds."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return run(["nvidia-smi", "-L"], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow  # about 15 s: configure plus one nvcc compile for two architectures
def test_kernel_check_builds_and_runs(tmp_path: Path) -> None:
    missing = [tool for tool in ("nvcc", "cmake", "ctest") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH: cannot build the CUDA kernel check")
    build = tmp_path / "build"
    configure = run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = run(["cmake", "--build", str(build), "-j2"], timeout=600)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    binary = build / "check_click_maps"
    assert binary.is_file(), f"cmake did not build {binary}:\n{configure.stdout}\n{compiled.stdout}"

    ctest = run(["ctest", "--test-dir", str(build), "--output-on-failure"], timeout=600)
    assert ctest.returncode == 0, ctest.stdout + ctest.stderr

    gpu = has_gpu()
    direct = run([str(binary)], timeout=600)
    output = direct.stdout + direct.stderr
    assert direct.returncode in (0, SKIPPED), output
    assert (direct.returncode == SKIPPED) == (not gpu), f"nvidia-smi -L {'works' if gpu else 'fails'}:\n{output}"
    if gpu:
        assert "0 mismatches" in direct.stdout, output
    else:
        assert "no CUDA device: skipping" in direct.stdout, output
        assert "Skipped" in ctest.stdout, ctest.stdout
