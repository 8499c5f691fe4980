"""The CUDA kernel must at least compile wherever nvcc exists: build the CMake check program
(the same click_maps.cu the package loads through CuPy) and run it through CTest, which reports
it skipped (exit code 77) on a machine without a GPU."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.slow
def test_kernel_check_builds_and_runs(tmp_path) -> None:
    if shutil.which("nvcc") is None or shutil.which("cmake") is None:
        pytest.skip("nvcc and cmake are needed to build the CUDA check program")
    build = tmp_path / "build"
    configure = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                               capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, timeout=900)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    binary = build / "check_click_maps"
    assert binary.is_file()
    ctest = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True,
                           timeout=600)
    assert ctest.returncode == 0, ctest.stdout + ctest.stderr
    direct = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600)
    assert direct.returncode == (0 if has_gpu() else 77), direct.stdout + direct.stderr
    if not has_gpu():
        assert "no CUDA device: skipping" in direct.stdout
        assert "Skipped" in ctest.stdout or "skipped" in ctest.stdout.lower()
