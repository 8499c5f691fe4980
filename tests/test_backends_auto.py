"""What `auto` does on a GPU machine whose GPU libraries only half work, and the ONNX Runtime
CUDA path's input binding -- on the CPU, with stand-ins (tests/*_standin.py) for the libraries
that cannot be installed here. These test ihp-rt's choices, not the libraries."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

import ihp_rt.encoding
from ihp_rt.backends import _tensorrt_usable, open_backend
from ihp_rt.backends import ort_backend as ort_module
from ihp_rt.encoding import encode_reference
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.export import export_onnx

from .conftest import random_clicks
from .cupy_standin import make_cupy
from .tensorrt_standin import make_tensorrt


@pytest.fixture(scope="module")
def onnx_file(tiny_checkpoint, tmp_path_factory) -> Path:
    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("auto") / "m.onnx")


def use_module(monkeypatch, name: str, module) -> None:
    monkeypatch.setitem(sys.modules, name, module)


def fresh_encoding_cuda(monkeypatch) -> None:
    """ihp_rt.encoding.cuda binds `cupy` when imported: import it afresh against a stand-in."""
    monkeypatch.setitem(sys.modules, "ihp_rt.encoding.cuda", None)
    del sys.modules["ihp_rt.encoding.cuda"]
    monkeypatch.setattr(ihp_rt.encoding, "cuda", None, raising=False)


@pytest.fixture
def broken_tensorrt(monkeypatch, tmp_path) -> None:
    """A tensorrt package that is installed but whose libraries do not load, as a wheel for
    the wrong CUDA major version behaves: the import raises OSError, not ImportError."""
    package = tmp_path / "site" / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.11: cannot open shared object file: No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)


def test_a_tensorrt_that_cannot_load_its_libraries_is_unusable_and_auto_moves_on(broken_tensorrt,
                                                                                  onnx_file) -> None:
    problem = _tensorrt_usable()
    assert problem is not None and problem.startswith("TensorRT does not load: libnvinfer.so.11")
    backend = open_backend(onnx_file)
    assert backend.name == "onnxruntime-cpu"
    assert "TensorRT unusable (TensorRT does not load: libnvinfer.so.11" in backend.choice
    with pytest.raises(BackendError, match="TensorRT is installed but does not load: libnvinfer"):
        open_backend(onnx_file, "tensorrt")  # asked for by name: no fallback


def test_tensorrt_usable_needs_a_runtime_cupy_and_a_gpu(monkeypatch) -> None:
    trt = make_tensorrt()
    use_module(monkeypatch, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "cupy" else object())
    assert _tensorrt_usable() == "CuPy is not installed; pip install 'ihp-rt[gpu]'"
    assert ("Runtime",) in trt.calls  # the TensorRT runtime was created, not only found
    monkeypatch.undo()

    use_module(monkeypatch, "tensorrt", make_tensorrt())
    use_module(monkeypatch, "cupy", make_cupy(device_count=0))
    assert _tensorrt_usable() == "no CUDA GPU visible to CuPy"
    cp = make_cupy()

    def fails() -> int:
        raise cp.cuda.runtime.CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    cp.cuda.runtime.getDeviceCount = fails
    use_module(monkeypatch, "cupy", cp)
    assert _tensorrt_usable() == ("no usable CUDA GPU through CuPy: cudaErrorInsufficientDriver: CUDA driver "
                                  "version is insufficient")
    use_module(monkeypatch, "cupy", make_cupy())
    assert _tensorrt_usable() is None


def test_a_cupy_that_cannot_compile_the_click_kernel_is_unusable_and_auto_moves_on(monkeypatch, tmp_path,
                                                                                   onnx_file) -> None:
    """CuPy imports and sees the GPU, but NVRTC (the CUDA toolkit's runtime compiler) does not
    load, so the click-map kernel cannot be compiled: every GPU path must find that out when it
    opens, by compiling and running the kernel once, not at the first click of a user."""
    use_module(monkeypatch, "tensorrt", make_tensorrt())
    use_module(monkeypatch, "cupy", make_cupy(nvrtc=False))
    fresh_encoding_cuda(monkeypatch)
    monkeypatch.setenv("IHP_RT_CACHE", str(tmp_path / "cache"))
    reason = ("the CUDA click-map kernel does not compile or run through CuPy: CuPy failed to load "
              "libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared object file")
    assert (_tensorrt_usable() or "").startswith(reason)
    backend = open_backend(onnx_file)
    assert backend.name == "onnxruntime-cpu" and f"TensorRT unusable ({reason}" in backend.choice
    with pytest.raises(BackendError, match="needs CuPy and a CUDA GPU: the CUDA click-map kernel does not compile"):
        open_backend(onnx_file, "tensorrt")  # asked for by name: refused when opened, not at the first click
    monkeypatch.setattr(ort_module, "_ort", OrtWithCuda)
    cuda = open_backend(onnx_file, "onnxruntime", "cuda")
    assert cuda._device is None and f"copied whole to the GPU on every click: {reason}" in cuda.note


def test_a_click_kernel_that_computes_wrong_maps_is_unusable(monkeypatch) -> None:
    """The trial run is compared with the reference encoder: a kernel that launches but writes
    something else (a toolkit or driver that miscompiles it) fails the probe too."""
    from ihp_rt.backends.base import cupy_with_click_kernel

    from . import cupy_standin

    use_module(monkeypatch, "cupy", make_cupy())
    fresh_encoding_cuda(monkeypatch)
    monkeypatch.setattr(cupy_standin._Kernel, "__call__", lambda self, grid, block, args: args[0].host_view().fill(0))
    with pytest.raises(BackendError, match="computes other maps than the reference encoder"):
        cupy_with_click_kernel()


def test_auto_falls_back_when_tensorrt_fails_to_open_but_not_for_a_bad_model(monkeypatch, tmp_path, onnx_file,
                                                                             tiny_checkpoint) -> None:
    use_module(monkeypatch, "tensorrt", make_tensorrt(fail_build=True))
    use_module(monkeypatch, "cupy", make_cupy())
    fresh_encoding_cuda(monkeypatch)
    monkeypatch.setenv("IHP_RT_CACHE", str(tmp_path / "cache"))
    backend = open_backend(onnx_file)
    assert backend.name == "onnxruntime-cpu"
    assert backend.choice.startswith("TensorRT failed to open (TensorRT failed to build an engine from")
    assert backend.choice.endswith("ONNX Runtime on CPU")
    with pytest.raises(BackendError, match="failed to build"):
        open_backend(onnx_file, "tensorrt")
    logits = export_onnx(tiny_checkpoint, tmp_path / "logits.onnx", output="logits")
    use_module(monkeypatch, "tensorrt", make_tensorrt())
    with pytest.raises(ModelError, match="--head labels"):  # the model's fault: no other engine hides it
        open_backend(logits)


def test_auto_on_cpu_device_does_not_try_tensorrt(monkeypatch, onnx_file) -> None:
    trt = make_tensorrt()
    use_module(monkeypatch, "tensorrt", trt)
    use_module(monkeypatch, "cupy", make_cupy())
    backend = open_backend(onnx_file, device="cpu")
    assert backend.name == "onnxruntime-cpu" and "device 'cpu' was asked" in backend.choice
    assert trt.calls == []


class OrtWithCuda:
    """onnxruntime as a CUDA build would present itself; the "CUDA" session is the CPU one over
    the same bytes, and its IOBinding records what our code binds. A pointer bound with
    device_type 'cuda' is bound as CPU memory (the CuPy stand-in's "device" memory is host
    memory), so ONNX Runtime reads at run time whatever our code last wrote there.

    ``cuda_loads=False`` is a CUDA build whose CUDA or cuDNN libraries fail to load: ONNX Runtime
    then logs the failure, creates the session on its CPU provider all the same, and only the
    session's get_providers() shows it (onnxruntime issues #13414, #17801, #23372)."""

    def __init__(self, cuda_loads: bool = True) -> None:
        self.bindings: list[tuple] = []
        self.providers: list[list] = []  # the providers argument of every session
        self.cuda_loads = cuda_loads
        self.__version__ = onnxruntime.__version__
        self.SessionOptions = onnxruntime.SessionOptions
        self.GraphOptimizationLevel = onnxruntime.GraphOptimizationLevel

    def get_available_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, source, options, providers):  # onnxruntime's name
        self.providers.append(providers)
        names = [p if isinstance(p, str) else p[0] for p in providers]
        assert names in (["CUDAExecutionProvider"], ["CPUExecutionProvider"])
        running = ["CPUExecutionProvider"]  # ONNX Runtime always adds its CPU provider last
        if names == ["CUDAExecutionProvider"] and self.cuda_loads:
            running.insert(0, "CUDAExecutionProvider")
        return _Session(onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"]), self,
                        running)


