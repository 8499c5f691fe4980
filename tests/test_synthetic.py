"""The SYNTHETIC people generator: seeded, LIP-labelled, left/right consistent, and written in
layouts the real readers accept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ihp_rt.data import FolderDataset
from ihp_rt.data.layouts import LIPDataset, open_dataset
from ihp_rt.data.synthetic import DATASET_TITLE, generate_person_scene, write_folder_layout, write_lip_layout
from ihp_rt.errors import InputError
from ihp_rt.labels import get_label_set

LIP = get_label_set("lip")
SEEDS = range(5)


def scene(seed: int, people: int = 1, height: int = 256, width: int = 192):
    return generate_person_scene(np.random.default_rng(seed), height, width, people)


def mean_x(labels: np.ndarray, name: str) -> float:
    return float(np.nonzero(labels == LIP.label_id(name))[1].mean())


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a, b, c = scene(3, 2), scene(3, 2), scene(4, 2)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels) and not np.array_equal(a.image, c.image)


@pytest.mark.parametrize(("height", "width"), [(256, 192), (96, 72)])
def test_scene_shapes_and_label_ids(height, width) -> None:
    for seed in SEEDS:
        s = scene(seed, 3, height, width)
        assert s.image.shape == (height, width, 3) and s.image.dtype == np.uint8
        assert s.labels.shape == (height, width) and s.labels.dtype == np.uint8
        assert s.labels.max() < LIP.num_classes  # LIP ids 0..19, never the ignore value
        assert (s.labels == 0).any()


def test_a_single_person_shows_the_main_parts() -> None:
    seen = set()
    for seed in SEEDS:
        present = {LIP.names[i] for i in np.unique(scene(seed).labels)}
        seen |= present
        assert {"hair", "face", "left-arm", "right-arm", "left-leg", "right-leg"} <= present, seed
        assert present & {"upper-clothes", "dress", "coat", "jumpsuits"}, seed  # a torso garment
    assert "upper-clothes" in seen


def test_left_limbs_are_on_the_image_right_also_after_flip_and_lut() -> None:
    lut = LIP.flip_lut()
    for seed in SEEDS:
        labels = scene(seed).labels
        flipped = lut[labels[:, ::-1]]
        for part in ("arm", "leg", "shoe"):
            assert mean_x(labels, f"left-{part}") > mean_x(labels, f"right-{part}"), (seed, part)
            assert mean_x(flipped, f"left-{part}") > mean_x(flipped, f"right-{part}"), (seed, part)


def test_image_is_aligned_with_the_labels() -> None:
    """Skin and garments differ in colour, so the photo changes where the labels change."""
    s = scene(1)
    person = s.labels > 0
    inside = s.image[person].astype(float).mean(0)
    outside = s.image[~person].astype(float).mean(0)
    assert np.abs(inside - outside).max() > 5
    assert person.mean() > 0.05  # the person is a real part of the frame


def test_max_people_must_be_positive() -> None:
    with pytest.raises(InputError, match=r"max_people must be at least 1"):
        generate_person_scene(np.random.default_rng(0), max_people=0)


def test_lip_dataset_reads_the_written_lip_layout(tmp_path) -> None:
    root = write_lip_layout(tmp_path / "lip", n_train=3, n_val=2, seed=7, height=64, width=48)
    assert root == tmp_path / "lip"
    train, val = LIPDataset(root, "train"), LIPDataset(root, "val")
    assert len(train) == 3 and len(val) == 2 and not set(train.names) & set(val.names)
    sample = val[1]
    assert sample.image.shape == (64, 48, 3) and sample.labels.shape == (64, 48)
    expected = generate_person_scene(np.random.default_rng((7, 1, 1)), 64, 48, 2)
    assert np.array_equal(sample.labels, expected.labels)  # labels are lossless PNG
    assert type(open_dataset(root)) is LIPDataset


def test_folder_dataset_reads_the_written_folder_layout(tmp_path) -> None:
    root = write_folder_layout(tmp_path / "gen", 3, seed=0, height=64, width=48)
    data = FolderDataset(root)
    assert len(data) == 3 and data.label_set.names == LIP.names and data.ignore_index == 255
    assert data[0].labels.shape == (64, 48) and data[0].labels.max() < 20
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["dataset"] == DATASET_TITLE and "not real" in manifest["dataset"]
    assert type(open_dataset(root)) is FolderDataset
