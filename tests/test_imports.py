"""Optional and heavy libraries must stay optional: `import ihp_rt` needs none of them, and
every CPU module imports on a machine without CUDA libraries."""

import ast
import pkgutil
import subprocess
import sys

import ihp_rt

GPU_ONLY = {"ihp_rt.encoding.cuda"}

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'blocked for this test: {{name}}')
sys.meta_path.insert(0, Block())
"""


def run_blocked(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    script = BLOCKER.format(blocked=blocked) + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(ihp_rt.__path__, "ihp_rt."))


def test_import_ihp_rt_needs_no_torch_cuda_or_onnx() -> None:
    result = run_blocked(
        {"torch", "cupy", "tensorrt", "onnxruntime", "onnx", "pycuda", "fastapi"},
        "import ihp_rt, ihp_rt.encoding, ihp_rt.clicks, ihp_rt.labels, ihp_rt.geometry, ihp_rt.images\n"
        "print(ihp_rt.__version__, len(ihp_rt.__all__))",
    )
    assert result.returncode == 0, result.stderr


def test_every_cpu_module_imports_without_gpu_libraries() -> None:
    modules = [m for m in all_modules() if m not in GPU_ONLY]
    assert "ihp_rt.backends.torch_backend" in modules and "ihp_rt.cli" in modules
    code = f"import importlib\nfor m in {modules!r}: importlib.import_module(m)"
    result = run_blocked({"cupy", "tensorrt", "pycuda"}, code)
    assert result.returncode == 0, result.stderr


def test_gpu_modules_fail_only_on_their_own_library() -> None:
    for module in sorted(GPU_ONLY):
        result = run_blocked({"cupy"}, f"import {module}")
        assert result.returncode != 0 and "blocked for this test: cupy" in result.stderr


def test_public_api_is_explicit() -> None:
    for name in ihp_rt.__all__:
        assert hasattr(ihp_rt, name), name
    assert {"Session", "Click", "ModelSpec", "get_label_set", "InputError"} <= set(ihp_rt.__all__)


def test_pyproject_lists_every_package() -> None:
    import tomllib
    from pathlib import Path

    root = Path(ihp_rt.__file__).parent
    config = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"ihp_rt"} | {"ihp_rt." + p.parent.relative_to(root).as_posix().replace("/", ".")
                          for p in root.rglob("__init__.py") if p.parent != root}
    mapped = set(config["package-dir"])
    assert found | mapped == listed


def test_server_without_the_serve_extra_says_which_extra() -> None:
    """The serving package imports without FastAPI; `ihp-rt serve` names the missing extra."""
    result = run_blocked({"fastapi", "uvicorn", "starlette"},
                         "import ihp_rt.serving, ihp_rt.serving.store, ihp_rt.serving.loadtest\n"
                         "from ihp_rt.cli import main\nraise SystemExit(main(['serve']))")
    assert result.returncode == 2, result.stderr
    assert "ihp-rt: error: serving needs the serve extra: pip install 'ihp-rt[serve]'" in result.stderr


RUNTIME_SOURCES = ("backends", "encoding", "serving", "session.py")  # under ihp_rt/: what a deployment runs


def _imports_export(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name == "ihp_rt.export" or a.name.startswith("ihp_rt.export.") for a in node.names)
    if isinstance(node, ast.ImportFrom) and node.module:
        return (node.module == "ihp_rt.export" or node.module.startswith("ihp_rt.export.")
                or (node.module == "ihp_rt" and any(a.name == "export" for a in node.names)))
    return False


def test_the_runtime_never_imports_the_export_package() -> None:
    """export/ (installed as ihp_rt.export) is a build-time tool; sessions and backends must run
    without it. Checked in the source, function-level imports included (a TensorRT backend that
    imported the builder from ihp_rt.export only when opening an .onnx would pass any import-time
    check), and by running a session with ihp_rt.export blocked."""
    from pathlib import Path

    root = Path(ihp_rt.__file__).parent
    files = [p for entry in RUNTIME_SOURCES for p in ([root / entry] if entry.endswith(".py")
                                                       else sorted((root / entry).rglob("*.py")))]
    assert root / "backends" / "trt_backend.py" in files
    offenders = [f"{p.relative_to(root.parent)}:{node.lineno}" for p in files
                 for node in ast.walk(ast.parse(p.read_text())) if _imports_export(node)]
    assert offenders == [], f"the runtime imports ihp_rt.export at {offenders}"
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'ihp_rt.export' or name.startswith('ihp_rt.export.'):
            raise ImportError(f'blocked for this test: {name}')
sys.meta_path.insert(0, Block())
import numpy as np
import ihp_rt.backends.engine_cache, ihp_rt.backends.trt_backend
from ihp_rt.session import Session
from ihp_rt.zoo import default_onnx_path
s = Session.open(default_onnx_path(), backend='onnxruntime', device='cpu', threads=1)
s.set_image(np.zeros((64, 48, 3), np.uint8))
s.add_click(10, 10, 1)
print(s.predict().labels.shape)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(64, 48)"


def test_gpu_extras_each_hold_one_cuda_major_version() -> None:
    """A CUDA 12 and a CUDA 13 user each get a CuPy and a TensorRT that load: one extra per CUDA
    major version, never a wheel of the other one mixed in; onnxruntime-gpu (CUDA 13 on PyPI)
    only in the CUDA 13 extra, at the base onnxruntime's version (both install the same files)."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(ihp_rt.__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = {name: dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", r).groups() for r in extras[name])
            for name in ("gpu", "gpu-cuda12")}
    assert {"cupy-cuda13x", "tensorrt-cu13", "onnxruntime-gpu"} <= set(pins["gpu"])
    assert {"cupy-cuda12x", "tensorrt-cu12"} <= set(pins["gpu-cuda12"])
    for name, other in (("gpu", "12"), ("gpu-cuda12", "13")):
        assert not [p for p in pins[name] if re.search(rf"cu(da)?{other}", p)], (name, pins[name])
    assert "onnxruntime-gpu" not in pins["gpu-cuda12"] and "tensorrt" not in pins["gpu"]  # the meta package is cu13
    base = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", r).groups() for r in project["dependencies"])
    assert pins["gpu"]["onnxruntime-gpu"] == base["onnxruntime"]
    assert pins["gpu"]["tensorrt-cu13"] == pins["gpu-cuda12"]["tensorrt-cu12"]
