import numpy as np
import pytest
from PIL import Image

import ihp_rt.images as images
from ihp_rt.clicks import Click
from ihp_rt.errors import InputError
from ihp_rt.labels import get_label_set


def test_read_png_and_jpeg(tmp_path, rng) -> None:
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(images.read_image(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb).convert("L").save(tmp_path / "g.jpg")
    assert images.read_image(tmp_path / "g.jpg").shape == (30, 40, 3)


def test_exif_orientation_is_applied(tmp_path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 30)).save(tmp_path / "rot.jpg", exif=exif)
    assert images.read_image(tmp_path / "rot.jpg").shape == (40, 30, 3)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        images.read_image(tmp_path / "none.png")
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match=r"x\.png"):
        images.read_image(tmp_path / "x.png")
    (tmp_path / "t.jpg").write_text("hello")
    with pytest.raises(InputError, match="not a readable image"):
        images.read_image(tmp_path / "t.jpg")


def test_huge_image_refused_before_decoding(tmp_path, monkeypatch) -> None:
    # A 9000x9000 single-colour PNG is a few KB on disk but 243 MB decoded.
    Image.new("L", (9000, 9000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(InputError, match="too large"):
        images.read_image(tmp_path / "bomb.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    Image.new("RGB", (11, 10)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match=r"11x10.*100 pixels"):
        images.read_image(tmp_path / "small.png")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((20, 20, 3), np.float32), "uint8"),
        (np.zeros((20, 20), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((20, 20, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((4, 20, 3), np.uint8), "too small"),
        ([[1, 2, 3]], "NumPy array"),
    ],
)
def test_check_image(image, message: str) -> None:
    with pytest.raises(InputError, match=message):
        images.check_image(image)


def test_label_png_round_trip_and_overlay(tmp_path, rng) -> None:
    labels = rng.integers(0, 20, (25, 35), dtype=np.uint8)
    path = images.write_label_png(tmp_path / "sub" / "l.png", labels)
    with Image.open(path) as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), labels)
    lip = get_label_set("lip")
    photo = np.full((25, 35, 3), 200, dtype=np.uint8)
    ov = images.overlay(photo, labels, lip, [Click(5, 5, 2)], alpha=0.5)
    assert ov.shape == photo.shape and ov.dtype == np.uint8
    background = (labels == 0)
    background[:12, :12] = False  # away from the drawn click
    assert (ov[background] == 200).all()
    part = np.argwhere(labels == 13)[-1]
    assert ov[tuple(part)].tolist() == [196, 100, 164]  # halfway between grey 200 and face (192, 0, 128)