class _Session:
    def __init__(self, session, ort: OrtWithCuda, providers: list[str]) -> None:
        self._session, self._ort, self._providers = session, ort, providers

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def io_binding(self) -> _Binding:
        return _Binding(self._session.io_binding(), self._ort.bindings)

    def run_with_iobinding(self, binding: _Binding, run_options=None) -> None:
        self._session.run_with_iobinding(binding.real, run_options)


class _Binding:
    def __init__(self, real, log: list) -> None:
        self.real, self.log = real, log

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr) -> None:
        self.log.append(("bind_input", name, device_type, device_id, element_type, tuple(shape), buffer_ptr))
        self.real.bind_input(name, "cpu", 0, element_type, shape, buffer_ptr)

    def bind_cpu_input(self, name, arr_on_cpu) -> None:
        self.log.append(("bind_cpu_input", name, arr_on_cpu.shape))
        self.real.bind_cpu_input(name, arr_on_cpu)

    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None, buffer_ptr=None):
        self.log.append(("bind_output", name, device_type))
        self.real.bind_output(name, device_type, device_id, element_type, shape, buffer_ptr)

    def copy_outputs_to_cpu(self):
        return self.real.copy_outputs_to_cpu()


def test_ort_cuda_binds_a_device_input_and_only_the_maps_change_per_click(monkeypatch, onnx_file, rng) -> None:
    fake = OrtWithCuda()
    monkeypatch.setattr(ort_module, "_ort", lambda: fake)
    cp = make_cupy()
    use_module(monkeypatch, "cupy", cp)
    fresh_encoding_cuda(monkeypatch)
    backend = open_backend(onnx_file, "onnxruntime", "cuda")
    spec, size = backend.spec, backend.spec.input_size
    buffer = backend._device.buffer
    assert backend.name == "onnxruntime-cuda" and backend.note == ""
    assert fake.bindings == [("bind_input", "input", "cuda", 0, np.float32, (1, 23, size, size), buffer.data.ptr),
                             ("bind_output", "labels", "cpu"), ("bind_output", "coarse", "cpu")]
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    cp.transfers.clear()
    backend.set_image(image)
    assert [t[:2] for t in cp.transfers] == [("to_device", image.nbytes)]
    for k in (2, 9):
        cp.transfers.clear()
        clicks = random_clicks(rng, k, spec.num_classes, size, size)
        mask = backend.predict(clicks).labels
        assert [t[:2] for t in cp.transfers] == [("to_device", clicks.nbytes)]  # the clicks, not 20 MB of input
        maps = encode_reference(clicks, spec.num_classes, size, size, spec.cap)
        expected = session.run(None, {"input": np.concatenate([image, maps])[None]})[0][0]
        assert np.array_equal(mask, expected)
    assert len(fake.bindings) == 3  # bound once, never re-bound per click


