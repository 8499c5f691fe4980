import numpy as np
import pytest

from ihp_rt.clicks import Click
from ihp_rt.geometry import Letterbox, prepare_image
from ihp_rt.spec import ModelSpec


@pytest.mark.parametrize(("h", "w", "inner"), [(825, 550, (473, 315)), (512, 512, (473, 473)), (100, 400, (118, 473)),
                                               (20, 10, (473, 236))])
def test_letterbox_fits_longer_side(h: int, w: int, inner: tuple[int, int]) -> None:
    assert Letterbox(h, w, 473).inner == inner


def test_clicks_map_to_the_model_pixel_holding_their_centre() -> None:
    box = Letterbox(200, 100, 50)  # scale 1/4, inner 50 x 25
    got = box.clicks_to_model([Click(0, 0, 1), Click(99, 199, 2), Click(3, 4, 3), Click(4, 3, 4)])
    assert got.tolist() == [[0, 0, 1], [24, 49, 2], [0, 1, 3], [1, 0, 4]]
    up = Letterbox(10, 5, 40)  # scale 4: click pixel (2, 3) -> centre (10, 14)
    assert up.clicks_to_model([Click(2, 3, 1)]).tolist() == [[10, 14, 1]]


@pytest.mark.parametrize(("h", "w", "size"), [(100, 115, 50), (825, 551, 473), (333, 1001, 473), (7, 3, 473),
                                              (640, 427, 321), (473, 473, 473)])
def test_a_clicked_pixel_shows_the_model_pixel_its_click_lands_on(h: int, w: int, size: int) -> None:
    """Along a whole row and a whole column (the resize is separable), the model pixel a click lands
    on is the one its image pixel is read from, OpenCV's tie rounding included, for int32 and for
    the uint8 maps sessions return."""
    box = Letterbox(h, w, size)
    ids = np.arange(size * size, dtype=np.int32).reshape(size, size)
    clicks = [Click(x, h // 2, 0) for x in range(w)] + [Click(w // 2, y, 0) for y in range(h)]
    pixels = (np.array([c.y for c in clicks]), np.array([c.x for c in clicks]))
    model = box.clicks_to_model(clicks)
    for labels in (ids, (ids % 251).astype(np.uint8)):
        assert np.array_equal(labels[model[:, 1], model[:, 0]], box.labels_to_image(labels)[pixels])


def test_labels_come_back_at_image_size_without_padding() -> None:
    box = Letterbox(200, 100, 50)
    labels = np.full((50, 50), 255, dtype=np.uint8)
    labels[:, :25] = np.arange(50, dtype=np.uint8)[:, None]  # row id inside, 255 in the padding
    out = box.labels_to_image(labels)
    assert out.shape == (200, 100)
    assert (out != 255).all()
    assert np.array_equal(out[:, 0], np.repeat(np.arange(50, dtype=np.uint8), 4))


def test_prepare_image_normalises_and_pads(rng) -> None:
    spec = ModelSpec(input_size=64)
    image = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    box, tensor = prepare_image(image, spec)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    assert box.inner == (32, 64)
    expected = (image.astype(np.float64) / 255 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(tensor[:, :32].transpose(1, 2, 0), expected, atol=1e-5)
    assert (tensor[:, 32:] == 0).all()
