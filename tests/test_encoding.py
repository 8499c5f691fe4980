"""Every CPU click encoder must agree exactly with the float64 NumPy reference."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ihp_rt.encoding import encode_cpu, encode_reference, reach
from ihp_rt.encoding.torch_encoding import encode_torch
from ihp_rt.errors import InputError

from .conftest import random_clicks


def test_reference_on_a_hand_made_case() -> None:
    clicks = np.array([[2, 3, 1], [9, 3, 1], [0, 0, 0]], dtype=np.int32)
    maps = encode_reference(clicks, num_classes=3, height=5, width=12)
    assert maps.shape == (3, 5, 12) and maps.dtype == np.float32
    assert maps[1, 3, 2] == 0 and maps[1, 3, 9] == 0
    assert maps[1, 3, 5] == 9  # 3 px from the first click, 4 from the second
    assert maps[1, 0, 0] == 2**2 + 3**2
    assert maps[0, 4, 11] == min(255, 11**2 + 4**2)
    assert (maps[2] == 255).all()  # no click of class 2


def test_cap_limits_reach_to_isqrt() -> None:
    assert reach(255) == 15 and reach(256) == 16 and reach(1) == 1
    maps = encode_reference(np.array([[50, 50, 0]], dtype=np.int32), 1, 101, 101)
    changed = np.argwhere(maps[0] < 255)
    assert changed.min(0).tolist() == [35, 35] and changed.max(0).tolist() == [65, 65]


encoder_case = st.tuples(
    st.integers(1, 70),  # height
    st.integers(1, 70),  # width
    st.integers(1, 8),  # classes
    st.integers(0, 25),  # clicks
    st.sampled_from([1, 16, 255, 1000]),  # cap
    st.integers(0, 2**31 - 1),  # seed
)


@settings(max_examples=150, deadline=None)
@given(encoder_case)
def test_cpu_encoder_matches_reference(case) -> None:
    h, w, c, k, cap, seed = case
    clicks = random_clicks(np.random.default_rng(seed), k, c, h, w)
    assert np.array_equal(encode_cpu(clicks, c, h, w, cap), encode_reference(clicks, c, h, w, cap))


@settings(max_examples=60, deadline=None)
@given(encoder_case)
def test_torch_encoder_matches_reference(case) -> None:
    h, w, c, k, cap, seed = case
    clicks = random_clicks(np.random.default_rng(seed), k, c, h, w)
    got = encode_torch(clicks, c, h, w, cap).numpy()
    assert np.array_equal(got, encode_reference(clicks, c, h, w, cap))


def test_full_size_many_clicks(rng) -> None:
    clicks = random_clicks(rng, 150, 20, 473, 473)  # more than one torch chunk per class
    ref = encode_reference(clicks, 20, 473, 473)
    assert np.array_equal(encode_cpu(clicks, 20, 473, 473), ref)
    assert np.array_equal(encode_torch(clicks, 20, 473, 473).numpy(), ref)


def test_encoders_write_into_a_network_input_buffer(rng) -> None:
    clicks = random_clicks(rng, 12, 5, 40, 30)
    ref = encode_reference(clicks, 5, 40, 30)
    buf = np.full((1, 8, 40, 30), -7.0, dtype=np.float32)
    encode_cpu(clicks, 5, 40, 30, out=buf[0, 3:])
    assert np.array_equal(buf[0, 3:], ref) and (buf[0, :3] == -7).all()
    tbuf = torch.full((1, 8, 40, 30), -7.0)
    encode_torch(clicks, 5, 40, 30, out=tbuf[0, 3:])
    assert np.array_equal(tbuf[0, 3:].numpy(), ref) and (tbuf[0, :3] == -7).all()


@pytest.mark.parametrize("encode", [encode_reference, encode_cpu, encode_torch])
def test_bad_clicks_are_refused_by_every_encoder(encode) -> None:
    with pytest.raises(InputError, match="outside the 10x10 frame"):
        encode(np.array([[10, 0, 0]], dtype=np.int32), 2, 10, 10)
    with pytest.raises(InputError, match="label"):
        encode(np.array([[1, 1, 2]], dtype=np.int32), 2, 10, 10)
    with pytest.raises(InputError, match=r"\(K, 3\)"):
        encode(np.array([[1.0, 1.0, 0.0]]), 2, 10, 10)
