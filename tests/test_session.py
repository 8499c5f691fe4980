import numpy as np
import pytest
import torch

from ihp_rt.click_enforcement import DEFAULT_CLICK_RADIUS
from ihp_rt.encoding import encode_reference
from ihp_rt.errors import BackendError, InputError
from ihp_rt.geometry import prepare_image
from ihp_rt.model import save_checkpoint
from ihp_rt.session import Session

from .test_click_enforcement import enforce_reference


@pytest.fixture
def session(tiny_checkpoint) -> Session:
    return Session.open(tiny_checkpoint)


@pytest.fixture
def photo(rng) -> np.ndarray:
    return rng.integers(0, 256, (120, 80, 3), dtype=np.uint8)


def reference_mask(ckpt, image: np.ndarray, clicks) -> np.ndarray:
    """The whole pipeline written out by hand: letterbox, reference encoding, network, arg-max, click disks."""
    spec = ckpt.spec
    box, rgb = prepare_image(image, spec)
    model_clicks = box.clicks_to_model(clicks)
    maps = encode_reference(model_clicks, spec.num_classes, spec.input_size, spec.input_size)
    x = torch.from_numpy(np.concatenate([rgb, maps])[None])
    with torch.inference_mode():
        labels = ckpt.model(x)[0].argmax(0).to(torch.uint8).numpy()
    return box.labels_to_image(enforce_reference(labels, model_clicks, DEFAULT_CLICK_RADIUS))


def test_predict_matches_the_hand_written_pipeline(session, tiny_checkpoint, photo) -> None:
    session.set_image(photo)
    session.add_click(10, 20, "hair")
    session.add_click(40, 100, 5)
    pred = session.predict()
    assert pred.labels.shape == (120, 80) and pred.labels.dtype == np.uint8
    assert pred.backend == "torch-cpu" and pred.latency_ms > 0
    assert [c.label for c in pred.clicks] == [2, 5]
    assert np.array_equal(pred.labels, reference_mask(tiny_checkpoint, photo, pred.clicks))


def test_undo_and_reset_restore_earlier_masks(session, photo) -> None:
    session.set_image(photo)
    empty = session.predict().labels
    session.add_click(10, 20, "hair")
    one = session.predict().labels
    session.add_click(60, 90, "face")
    two = session.predict().labels
    assert not np.array_equal(one, two)
    assert session.undo().label == 13
    assert np.array_equal(session.predict().labels, one)
    session.reset()
    assert session.clicks == () and session.undo() is None
    assert np.array_equal(session.predict().labels, empty)


def test_new_image_clears_clicks(session, photo) -> None:
    session.set_image(photo)
    session.add_click(1, 1, 0)
    session.set_image(photo[:60])
    assert session.clicks == ()
    assert session.image_size == (60, 80)
    with pytest.raises(InputError, match="outside the 80x60 image"):
        session.add_click(1, 70, 0)


def test_bad_use_is_refused(session, photo) -> None:
    with pytest.raises(InputError, match="no image set"):
        session.predict()
    with pytest.raises(InputError, match="no image set"):
        session.add_click(0, 0, 0)
    with pytest.raises(InputError, match="uint8"):
        session.set_image(photo.astype(np.float32))
    session.set_image(photo)
    with pytest.raises(InputError, match="unknown label 'wings'"):
        session.add_click(0, 0, "wings")
    assert session.clicks == ()


def test_open_from_file_and_unknown_backend(tmp_path, tiny_checkpoint, photo) -> None:
    path = save_checkpoint(tmp_path / "m.pt", tiny_checkpoint.model, tiny_checkpoint.spec)
    a, b = Session.open(path), Session.open(tiny_checkpoint)
    for s in (a, b):
        s.set_image(photo)
        s.add_click(5, 5, 2)
    assert np.array_equal(a.predict().labels, b.predict().labels)
    with pytest.raises(BackendError, match="unknown backend 'tpu'"):
        Session.open(tiny_checkpoint, backend="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_gpu_is_a_clear_error(tiny_checkpoint) -> None:
    with pytest.raises(BackendError, match="CUDA"):
        Session.open(tiny_checkpoint, device="cuda")


def test_sessions_sharing_one_backend_match_sessions_alone(tiny_checkpoint, rng) -> None:
    """Interleaved sessions on one network give each the mask it gets alone; the image buffer
    is re-filled only when the asking session changes."""
    from ihp_rt.backends import open_backend
    from ihp_rt.session import SharedBackend

    backend = open_backend(tiny_checkpoint, "torch")
    loads = []
    original = backend.set_image
    backend.set_image = lambda image: (loads.append(image), original(image))
    shared = SharedBackend(backend)
    photos = [rng.integers(0, 256, (90, 70, 3), dtype=np.uint8), rng.integers(0, 256, (60, 110, 3), dtype=np.uint8)]
    a, b = Session(shared), Session(shared)
    a.set_image(photos[0])
    b.set_image(photos[1])
    assert len(loads) == 2
    a.add_click(5, 5, "hair")
    b.add_click(100, 50, "face")
    first_a, first_b = a.predict().labels, b.predict().labels
    assert len(loads) == 4  # a's image back in, then b's
    b.add_click(3, 3, "background")
    b.predict()
    assert len(loads) == 4  # b again: no copy
    for photo, clicks, mask in ((photos[0], [(5, 5, 2)], first_a), (photos[1], [(100, 50, 13)], first_b)):
        alone = Session.open(tiny_checkpoint)
        alone.set_image(photo)
        for x, y, label in clicks:
            alone.add_click(x, y, label)
        assert np.array_equal(alone.predict().labels, mask)


def test_sessions_on_one_raw_backend_share_its_wrapper(tiny_checkpoint, rng) -> None:
    """Two Sessions given the same backend must not each believe their image is loaded."""
    from ihp_rt.backends import open_backend
    from ihp_rt.session import SharedBackend

    backend = open_backend(tiny_checkpoint, "torch")
    a, b = Session(backend), Session(backend)
    assert a.engine is b.engine is SharedBackend.of(backend)
    with pytest.raises(ValueError, match="already shared"):
        SharedBackend(backend)
    photos = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    a.set_image(photos[0])
    b.set_image(photos[1])
    a.add_click(3, 3, 2)
    alone = Session.open(tiny_checkpoint)
    alone.set_image(photos[0])
    alone.add_click(3, 3, 2)
    assert np.array_equal(a.predict().labels, alone.predict().labels)  # a's image, not b's


@pytest.mark.parametrize("wrap", ["session", "shared"])
def test_shared_backend_lets_its_backend_be_freed(tiny_checkpoint, photo, wrap) -> None:
    """The registry of wrappers must not keep a backend alive: the trainer opens one per
    validation, and each one kept would be a model copy leaked."""
    import gc
    import weakref

    from ihp_rt.backends import open_backend
    from ihp_rt.session import SharedBackend

    backend = open_backend(tiny_checkpoint, "torch")
    session = Session(backend if wrap == "session" else SharedBackend(backend))
    session.set_image(photo)
    session.predict()
    freed = weakref.ref(backend)
    del backend, session
    gc.collect()
    assert freed() is None
