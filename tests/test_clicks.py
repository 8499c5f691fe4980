import json

import numpy as np
import pytest

from ihp_rt.clicks import Click, clicks_array, clicks_to_json, load_clicks, parse_clicks
from ihp_rt.errors import InputError
from ihp_rt.labels import get_label_set

LIP = get_label_set("lip")
SIZE = (400, 200)  # height, width


def test_parse_ids_and_names_in_order() -> None:
    doc = {"clicks": [{"x": 120, "y": 64, "label": 2}, {"x": 80, "y": 300, "label": "face"}, {"x": 0, "y": 0.0,
                                                                                             "label": "Background"}]}
    assert parse_clicks(doc, LIP, SIZE) == [Click(120, 64, 2), Click(80, 300, 13), Click(0, 0, 0)]


def test_click_is_immutable() -> None:
    c = Click(1, 2, 3)
    with pytest.raises(AttributeError):
        c.x = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"clicks": []}, "empty"),
        ([], "JSON object"),
        ({"points": []}, "JSON object"),
        ({"clicks": [{"x": 200, "y": 10, "label": 1}]}, r"click #0: \(200, 10\) is outside the 200x400 image"),
        ({"clicks": [{"x": 5, "y": 400, "label": 1}]}, "outside"),
        ({"clicks": [{"x": -1, "y": 4, "label": 1}]}, "outside"),
        ({"clicks": [{"x": 1, "y": 1, "label": 1}, {"x": 2.5, "y": 4, "label": 1}]}, "click #1: x must be an integer"),
        ({"clicks": [{"x": "3", "y": 4, "label": 1}]}, "x must be an integer"),
        ({"clicks": [{"x": 3, "y": True, "label": 1}]}, "y must be an integer"),
        ({"clicks": [{"x": 3, "y": 4, "label": "wings"}]}, "unknown label 'wings'"),
        ({"clicks": [{"x": 3, "y": 4, "label": 20}]}, "outside label set"),
        ({"clicks": [{"x": 3, "y": 4}]}, "expected"),
    ],
)
def test_bad_click_lists_are_refused_with_reason(doc: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_clicks(doc, LIP, SIZE)


def test_file_round_trip(tmp_path) -> None:
    clicks = [Click(10, 20, 2), Click(30, 40, 14)]
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(clicks_to_json(clicks, LIP)))
    assert json.loads(path.read_text())["clicks"][1]["label"] == "left-arm"
    assert load_clicks(path, LIP, SIZE) == clicks
    path.write_text(json.dumps(clicks_to_json(clicks)))
    assert load_clicks(path, LIP, SIZE) == clicks


def test_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_clicks(tmp_path / "missing.json", LIP, SIZE)
    bad = tmp_path / "bad.json"
    bad.write_text("{clicks: oops")
    with pytest.raises(InputError, match=r"bad\.json is not valid JSON"):
        load_clicks(bad, LIP, SIZE)
    bad.write_text('{"clicks": [{"x": 999, "y": 0, "label": 0}]}')
    with pytest.raises(InputError, match=r"bad.json: click #0"):
        load_clicks(bad, LIP, SIZE)


def test_clicks_array_layout() -> None:
    arr = clicks_array([Click(1, 2, 3), Click(4, 5, 6)])
    assert arr.dtype == np.int32 and arr.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert clicks_array([]).shape == (0, 3)
