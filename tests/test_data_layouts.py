"""Benchmark layout readers: each published tree is read in place, in id-list order, and a
folder of another shape fails with a message that says what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ihp_rt.data import FolderDataset
from ihp_rt.data.layouts import (
    CIHPDataset,
    HelenDataset,
    LIPDataset,
    PPPDataset,
    dataset_for_labels,
    detect_layout,
    open_dataset,
)
from ihp_rt.errors import InputError
from ihp_rt.images import write_label_png
from ihp_rt.labels import LabelMapping, LabelSet, get_label_mapping, get_label_set

H, W = 32, 24
CCP = Path("/work/shared/data/ccp")


def write_pair(image_path: Path, label_path: Path, value: int) -> None:
    """A 32x24 photo and a label map filled with ``value`` (so the test can tell samples apart)."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 10 * value, np.uint8)).save(image_path)
    labels = np.full((H, W), value, np.uint8)
    labels[0, 0] = 255  # one unlabelled pixel
    write_label_png(label_path, labels)


def write_ids(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(ids) + "\n\n")  # a trailing blank line, as some lists have


# Ids deliberately not in sorted order: the readers must keep the list's order.
TRAIN, VAL = ["b", "a", "c"], ["v2", "v1"]


def make_lip(root: Path) -> Path:
    for split, ids in (("train", TRAIN), ("val", VAL)):
        for k, name in enumerate(ids, 1):
            write_pair(root / "TrainVal_images" / f"{split}_images" / f"{name}.jpg",
                       root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{name}.png", k)
        write_ids(root / f"{split}_id.txt", ids)
    return root


def make_cihp(root: Path) -> Path:
    for split, folder, ids in (("train", "Training", TRAIN), ("val", "Validation", VAL)):
        for k, name in enumerate(ids, 1):
            write_pair(root / folder / "Images" / f"{name}.jpg", root / folder / "Category_ids" / f"{name}.png", k)
        write_ids(root / folder / f"{split}_id.txt", ids)
    return root


def make_ppp(root: Path) -> Path:
    for split, ids in (("train", TRAIN), ("val", VAL)):
        for k, name in enumerate(ids, 1):
            write_pair(root / "JPEGImages" / f"{name}.jpg", root / "SegmentationPart" / f"{name}.png", k)
        write_ids(root / f"{split}_id.txt", ids)
    return root


def make_helen(root: Path) -> Path:
    for split, ids in (("train", TRAIN), ("test", VAL)):
        for k, name in enumerate(ids, 1):
            write_pair(root / split / "images" / f"{name}.jpg", root / split / "labels" / f"{name}.png", k)
    return root


def make_folder(root: Path) -> Path:
    for k, name in enumerate(TRAIN, 1):
        write_pair(root / "images" / f"{name}.jpg", root / "labels" / f"{name}.png", k)
    (root / "manifest.json").write_text('{"classes": {"0": "background", "1": "a", "2": "b", "3": "c"}, '
                                        '"ignore_index": 255}')
    return root


def test_lip_reads_pairs_in_id_list_order(tmp_path) -> None:
    data = LIPDataset(make_lip(tmp_path), "train")
    assert data.names == TRAIN and len(data) == 3
    assert data.label_set == get_label_set("lip") and data.ignore_index == 255
    sample = data[0]
    assert sample.name == "b" and sample.image.shape == (H, W, 3) and sample.labels.shape == (H, W)
    assert sample.labels.dtype == np.uint8 and sample.labels[5, 5] == 1 and sample.labels[0, 0] == 255
    assert [data[i].labels[5, 5] for i in range(3)] == [1, 2, 3]
    assert LIPDataset(tmp_path, "val").names == VAL


def test_cihp_reads_both_splits(tmp_path) -> None:
    make_cihp(tmp_path)
    train, val = CIHPDataset(tmp_path, "train"), CIHPDataset(tmp_path, "val")
    assert train.names == TRAIN and val.names == VAL
    assert train.label_set.name == "cihp" and train.ignore_index == 255
    assert val[1].name == "v1" and val[1].labels[5, 5] == 2 and val[1].image.shape == (H, W, 3)


def test_ppp_reads_id_txt_and_the_pascal_list_form(tmp_path) -> None:
    make_ppp(tmp_path)
    data = PPPDataset(tmp_path, "val")
    assert data.names == VAL and data.label_set.name == "ppp" and data.ignore_index == 255
    assert data[0].labels[5, 5] == 1
    (tmp_path / "train_id.txt").unlink()
    (tmp_path / "pascal_person_part_train_list.txt").write_text(
        "".join(f"/JPEGImages/{n}.jpg /SegmentationPart/{n}.png\n" for n in TRAIN))
    assert PPPDataset(tmp_path, "train").names == TRAIN
    (tmp_path / "pascal_person_part_train_list.txt").unlink()
    with pytest.raises(InputError, match=r"neither train_id\.txt nor pascal_person_part_train_list\.txt"):
        PPPDataset(tmp_path, "train")


def test_helen_takes_every_image_of_the_split_sorted(tmp_path) -> None:
    make_helen(tmp_path)
    data = HelenDataset(tmp_path, "train")
    assert data.names == sorted(TRAIN) and data.label_set.name == "helen" and data.ignore_index is None
    assert data.label_set.num_classes == 11
    assert HelenDataset(tmp_path).names == sorted(VAL)  # test split by default
    (tmp_path / "test" / "labels" / "v1.png").unlink()
    with pytest.raises(InputError, match=r"'v1' has no label map .*v1\.png"):
        HelenDataset(tmp_path, "test")


def test_missing_files_name_the_id_and_path(tmp_path) -> None:
    make_lip(tmp_path)
    (tmp_path / "TrainVal_images" / "train_images" / "a.jpg").unlink()
    with pytest.raises(InputError, match=r"id 'a' has no image .*train_images.a\.jpg"):
        LIPDataset(tmp_path, "train")
    (tmp_path / "TrainVal_parsing_annotations" / "val_segmentations" / "v2.png").unlink()
    with pytest.raises(InputError, match=r"id 'v2' has no label map .*val_segmentations.v2\.png"):
        LIPDataset(tmp_path, "val")
    (tmp_path / "val_id.txt").unlink()
    with pytest.raises(InputError, match=r"id list not found: .*val_id\.txt"):
        LIPDataset(tmp_path, "val")


def test_wrong_folder_or_split_is_refused_with_the_expected_layout(tmp_path) -> None:
    make_cihp(tmp_path)
    with pytest.raises(InputError, match=r"does not have the LIP layout: .*TrainVal_images"):
        LIPDataset(tmp_path)
    with pytest.raises(InputError, match=r"does not have the PPP layout: .*JPEGImages"):
        PPPDataset(tmp_path)
    with pytest.raises(InputError, match=r"does not have the Helen layout"):
        HelenDataset(tmp_path)
    with pytest.raises(InputError, match=r"CIHP has splits train, val, not 'test'"):
        CIHPDataset(tmp_path, "test")


def test_a_mapping_merges_classes_and_keeps_ignore(tmp_path) -> None:
    lip = get_label_set("lip")
    person = LabelSet("person", ("background", "person"), ((0, 0, 0), (255, 255, 255)))
    lut = np.full(256, 255, np.uint8)
    lut[0], lut[1:20] = 0, 1
    data = LIPDataset(make_lip(tmp_path), "train", mapping=LabelMapping("person", lip, person, lut))
    assert data.label_set is person and data.ignore_index == 255
    labels = data[2].labels
    assert labels[5, 5] == 1 and labels[0, 0] == 255
    with pytest.raises(InputError, match=r"reads 'ccp' classes, but LIP train .* is labelled in 'lip'"):
        LIPDataset(tmp_path, "train", mapping=get_label_mapping("ccp_coarse"))


@pytest.mark.parametrize(("make", "layout", "reader", "names"), [
    (make_lip, "lip", LIPDataset, VAL),
    (make_cihp, "cihp", CIHPDataset, VAL),
    (make_ppp, "ppp", PPPDataset, VAL),
    (make_helen, "helen", HelenDataset, sorted(VAL)),
    (make_folder, "folder", FolderDataset, sorted(TRAIN)),
])
def test_open_dataset_detects_each_layout_and_defaults_to_the_evaluation_split(
        tmp_path, make, layout, reader, names) -> None:
    root = make(tmp_path / layout)
    assert detect_layout(root) == layout
    data = open_dataset(root)
    assert type(data) is reader and data.names == names
    assert data[0].image.shape == (H, W, 3) and data[0].labels.shape == (H, W)


def test_open_dataset_passes_split_and_refuses_split_on_a_generic_folder(tmp_path) -> None:
    assert open_dataset(make_lip(tmp_path / "lip"), "train").names == TRAIN
    assert open_dataset(make_helen(tmp_path / "helen"), "train").names == sorted(TRAIN)
    with pytest.raises(InputError, match=r"without splits"):
        open_dataset(make_folder(tmp_path / "generic"), "val")


def test_open_dataset_lists_the_known_layouts_for_an_unknown_folder(tmp_path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(InputError, match=r"no known data layout.*folder: images/.*lip: .*cihp: .*ppp: .*helen: "):
        open_dataset(tmp_path)
    with pytest.raises(InputError, match=r"data folder not found"):
        open_dataset(tmp_path / "nowhere")


@pytest.mark.skipif(not (CCP / "manifest.json").is_file(), reason=f"real data not present at {CCP}")
def test_open_dataset_on_the_shared_ccp_folder() -> None:
    data = open_dataset(CCP)
    assert isinstance(data, FolderDataset) and data.label_set.num_classes == 59
    sample = data[0]  # one sample only: this is a smoke check of the real files
    assert sample.image.shape[:2] == sample.labels.shape and sample.labels.max() < 59


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
@pytest.mark.parametrize("drawn_on", ["stored", "shown"])
@pytest.mark.parametrize("square", [False, True])
def test_exif_turned_photos_stay_aligned_with_their_labels(tmp_path, orientation: int, drawn_on: str,
                                                           square: bool) -> None:
    """A photo with an EXIF orientation is turned on reading; its label map turns with it when it
    was drawn on the stored pixels, and stays as it is when the manifest says it was drawn on the
    photo as viewers show it -- whatever the shapes (a square photo gives no hint)."""
    import json

    from ihp_rt.images import EXIF_ORIENTATION, EXIF_TRANSPOSE

    rng = np.random.default_rng(orientation)
    labels = rng.integers(0, 3, (44 if square else 30, 44)).astype(np.uint8)  # stored pixels
    photo = np.repeat(labels[..., None] * 80, 3, axis=2).astype(np.uint8)  # colour encodes the label
    (tmp_path / "images").mkdir()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(photo).save(tmp_path / "images" / "p.png", exif=exif)
    turned = np.ascontiguousarray(np.asarray(Image.fromarray(labels).transpose(EXIF_TRANSPOSE[orientation])))
    write_label_png(tmp_path / "labels" / "p.png", turned if drawn_on == "shown" else labels)
    manifest = {"classes": {"0": "background", "1": "a", "2": "b"}, "labels_drawn_on": drawn_on}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    sample = FolderDataset(tmp_path)[0]
    assert sample.image.shape[:2] == turned.shape
    assert np.array_equal(sample.image[..., 0] // 80, sample.labels)
    assert np.array_equal(sample.labels, turned)


def test_unknown_labels_drawn_on_is_refused(tmp_path) -> None:
    import json

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "p.png")
    write_label_png(tmp_path / "labels" / "p.png", np.zeros((8, 8), np.uint8))
    manifest = {"classes": {"0": "background", "1": "a"}, "labels_drawn_on": "x"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="labels_drawn_on must be one of"):
        FolderDataset(tmp_path)


# The class names as the CIHP and LIP releases spell them (their README / label lists), and what
# each is in the CCP coarse set: the meaning written out here, not read from label_maps.json.
CIHP_NAMES = ("Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants",
              "Torso-skin", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
              "Right-shoe")
LIP_NAMES = (*CIHP_NAMES[:10], "Jumpsuits", *CIHP_NAMES[11:])
IN_CCP_COARSE = {"Background": "background", "Hat": "hat", "Hair": "hair", "Glove": "accessories",
                 "Sunglasses": "sunglasses", "UpperClothes": "upper-clothes", "Dress": "dress", "Coat": "coat",
                 "Socks": "socks", "Pants": "pants", "Torso-skin": "skin", "Jumpsuits": "dress", "Scarf": "scarf",
                 "Skirt": "skirt", "Face": "skin", "Left-arm": "skin", "Right-arm": "skin", "Left-leg": "skin",
                 "Right-leg": "skin", "Left-shoe": "shoes", "Right-shoe": "shoes"}


def write_named_folder(root: Path, names: tuple[str, ...], count: int = 2, seed: int = 0) -> Path:
    """A generic folder of ``count`` 40x30 photos whose label maps use every id of ``names`` (and a
    few unlabelled 255 pixels), with a manifest naming the classes by id."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        labels = rng.integers(0, len(names), (40, 30)).astype(np.uint8)
        labels[:4, :4] = np.arange(16).reshape(4, 4) % len(names)
        labels[-1, :3] = 255
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(root / "images" / f"p{k}.png")
        write_label_png(root / "labels" / f"p{k}.png", labels)
    manifest = {"classes": {str(i): n for i, n in enumerate(names)}, "ignore_index": 255}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def expected_in(names: tuple[str, ...], labels: np.ndarray, target: LabelSet) -> np.ndarray:
    """The label map written in ``names``, in ``target`` through IN_CCP_COARSE (255 stays)."""
    lut = np.full(256, 255, np.uint8)
    for i, name in enumerate(names):
        lut[i] = target.label_id(IN_CCP_COARSE[name])
    return lut[labels]


@pytest.mark.parametrize("names", [CIHP_NAMES, LIP_NAMES, tuple(reversed(LIP_NAMES))], ids=["cihp", "lip", "lip-ids"])
def test_a_folder_named_in_cihp_or_lip_classes_is_read_in_a_ccp_coarse_models_classes(tmp_path, names) -> None:
    """The data's classes are matched by name -- spelt as the releases spell them, in whatever id
    order the manifest gives -- so CIHP data (torso-skin) and LIP data reach a CCP coarse model."""
    root = write_named_folder(tmp_path / "data", names)
    coarse = get_label_set("ccp_coarse")
    data = dataset_for_labels(root, coarse)
    assert data.label_set.names == coarse.names and data.ignore_index == 255
    raw = open_dataset(root)
    for i in range(len(data)):
        assert np.array_equal(data[i].labels, expected_in(names, raw[i].labels, coarse))


def test_cihp_layout_reads_in_ccp_coarse_and_a_folder_in_the_models_own_classes_by_name(tmp_path) -> None:
    coarse = get_label_set("ccp_coarse")
    data = dataset_for_labels(make_cihp(tmp_path / "cihp"), coarse)
    assert data[0].labels[5, 5] == coarse.label_id("hat") and data[1].labels[5, 5] == coarse.label_id("hair")
    spelt = tuple(n.upper() for n in coarse.names[::-1])  # the model's own classes, capitalised, ids reversed
    root = write_named_folder(tmp_path / "own", spelt)
    own, raw = dataset_for_labels(root, coarse), open_dataset(root)
    expected = np.where(raw[0].labels == 255, 255, len(coarse.names) - 1 - raw[0].labels.astype(int))
    assert np.array_equal(own[0].labels, expected)


def test_classes_no_mapping_reads_are_named_and_a_mapping_can_be_chosen(tmp_path) -> None:
    coarse = get_label_set("ccp_coarse")
    both = write_named_folder(tmp_path / "both", (*CIHP_NAMES, "Jumpsuits"))  # fits neither release
    with pytest.raises(InputError, match=r"(?i)lip_to_ccp_coarse: no torso-skin.*--label-map") as refused:
        dataset_for_labels(both, coarse)
    assert "cihp_to_ccp_coarse: no jumpsuits" in str(refused.value).lower()
    cihp = write_named_folder(tmp_path / "cihp", CIHP_NAMES)
    chosen = dataset_for_labels(cihp, coarse, mapping="cihp_to_ccp_coarse")
    assert np.array_equal(chosen[1].labels, expected_in(CIHP_NAMES, open_dataset(cihp)[1].labels, coarse))
    with pytest.raises(InputError, match=r"label mapping 'lip_to_ccp_coarse' reads 'lip' classes, but .* has no "
                                         r"Torso-skin"):
        dataset_for_labels(cihp, coarse, mapping="lip_to_ccp_coarse")
    with pytest.raises(InputError, match=r"gives 'ccp_coarse' classes, the model predicts 'lip'"):
        dataset_for_labels(cihp, get_label_set("lip"), mapping="cihp_to_ccp_coarse")
    with pytest.raises(InputError, match=r"unknown label mapping 'nope'"):
        dataset_for_labels(cihp, coarse, mapping="nope")


def test_two_builtin_mappings_that_read_the_data_differently_are_not_chosen_between(tmp_path, monkeypatch) -> None:
    import copy

    import ihp_rt.labels

    tables = copy.deepcopy(ihp_rt.labels._builtin_mappings())
    other = copy.deepcopy(tables["lip_to_ccp_coarse"])
    other["merge"]["accessories"], other["merge"]["skin"] = [], [*other["merge"]["skin"], "glove"]  # gloves as skin
    monkeypatch.setattr(ihp_rt.labels, "_builtin_mappings", lambda: {**tables, "lip_gloves_as_skin": other})
    lip = write_named_folder(tmp_path / "lip", LIP_NAMES, count=1)
    with pytest.raises(InputError, match=r"fit several label mappings .*\(lip_gloves_as_skin, lip_to_ccp_coarse\); "
                                         r"choose one with --label-map"):
        dataset_for_labels(lip, get_label_set("ccp_coarse"))
    chosen = dataset_for_labels(lip, get_label_set("ccp_coarse"), mapping="lip_gloves_as_skin")
    glove = open_dataset(lip)[0].labels == LIP_NAMES.index("Glove")
    assert glove.any() and (chosen[0].labels[glove] == get_label_set("ccp_coarse").label_id("skin")).all()
