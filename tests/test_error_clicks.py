"""Error-driven training batches: the evaluation's initial clicks, then clicks where the model errs."""

import numpy as np
import torch

from ihp_rt.clicks import Click, clicks_array
from ihp_rt.data.folder import IGNORE
from ihp_rt.encoding import encode_reference
from ihp_rt.labels import get_label_set
from ihp_rt.model import build_model
from ihp_rt.simulation import central_clicks
from ihp_rt.spec import ModelSpec
from ihp_rt.training.error_clicks import error_driven_batch


def test_batch_gets_initial_and_correction_clicks_encoded_exactly() -> None:
    labels_set = get_label_set("lip")
    spec = ModelSpec(labels=labels_set, backbone="mobilenetv3_large", input_size=64, model_version="t")
    model = build_model(spec, seed=0).train()
    rng = np.random.default_rng(0)
    truth = np.zeros((2, 64, 48), np.int64)
    truth[:, 10:30, 10:30] = 2
    truth[:, 35:60, 5:40] = 5
    truth[1, 0:4] = IGNORE
    x = torch.rand(2, 3 + spec.num_classes, 64, 48)
    out, padded = error_driven_batch(model, x, torch.from_numpy(truth), spec, rng, max_corrections=4)
    assert torch.equal(out[:, :3], x[:, :3])  # the image is untouched
    for i in range(2):
        rows = padded[i][padded[i, :, 2] >= 0].numpy()
        clicks = [Click(int(a), int(b), int(c)) for a, b, c in rows]
        initial = central_clicks(truth[i].astype(np.uint8), np.random.default_rng(9), IGNORE, with_background=False)
        assert [c.label for c in clicks[:len(initial)]] == [c.label for c in initial]  # one per part, no background
        assert len(initial) <= len(clicks) <= len(initial) + 4
        assert all(truth[i, c.y, c.x] == c.label for c in clicks)  # labelled by the ground truth
        want = encode_reference(clicks_array(clicks), spec.num_classes, 64, 48, spec.cap)
        np.testing.assert_allclose(out[i, 3:].numpy(), want)
    assert model.training
