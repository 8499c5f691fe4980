"""Losses on hand-made inputs where the answer is known."""

import math

import pytest
import torch
import torch.nn.functional as F

from ihp_rt.training.losses import adjacent_pairs, balanced_cross_entropy, cross_entropy, sp_loss


def test_balanced_ce_equals_plain_ce_when_classes_are_balanced() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :, 2:] = 1  # 8 pixels each
    clicks = torch.tensor([[[0, 0, 0], [3, 3, 1], [-1, -1, -1]]])  # one click each
    assert torch.allclose(balanced_cross_entropy(logits, target, clicks), F.cross_entropy(logits, target))


def test_balanced_ce_weights_rare_classes_up() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 1  # 1 pixel of class 1, 15 of class 0
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 2.0  # confident "class 0" everywhere: only the rare pixel is wrong
    clicks = torch.tensor([[[0, 0, 1], [2, 2, 0], [3, 3, 0], [1, 3, 0]]])
    # pixel weights: w0 = 16 / (2 * 15), w1 = 16 / (2 * 1); click weights: w0 = 4 / (2 * 3), w1 = 4 / 2
    lse = math.log(math.exp(2) + 1)
    l0, l1 = lse - 2, lse  # per-pixel CE for class 0 and class 1 pixels

    def weighted(w0: float, w1: float) -> float:
        return (15 * w0 * l0 + w1 * l1) / (15 * w0 + w1)
    expected = 0.5 * weighted(16 / 30, 8) + 0.5 * weighted(4 / 6, 2)
    got = balanced_cross_entropy(logits, target, clicks).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert got > F.cross_entropy(logits, target).item()


def test_weightings_plain_and_square_rooted_by_hand() -> None:
    """The same rare-pixel case: plain CE ignores frequencies, sqrt_balanced takes the square
    root of every weight (background / rare-part gap narrowed from 15x to about 3.9x)."""
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 1
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 2.0
    clicks = torch.tensor([[[0, 0, 1], [2, 2, 0], [3, 3, 0], [1, 3, 0]]])
    lse = math.log(math.exp(2) + 1)
    l0, l1 = lse - 2, lse

    def weighted(w0: float, w1: float) -> float:
        return (15 * w0 * l0 + w1 * l1) / (15 * w0 + w1)
    soft = 0.5 * weighted(math.sqrt(16 / 30), math.sqrt(8)) + 0.5 * weighted(math.sqrt(4 / 6), math.sqrt(2))
    assert cross_entropy(logits, target, clicks, "sqrt_balanced").item() == pytest.approx(soft, rel=1e-5)
    assert cross_entropy(logits, target, clicks, "plain").item() == pytest.approx((15 * l0 + l1) / 16, rel=1e-5)
    paper = balanced_cross_entropy(logits, target, clicks)
    assert torch.equal(cross_entropy(logits, target, clicks, "balanced"), paper)
    with pytest.raises(ValueError, match="weighting must be one of"):
        cross_entropy(logits, target, clicks, "focal")


def test_ignore_pixels_do_not_count() -> None:
    logits = torch.randn(1, 3, 4, 4)
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    target[0, 0] = 1
    clicks = torch.tensor([[[0, 0, 1]]])
    expected = F.cross_entropy(logits[..., :1, :], target[:, :1])
    assert torch.allclose(balanced_cross_entropy(logits, target, clicks), expected)


def test_adjacent_pairs() -> None:
    labels = torch.tensor([[1, 1, 2], [1, 1, 2], [3, 255, 2]])
    assert adjacent_pairs(labels) == {(1, 2), (2, 1), (1, 3), (3, 1)}


def _two_part_scene():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 1
    clicks = torch.tensor([[[1, 1, 0], [6, 6, 1], [-1, -1, -1]]])
    return labels, clicks


def test_sp_loss_is_zero_when_parts_are_separated_and_maximal_when_swapped() -> None:
    labels, clicks = _two_part_scene()
    features = torch.zeros(1, 2, 8, 8)
    features[0, 0, :, :4] = 1.0  # part 0 along e0
    features[0, 1, :, 4:] = 1.0  # part 1 along e1: orthogonal, S_p = 1, S_n = 0.5
    # log 0.5 - log 1 + 1.5 = 0.807 > 0: orthogonal is not separated enough for the margin ...
    expected = math.log(0.5) + 1.5
    assert sp_loss(features, labels, clicks).item() == pytest.approx(expected, rel=1e-4)
    # ... opposite directions are: S_n = 0, so the hinge is 0.
    features[0, 1, :, 4:] = 0.0
    features[0, 0, :, 4:] = -1.0
    assert sp_loss(features, labels, clicks).item() == 0.0
    # identical features for both parts: S_p = S_n = 1, loss = margin exactly
    assert sp_loss(torch.ones(1, 2, 8, 8), labels, clicks).item() == pytest.approx(1.5)


def test_sp_loss_uses_stride_4_features_and_gives_gradients() -> None:
    labels, clicks = _two_part_scene()
    labels = labels.repeat_interleave(4, 1).repeat_interleave(4, 2)  # 32 x 32 input, features at 8 x 8
    clicks = clicks.clone()
    clicks[..., :2] = torch.where(clicks[..., :2] >= 0, clicks[..., :2] * 4, clicks[..., :2])
    features = torch.randn(1, 16, 8, 8, requires_grad=True)
    loss = sp_loss(features, labels, clicks)
    loss.backward()
    assert loss.item() > 0 and features.grad.abs().sum() > 0


def test_sp_loss_without_pairs_is_zero_but_differentiable() -> None:
    features = torch.randn(1, 4, 8, 8, requires_grad=True)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    loss = sp_loss(features, labels, torch.tensor([[[1, 1, 0]]]))
    loss.backward()
    assert loss.item() == 0.0
