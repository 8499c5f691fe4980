import numpy as np
import pytest

from ihp_rt.errors import InputError
from ihp_rt.labels import (
    LabelMapping,
    LabelSet,
    class_key,
    get_label_mapping,
    get_label_set,
    label_set_names,
    voc_palette,
)


def test_voc_palette_known_values() -> None:
    # PASCAL VOC devkit colours: 1 aeroplane, 2 bicycle, 15 person, 20 tv/monitor
    pal = voc_palette(21)
    assert (pal[0], pal[1], pal[2], pal[15], pal[20]) == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (192, 128, 128),
                                                          (0, 64, 128))


@pytest.mark.parametrize(("name", "count"), [("lip", 20), ("cihp", 20), ("ppp", 7), ("helen", 11), ("atr", 18),
                                           ("ccp", 59), ("ccp_coarse", 15), ("fasseg", 6)])
def test_builtin_sizes_and_palettes(name: str, count: int) -> None:
    ls = get_label_set(name)
    assert ls.num_classes == count == len(ls.palette)
    assert ls.names[0] == "background"
    assert ls.palette == voc_palette(count)  # the JSON data against the colour-map code


def test_names_of_the_paper_label_sets() -> None:
    lip = get_label_set("LIP")
    assert lip.names[2] == "hair" and lip.names[13] == "face" and lip.names[10] == "jumpsuits"
    assert get_label_set("cihp").names[10] == "torso-skin"
    assert get_label_set("helen").names[10] == "hair"
    assert get_label_set("atr").names[16] == "bag"
    assert label_set_names() == ["atr", "ccp", "ccp_coarse", "cihp", "fasseg", "helen", "lip", "ppp"]


@pytest.mark.parametrize("name", ["lip", "cihp", "atr", "helen"])
def test_mirrors_pair_left_with_right(name: str) -> None:
    ls = get_label_set(name)
    assert ls.mirrors
    for a, b in ls.mirrors:
        assert ls.names[a].replace("left", "right") == ls.names[b]
    lut = ls.flip_lut()
    assert np.array_equal(lut[lut], np.arange(256))  # an involution
    moved = {i for i in range(ls.num_classes) if lut[i] != i}
    assert moved == {i for pair in ls.mirrors for i in pair}


def test_flip_lut_swaps_arms_in_a_label_map() -> None:
    lip = get_label_set("lip")
    labels = np.array([[14, 15, 2], [16, 17, 0], [18, 19, 13]], dtype=np.uint8)
    flipped = lip.flip_lut()[labels]
    assert flipped.tolist() == [[15, 14, 2], [17, 16, 0], [19, 18, 13]]
    assert get_label_set("ppp").flip_lut()[:7].tolist() == list(range(7))


def test_label_id_by_id_and_by_name() -> None:
    lip = get_label_set("lip")
    assert lip.label_id(2) == 2
    assert lip.label_id(np.int64(5)) == 5
    assert lip.label_id("Hair") == 2
    assert lip.label_id(" left-arm ") == 14
    for bad in (20, -1, "wings", True, 2.0, None):
        with pytest.raises(InputError):
            lip.label_id(bad)


def test_unknown_label_message_lists_known_names() -> None:
    with pytest.raises(InputError, match="known: background, hat, hair"):
        get_label_set("lip").label_id("wings")
    with pytest.raises(InputError, match="built-in: atr, ccp, ccp_coarse, cihp"):
        get_label_set("coco")


def test_round_trip_and_validation() -> None:
    ls = get_label_set("helen")
    assert LabelSet.from_dict(ls.to_dict()) == ls
    with pytest.raises(InputError, match="duplicate"):
        LabelSet("x", ("background", "a", "a"), ((0, 0, 0),) * 3)
    with pytest.raises(InputError, match="mirror"):
        LabelSet("x", ("background", "a"), ((0, 0, 0),) * 2, mirrors=((0, 1),))


def test_a_mapping_reads_data_by_class_name_not_by_id() -> None:
    """Data sets spell and number the same classes differently: the merge follows the names."""
    assert class_key("UpperClothes") == class_key("upper-clothes") == class_key("Upper_Clothes") == "upperclothes"
    coarse = get_label_set("ccp_coarse")
    data = LabelSet("mine", ("Background", "Right_Shoe", "unused-2", "FACE", "Torso skin"), voc_palette(5))
    merge = get_label_mapping("lip_to_ccp_coarse")
    assert merge.unknown(data) == ["Torso skin"]  # unused-2 is a manifest's gap, not a class
    lut = merge.lut_for(data)
    assert list(lut[:5]) == [0, coarse.label_id("shoes"), 255, coarse.label_id("skin"), 255]
    assert (lut[5:] == 255).all()
    assert get_label_mapping("cihp_to_ccp_coarse").lut_for(data)[4] == coarse.label_id("skin")
    same = LabelMapping.identity(coarse).lut_for(LabelSet("caps", tuple(n.upper() for n in coarse.names[::-1]),
                                                          voc_palette(len(coarse))))
    assert list(same[: len(coarse)]) == list(range(len(coarse)))[::-1]

