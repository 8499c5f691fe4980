import socket

import pytest
import torch

from ihp_rt.errors import ModelError
from ihp_rt.labels import get_label_set
from ihp_rt.model import BACKBONES, build_model
from ihp_rt.spec import ModelSpec


@pytest.fixture(autouse=True)
def _no_network(monkeypatch) -> None:
    """Building a model must never try to fetch pretrained weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("model code tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("label_set", ["lip", "ppp", "helen"])
def test_every_backbone_builds_for_every_class_count(backbone: str, label_set: str) -> None:
    spec = ModelSpec(labels=get_label_set(label_set), backbone=backbone)
    model = build_model(spec, seed=0).eval()
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == 3 + spec.num_classes == spec.in_channels
    assert stem.kernel_size == (7, 7)
    assert model.classifier.out_channels == spec.num_classes
    with torch.inference_mode():
        logits, features = model(torch.randn(1, spec.in_channels, 97, 131), return_features=True)
    assert logits.shape == (1, spec.num_classes, 97, 131)
    assert features.shape == (1, 256, 25, 33)  # stride 4 (ceil of 97/4, 131/4)
    assert torch.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize(("h", "w"), [(473, 473), (300, 517)])
def test_logits_at_input_size_for_odd_sizes(backbone: str, h: int, w: int) -> None:
    spec = ModelSpec(backbone=backbone)
    model = build_model(spec, seed=0).eval()
    with torch.inference_mode():
        logits, features = model(torch.randn(1, spec.in_channels, h, w), return_features=True)
    assert logits.shape == (1, 20, h, w)
    assert features.shape[-2:] == ((h + 3) // 4, (w + 3) // 4)


def test_seed_makes_initialisation_reproducible() -> None:
    a, b = build_model(ModelSpec(input_size=64), seed=3), build_model(ModelSpec(input_size=64), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_paper_backbone_size() -> None:
    params = sum(p.numel() for p in build_model(ModelSpec(backbone="resnet101")).parameters())
    assert 44e6 < params < 47e6  # DeepLabV3+ ResNet-101 is about 45.7 M parameters


def test_training_mode_works_at_batch_size_one() -> None:
    model = build_model(ModelSpec(input_size=64)).train()
    model(torch.randn(1, 23, 64, 64)).sum().backward()


def test_unknown_backbone() -> None:
    with pytest.raises(ModelError, match="unknown backbone 'vgg'"):
        build_model(ModelSpec(backbone="vgg"))
