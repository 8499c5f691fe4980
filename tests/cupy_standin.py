"""A stand-in `cupy` module for contract tests of ihp-rt's GPU code paths on a machine without a GPU.

This is NOT a test of CuPy. It implements the few CuPy calls ihp-rt's TensorRT and ONNX Runtime
CUDA backends and its kernel wrapper make, following the CuPy reference (docs.cupy.dev):
``cupy.zeros / empty / asarray``, ``ndarray.set(arr, stream=None)``,
``ndarray.get(stream=None, order='C', out=None, blocking=True)``, ``ndarray.data.ptr``,
``cupy.cuda.Stream(null=False, non_blocking=False, ptds=False)`` (a context manager with ``ptr``
and ``synchronize()``), ``cupy.cuda.Event().record(stream=None)``, ``cupy.cuda.get_elapsed_time``,
``cupy.cuda.alloc_pinned_memory(size)``, ``cupy.cuda.Device(device=None)`` (``id``, ``use()``, and a
context manager that makes it current), ``ndarray.device``,
``cupy.cuda.runtime.getDeviceCount / getDeviceProperties``, and
``cupy.RawModule(code=..., options=...).get_function(name)`` whose kernels are called as
``kernel(grid, block, args)``.

"Device" memory is host memory, so ``data.ptr`` is a real address: a stand-in engine can read
what the code wrote through the pointers it was given. Every host <-> device copy is recorded
in ``transfers`` as (direction, bytes, stream pointer), so a test can tell which bytes cross.
The one kernel (``ihp_click_maps``) is emulated with the reference encoder, after checking that
the launch grid covers the maps and that its arrays live on the current device (CUDA launches
on the current device, which is per thread), so the real wrapper's argument order and the
device it is called under are exercised. ``make_cupy(nvrtc=False)`` is a CuPy whose NVRTC (the
runtime compiler of the CUDA toolkit) does not load: like CuPy, it fails when the kernel is first
compiled, at its first launch, with CuPy's message, while everything else works.
"""

from __future__ import annotations

import importlib.machinery
import itertools
import types

import numpy as np

from ihp_rt.encoding import encode_reference

float32, uint8, int32 = np.float32, np.uint8, np.int32


class CUDARuntimeError(RuntimeError):
    pass


class _Pointer:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class Stream:
    """A CUDA stream: an id standing for a cudaStream_t (never 0, the legacy default stream)."""

    _ids = itertools.count(0x5000)

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False) -> None:
        self.ptr = 0 if null else next(self._ids)
        self.non_blocking = non_blocking
        self.synchronized = 0
        self._previous: list[Stream] = []

    def __enter__(self) -> Stream:
        self._previous.append(_state.current)
        _state.current = self
        return self

    def __exit__(self, *exc) -> None:
        _state.current = self._previous.pop()

    def synchronize(self) -> None:
        self.synchronized += 1


class _State:
    def __init__(self) -> None:
        self.null = Stream(null=True)
        self.current = self.null
        self.device = 0  # the current CUDA device
        self.nvrtc = True  # whether kernels compile


_state = _State()


def get_current_stream() -> Stream:
    return _state.current


class ndarray:  # cupy's name
    """A "device" array over host memory."""

    def __init__(self, host: np.ndarray, device: int | None = None) -> None:
        self._a = host
        self._device = _state.device if device is None else device  # allocated on the current device

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    ndim = property(lambda self: self._a.ndim)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: _Pointer(self._a.ctypes.data))
    device = property(lambda self: Device(self._device))

    def __getitem__(self, index) -> ndarray:
        view = self._a[index]
        if not np.shares_memory(view, self._a):
            raise AssertionError("stand-in: fancy indexing would copy device memory")
        return ndarray(view, self._device)

    def set(self, arr: np.ndarray, stream: Stream | None = None) -> None:
        arr = np.asarray(arr)
        if arr.shape != self.shape or not self._a.flags.c_contiguous:
            raise ValueError(f"stand-in: set() needs a contiguous target of shape {arr.shape}, got {self.shape}")
        transfers.append(("to_device", self.nbytes, (stream or _state.current).ptr))
        self._a[...] = arr

    def get(self, stream: Stream | None = None, order: str = "C", out: np.ndarray | None = None,
            blocking: bool = True) -> np.ndarray:
        transfers.append(("to_host", self.nbytes, (stream or _state.current).ptr))
        if out is None:
            return self._a.copy()
        if out.shape != self.shape or out.dtype != self.dtype:
            raise ValueError("stand-in: out must match the array's shape and dtype")
        out[...] = self._a
        return out

    def host_view(self) -> np.ndarray:
        """For assertions only: what the "device" memory holds, without counting a transfer."""
        return self._a


