"""The CuPy kernel against the reference; runs wherever a CUDA GPU and CuPy exist."""

import numpy as np
import pytest

from ihp_rt.encoding import encode_reference

from .conftest import random_clicks

cp = pytest.importorskip("cupy", reason="CuPy is not installed (GPU extra)")
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _needs_device() -> None:
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cp.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"no usable CUDA device: {e}")


@pytest.mark.parametrize(("h", "w", "c", "k", "cap"), [(1, 1, 1, 0, 255), (7, 300, 3, 5, 255), (473, 473, 20, 60, 255),
                                                       (300, 517, 7, 33, 1000), (64, 64, 11, 40, 16)])
def test_cuda_kernel_matches_reference(h: int, w: int, c: int, k: int, cap: int) -> None:
    from ihp_rt.encoding.cuda import encode_cuda

    clicks = random_clicks(np.random.default_rng(h * w + k), k, c, h, w)
    got = cp.asnumpy(encode_cuda(clicks, c, h, w, cap))
    assert np.array_equal(got, encode_reference(clicks, c, h, w, cap))


def test_cuda_kernel_writes_into_input_buffer(rng) -> None:
    from ihp_rt.encoding.cuda import encode_cuda

    clicks = random_clicks(rng, 25, 20, 473, 473)
    buf = cp.full((1, 23, 473, 473), -7.0, dtype=cp.float32)
    encode_cuda(clicks, 20, 473, 473, out=buf[0, 3:])
    assert np.array_equal(cp.asnumpy(buf[0, 3:]), encode_reference(clicks, 20, 473, 473))
    assert bool((buf[0, :3] == -7).all())


def test_the_kernel_trial_run_passes_on_this_gpu() -> None:
    """The probe every GPU backend runs when it opens (NVRTC compiles, the maps match)."""
    from ihp_rt.encoding.cuda import check_kernel

    check_kernel()
