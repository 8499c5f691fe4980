"""Augmentation and training samples: flips swap left/right, clicks and maps agree."""

import numpy as np
import pytest

from ihp_rt.data import Sample
from ihp_rt.encoding import encode_reference
from ihp_rt.errors import InputError
from ihp_rt.labels import get_label_mapping, get_label_set
from ihp_rt.spec import ModelSpec
from ihp_rt.training.config import TrainConfig
from ihp_rt.training.dataset import IGNORE, Augment, ClickTrainingSet, augment

LIP = get_label_set("lip")
SPEC = ModelSpec(labels=LIP, input_size=96)


def person(h: int = 96, w: int = 64) -> Sample:
    labels = np.zeros((h, w), np.uint8)
    labels[10:30, 20:44] = LIP.label_id("face")
    labels[30:70, 44:56] = LIP.label_id("left-arm")  # the person's left: image right (and longer)
    labels[30:60, 8:20] = LIP.label_id("right-arm")
    labels[30:60, 20:44] = LIP.label_id("upper-clothes")
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = labels * 10
    return Sample("p", image, labels)


class Single:
    label_set, ignore_index = LIP, None

    def __init__(self, sample: Sample) -> None:
        self.sample = sample

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> Sample:
        return self.sample


def mean_x(labels: np.ndarray, name: str) -> float:
    return float(np.nonzero(labels == LIP.label_id(name))[1].mean())


def test_flip_mirrors_pixels_and_swaps_left_right() -> None:
    sample = person()
    aug = Augment(crop=(96, 64), scale=(1.0, 1.0), flip=True)
    flipped = None
    for seed in range(20):
        _image, labels = augment(sample, SPEC, aug, np.random.default_rng(seed), None)
        if labels[65, 50] != sample.labels[65, 50]:
            flipped = labels
            break
    assert flipped is not None, "no flip in 20 draws"
    assert np.array_equal(flipped, LIP.flip_lut()[sample.labels[:, ::-1]])
    # still the person's left arm on the image right after the flip
    assert mean_x(flipped, "left-arm") > mean_x(flipped, "right-arm")


def test_crop_pads_with_ignore_and_mean_colour() -> None:
    image, labels = augment(person(48, 32), SPEC, Augment(crop=(120, 80), scale=(1.0, 1.0), flip=False),
                            np.random.default_rng(0), None)
    assert image.shape == (120, 80, 3) and labels.shape == (120, 80)
    assert (labels[96:] == IGNORE).all()  # photo scaled to 96 px high, the rest is padding
    assert image[119, 79].tolist() == [124, 116, 104]  # ImageNet mean colour


def test_samples_have_consistent_clicks_and_maps() -> None:
    ds = ClickTrainingSet(Single(person()), SPEC, Augment(crop=(64, 48), scale=(0.8, 1.2)), seed=3)
    for _ in range(5):
        x, labels, clicks = ds[0]
        assert x.shape == (3 + 20, 64, 48) and labels.shape == (64, 48)
        real = clicks[clicks[:, 2] >= 0].numpy()
        assert len(real) >= 2
        assert all(labels[y, cx] == lab for cx, y, lab in real)
        assert np.array_equal(x[3:].numpy(), encode_reference(real.astype(np.int32), 20, 64, 48))


def test_mapped_ccp_labels_and_config_yaml(tmp_path) -> None:
    mapping = get_label_mapping("ccp_coarse")
    ccp = get_label_set("ccp")
    assert mapping.target.names[mapping.lut[ccp.label_id("jeans")]] == "pants"
    assert mapping.target.names[mapping.lut[ccp.label_id("sneakers")]] == "shoes"
    assert mapping.lut[255] == 255 and (mapping.lut[: ccp.num_classes] < 15).all()
    (tmp_path / "c.yaml").write_text("steps: 7\ncrop: [32, 32]\nstrategy: near_edge\n")
    cfg = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert cfg.steps == 7 and cfg.crop == (32, 32) and cfg.effective_sp_lambda == 3.0
    (tmp_path / "bad.yaml").write_text("stpes: 7\n")
    with pytest.raises(InputError, match="unknown training option"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