def zeros(shape, dtype=float) -> ndarray:
    return ndarray(np.zeros(shape, dtype))


def empty(shape, dtype=float) -> ndarray:
    return ndarray(np.empty(shape, dtype))


def asarray(a, dtype=None) -> ndarray:
    if isinstance(a, ndarray):
        return a
    host = np.array(a, dtype=dtype, copy=True)
    transfers.append(("to_device", host.nbytes, _state.current.ptr))
    return ndarray(host)


def asnumpy(a: ndarray, stream: Stream | None = None) -> np.ndarray:
    return a.get(stream=stream)


class Event:
    _clock = itertools.count()

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        self.time: float | None = None

    def record(self, stream: Stream | None = None) -> None:
        self.time = float(next(self._clock))


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    return 0.25 * (end_event.time - start_event.time)


def alloc_pinned_memory(size: int) -> bytearray:
    return bytearray(size)


class Device:
    """A CUDA device; Device() is the current one, ``use()`` or ``with`` makes one current."""

    def __init__(self, device: int | None = None) -> None:
        self.id = _state.device if device is None else device
        self._previous: list[int] = []

    def use(self) -> None:
        _state.device = self.id

    def __enter__(self) -> Device:
        self._previous.append(_state.device)
        _state.device = self.id
        return self

    def __exit__(self, *exc) -> None:
        _state.device = self._previous.pop()


class _Kernel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, grid, block, args, *, shared_mem: int = 0) -> None:
        if self.name != "ihp_click_maps":
            raise AssertionError(f"stand-in: unknown kernel {self.name}")
        if not _state.nvrtc:
            raise RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared "
                               "object file: No such file or directory")
        out, clicks, num_clicks, num_classes, height, width, cap, _reach = args
        if not (grid[0] * block[0] >= width and grid[1] * block[1] >= height and grid[2] >= num_classes):
            raise AssertionError(f"stand-in: grid {grid} x block {block} does not cover {num_classes}x{height}x{width}")
        if out.shape != (num_classes, height, width) or not out.flags.c_contiguous:
            raise AssertionError("stand-in: the kernel writes C-contiguous (C, H, W) maps")
        if {out.device.id, clicks.device.id} != {_state.device}:
            raise AssertionError(f"stand-in: kernel launched on device {_state.device} over arrays on devices "
                                 f"{out.device.id} and {clicks.device.id}")
        rows = clicks.host_view().reshape(-1, 3)[: int(num_clicks)]
        kernels.append((_state.current.ptr, int(num_clicks)))
        out.host_view()[...] = encode_reference(rows, int(num_classes), int(height), int(width), int(cap))


class RawModule:
    def __init__(self, code: str | None = None, *, options: tuple = (), **kwargs) -> None:
        if "ihp_click_maps" not in (code or ""):
            raise AssertionError("stand-in: the module source should define ihp_click_maps")

    def get_function(self, name: str) -> _Kernel:
        return _Kernel(name)


RawKernel = _Kernel
transfers: list[tuple[str, int, int]] = []
kernels: list[tuple[int, int]] = []


def make_cupy(device_count: int = 1, gpu: str = "NVIDIA H200", capability: tuple[int, int] = (9, 0),
              nvrtc: bool = True):
    """A fresh stand-in module (own transfer log) for one test; ``nvrtc=False``: kernels do not compile."""
    module = types.ModuleType("cupy")
    module.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    for name in ("float32", "uint8", "int32", "ndarray", "zeros", "empty", "asarray", "asnumpy", "RawModule",
                 "RawKernel"):
        setattr(module, name, globals()[name])
    module.transfers = transfers
    module.kernels = kernels
    transfers.clear()
    kernels.clear()
    _state.device = 0
    _state.nvrtc = nvrtc

    def get_device_count() -> int:
        return device_count

    def get_device_properties(device: int) -> dict:
        return {"name": gpu.encode(), "major": capability[0], "minor": capability[1]}

    def mem_get_info() -> tuple[int, int]:
        return 100 << 30, 141 << 30

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count, getDeviceProperties=get_device_properties,
                                    memGetInfo=mem_get_info, CUDARuntimeError=CUDARuntimeError)
    module.cuda = types.SimpleNamespace(Stream=Stream, Event=Event, get_elapsed_time=get_elapsed_time,
                                        get_current_stream=get_current_stream, alloc_pinned_memory=alloc_pinned_memory,
                                        Device=Device, runtime=runtime)
    return module