def test_ort_cuda_without_cupy_binds_host_memory_and_says_so(monkeypatch, onnx_file, rng) -> None:
    fake = OrtWithCuda()
    monkeypatch.setattr(ort_module, "_ort", lambda: fake)
    monkeypatch.setitem(sys.modules, "cupy", None)
    fresh_encoding_cuda(monkeypatch)
    backend = open_backend(onnx_file, "onnxruntime", "cuda")
    size = backend.spec.input_size
    assert fake.bindings[0] == ("bind_cpu_input", "input", (1, 23, size, size))
    assert "copied whole to the GPU on every click" in backend.choice
    backend.set_image(rng.standard_normal((3, size, size)).astype(np.float32))
    assert backend.predict(random_clicks(rng, 3, backend.spec.num_classes, size, size)).labels.shape == (size, size)


def test_ort_cuda_whose_provider_fails_to_load_runs_on_cpu_and_says_so(monkeypatch, onnx_file, rng) -> None:
    """ONNX Runtime answers a CUDA provider that fails to load (CUDA or cuDNN libraries missing)
    by running the session on its CPU provider, logging the failure and raising nothing. The
    backend must see it, bind no device pointer into that CPU session, run as onnxruntime-cpu
    (with the CPU path's cut graph) and say why, both when asked by name and under `auto`."""
    fake = OrtWithCuda(cuda_loads=False)
    monkeypatch.setattr(ort_module, "_ort", lambda: fake)
    use_module(monkeypatch, "cupy", make_cupy())
    fresh_encoding_cuda(monkeypatch)
    backend = open_backend(onnx_file, "onnxruntime", "cuda")
    assert backend.name == "onnxruntime-cpu"
    assert "CUDAExecutionProvider did not load" in backend.note and backend.note in backend.choice
    assert backend._device is None and not [b for b in fake.bindings if b[:3] == ("bind_input", "input", "cuda")]
    assert backend._stem_conv is not None  # rebuilt as a CPU backend, not a CUDA one running on CPU
    size, spec = backend.spec.input_size, backend.spec
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    clicks = random_clicks(rng, 5, spec.num_classes, size, size)
    backend.set_image(image)
    maps = encode_reference(clicks, spec.num_classes, size, size, spec.cap)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": np.concatenate([image, maps])[None]})[0][0]
    assert np.array_equal(backend.predict(clicks).labels, expected)

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # auto: no TensorRT, ONNX Runtime offers CUDA
    chosen = open_backend(onnx_file)
    assert chosen.name == "onnxruntime-cpu"
    assert "ONNX Runtime has CUDA" in chosen.choice and "CUDAExecutionProvider did not load" in chosen.choice


def test_auto_falls_back_when_tensorrt_cannot_parse_a_graph_onnx_runtime_runs(monkeypatch, tmp_path,
                                                                              onnx_file) -> None:
    """TensorRT's ONNX parser supports fewer operators than ONNX Runtime: a graph it rejects is
    TensorRT's limit (BackendError, so `auto` moves on), not a broken model. A graph ONNX Runtime
    cannot load either, or a file that is not ONNX at all, stays the model's fault (ModelError)."""
    import onnx

    use_module(monkeypatch, "tensorrt", make_tensorrt(fail_parse=True))
    use_module(monkeypatch, "cupy", make_cupy())
    fresh_encoding_cuda(monkeypatch)
    monkeypatch.setenv("IHP_RT_CACHE", str(tmp_path / "cache"))
    backend = open_backend(onnx_file)
    assert backend.name == "onnxruntime-cpu"
    assert backend.choice.startswith("TensorRT failed to open (TensorRT 11.4.0.106 cannot parse")
    with pytest.raises(BackendError, match="UNSUPPORTED_NODE"):
        open_backend(onnx_file, "tensorrt")  # asked for by name: no fallback, but not the model's fault

    model = onnx.load(str(onnx_file))
    model.graph.node[0].op_type = "NoSuchOperator"
    unrunnable = tmp_path / "unrunnable.onnx"
    onnx.save(model, str(unrunnable))
    with pytest.raises(ModelError, match="ONNX Runtime cannot load it"):
        open_backend(unrunnable)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\x00 not a protobuf" * 8)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        open_backend(garbage)


def test_every_gpu_path_probes_cupy_alike_and_reports_errors_in_one_line(monkeypatch, onnx_file) -> None:
    """auto's TensorRT check, the TensorRT backend and ONNX Runtime's device input share one
    probe for "CuPy with a GPU" (base.cupy_with_gpu) and one error formatter (base.one_line), so
    they cannot drift apart in what they accept or in how they say what is missing."""
    from ihp_rt.backends.base import one_line

    assert one_line(RuntimeError("cudaErrorNoDevice:\n  no CUDA-capable device\n")) == (
        "cudaErrorNoDevice: no CUDA-capable device")
    assert one_line(RuntimeError()) == "RuntimeError" and len(one_line(ValueError("x" * 1000))) == 300

    use_module(monkeypatch, "tensorrt", make_tensorrt())
    use_module(monkeypatch, "cupy", make_cupy(device_count=0))
    fresh_encoding_cuda(monkeypatch)
    reason = _tensorrt_usable()
    assert reason == "no CUDA GPU visible to CuPy"
    with pytest.raises(BackendError, match=f"backend 'tensorrt' needs CuPy and a CUDA GPU: {reason}$"):
        open_backend(onnx_file, "tensorrt")
    monkeypatch.setattr(ort_module, "_ort", OrtWithCuda)
    assert open_backend(onnx_file, "onnxruntime", "cuda").note.endswith(f": {reason}")


def test_ort_cuda_runs_on_cupys_current_device_not_device_0(monkeypatch, onnx_file, rng) -> None:
    """The input lives in CuPy memory on CuPy's current device; ONNX Runtime's CUDA provider
    defaults to device 0, so it is told the same device, and every CuPy call of the backend runs
    on that device even from a thread whose current device is another (it is per thread)."""
    fake = OrtWithCuda()
    monkeypatch.setattr(ort_module, "_ort", lambda: fake)
    cp = make_cupy(device_count=2)
    use_module(monkeypatch, "cupy", cp)
    fresh_encoding_cuda(monkeypatch)
    cp.cuda.Device(1).use()
    backend = open_backend(onnx_file, "onnxruntime", "cuda")
    assert fake.providers == [[("CUDAExecutionProvider", {"device_id": 1})]]
    assert fake.bindings[0][2:4] == ("cuda", 1) and backend._device.buffer.device.id == 1
    cp.cuda.Device(0).use()  # as in another thread of a server
    size = backend.spec.input_size
    backend.set_image(rng.standard_normal((3, size, size)).astype(np.float32))
    clicks = random_clicks(rng, 4, backend.spec.num_classes, size, size)
    assert backend.predict(clicks).labels.shape == (size, size)  # the stand-in kernel checks the device
    assert cp.cuda.Device().id == 0  # and the caller's current device is left as it was
