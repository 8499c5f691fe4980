"""A short training run on generated data: the loss goes down, checkpoints resume, logs plot."""

import csv
import warnings

import numpy as np
import pytest
import torch

from ihp_rt.data.synthetic import write_folder_layout
from ihp_rt.model import load_checkpoint
from ihp_rt.training.config import TrainConfig
from ihp_rt.training.trainer import bf16_autocast, poly_lr, split_names, train


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    return write_folder_layout(tmp_path_factory.mktemp("synthetic"), 12, seed=0, height=96, width=72)


def config(data, out, steps: int, **changes) -> TrainConfig:
    base = dict(data=str(data), label_mapping=None, val_count=2, backbone="mobilenetv3_large", input_size=96,
                crop=(64, 48), batch_size=4, steps=steps, optimizer="adamw", lr=2e-3, weight_decay=1e-4,
                workers=0, checkpoint_every=4, out=str(out), seed=0)
    return TrainConfig(**{**base, **changes})


def load_folder(data):
    from ihp_rt.data.folder import FolderDataset

    return FolderDataset(data)


def losses(run) -> list[float]:
    with (run / "log.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_short_run_reduces_the_loss_and_resumes(synthetic_folder, tmp_path) -> None:
    torch.manual_seed(0)
    run = tmp_path / "run"
    last = train(config(synthetic_folder, run, steps=24), progress=False)
    values = losses(run)
    assert len(values) == 24
    assert np.mean(values[-6:]) < 0.8 * np.mean(values[:6])
    ckpt = load_checkpoint(last)
    assert ckpt.training["step"] == 24 and ckpt.spec.labels.names[2] == "hair"
    assert (run / "loss.png").is_file() and (run / "resume.pt").is_file()
    assert not ckpt.model.training and all(
        torch.isfinite(m.running_var).all() for m in ckpt.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # Resuming continues from the last checkpoint instead of starting over.
    train(config(synthetic_folder, run, steps=28), progress=False)
    assert len(losses(run)) == 28 and load_checkpoint(last).training["step"] == 28


def test_resume_refuses_another_configuration(synthetic_folder, tmp_path) -> None:
    from ihp_rt.errors import InputError

    run = tmp_path / "run"
    train(config(synthetic_folder, run, steps=1), progress=False)
    with pytest.raises(InputError, match="another configuration"):
        train(config(synthetic_folder, run, steps=2, backbone="resnet18"), progress=False)


def test_split_is_seeded_and_disjoint(synthetic_folder) -> None:
    from ihp_rt.data import FolderDataset

    folder = FolderDataset(synthetic_folder)
    train_a, val_a = split_names(folder, 3, seed=1)
    assert (train_a, val_a) == split_names(folder, 3, seed=1)
    assert len(val_a) == 3 and not set(train_a) & set(val_a) and len(train_a) + 3 == len(folder)


def test_poly_schedule_follows_the_tighter_budget() -> None:
    cfg = TrainConfig(lr=1.0, steps=100, poly_power=1.0, time_limit_min=10)
    assert poly_lr(cfg, 0, 0) == 1.0
    assert poly_lr(cfg, 50, 60) == pytest.approx(0.5)  # steps are the tighter budget
    assert poly_lr(cfg, 10, 300) == pytest.approx(0.5)  # time is
    assert poly_lr(cfg, 100, 0) == 0.0


def test_batchnorm_recalibration_gives_the_exact_average_of_batch_statistics() -> None:
    from ihp_rt.training.trainer import recalibrate_batchnorm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    batches = [(torch.randn(2, 3, 5, 5) * (i + 1) + i, None, None) for i in range(3)]
    with torch.no_grad():
        feats = [model[0](x) for x, _, _ in batches]
    recalibrate_batchnorm(model, batches, batches=3)
    expected = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    assert torch.allclose(model[1].running_mean, expected, atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


def test_resume_moves_the_optimizer_state_to_the_training_device(synthetic_folder, tmp_path) -> None:
    """A run saved on one device resumes on another: the optimizer state follows the parameters.

    'meta' stands in for a GPU here (no data, but a device of its own); before the fix the state
    was loaded while the parameters were still on the CPU and stayed there."""
    from ihp_rt.data import FolderDataset
    from ihp_rt.model import default_spec
    from ihp_rt.training.trainer import restore

    run = tmp_path / "run"
    cfg = config(synthetic_folder, run, steps=2, checkpoint_every=2)
    train(cfg, progress=False)
    spec = default_spec(FolderDataset(synthetic_folder).label_set, cfg.backbone, input_size=cfg.input_size,
                        model_version=cfg.model_version)
    cfg.device = "meta"
    model, optimizer, step, _ = restore(run, spec, cfg, val_names=[])  # resuming: no init_from to check
    assert step == 2
    states = [optimizer.state[p] for p in model.parameters() if p in optimizer.state]
    assert states and all(s["exp_avg"].device.type == "meta" for s in states)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_batchnorm_batches_never_shorten_a_training_epoch(synthetic_folder) -> None:
    """With loader workers, drawing the BatchNorm batches mid-epoch must leave the epoch whole."""
    from ihp_rt.training.trainer import make_loaders

    samples = list(range(10))
    cfg = TrainConfig(batch_size=2, workers=1, seed=0)
    loader, bn_loader = make_loaders(samples, cfg, step=0)
    seen = []
    for i, batch in enumerate(loader):
        seen += batch.tolist()
        if i == 1:
            assert len(list(bn_loader)) == 5  # a whole pass of re-estimation batches
    assert sorted(seen) == samples


@pytest.mark.slow
def test_pretrained_lite_run_with_branch_maps_and_bf16(synthetic_folder, tmp_path, monkeypatch) -> None:
    """The new recipe's pieces run end to end: ImageNet encoder, map branch, plain CE, bfloat16."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # bfloat16 even where emulated
    run = tmp_path / "run"
    last = train(config(synthetic_folder, run, steps=6, backbone="efficientnet_lite0", pretrained=True,
                        map_entry="branch", map_scale=1 / 16, ce_weighting="plain", autocast_bf16=True,
                        lr=1e-3), progress=False)
    ckpt = load_checkpoint(last)
    assert ckpt.spec.backbone == "efficientnet_lite0" and ckpt.spec.map_entry == "branch"
    assert ckpt.spec.first_kernel == 3 and ckpt.spec.map_scale == 1 / 16
    assert all(np.isfinite(losses(run)))
    assert ckpt.model.encoder.stem.maps.weight.abs().sum() > 0  # the maps were learned from zero


def test_bf16_autocast_falls_back_to_float32_where_the_device_would_emulate_it(monkeypatch) -> None:
    """Emulated bfloat16 made a step ~10x slower than float32 on an AVX2-only EPYC: warn and keep float32."""
    asked = TrainConfig(autocast_bf16=True)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.warns(RuntimeWarning, match="float32"):
        assert bf16_autocast(asked) is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: including_emulation)
    with pytest.warns(RuntimeWarning, match="cuda"):
        assert bf16_autocast(TrainConfig(autocast_bf16=True, device="cuda")) is False  # a pre-Ampere GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bf16_autocast(TrainConfig(autocast_bf16=True, device="cuda")) is True
        assert bf16_autocast(asked) is True
        assert bf16_autocast(TrainConfig(autocast_bf16=False)) is False
        monkeypatch.setattr("platform.machine", lambda: "aarch64")  # no check there: the config stands
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        assert bf16_autocast(asked) is True


def test_a_run_without_native_bf16_trains_in_float32_and_says_so(synthetic_folder, tmp_path, monkeypatch) -> None:
    """The fallback reaches the training step itself, and the checkpoint records what was used."""
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    real, enabled = torch.autocast, []

    def spy(*args, **kwargs):
        enabled.append(kwargs["enabled"])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    with pytest.warns(RuntimeWarning, match="float32"):
        last = train(config(synthetic_folder, tmp_path / "run", steps=2, autocast_bf16=True), progress=False)
    assert enabled == [False, False]
    assert load_checkpoint(last).training["autocast_bf16_used"] is False


@pytest.mark.parametrize(("key", "value"), [("ce_weighting", "focal"), ("map_entry", "add"), ("strategy", "edge"),
                                            ("optimizer", "lion"), ("map_scale", 2.0)])
def test_unknown_choices_are_refused_before_training(key: str, value) -> None:
    from ihp_rt.errors import InputError

    with pytest.raises(InputError, match=key):
        TrainConfig(**{key: value})


@pytest.mark.slow
def test_error_driven_run_resumes_and_init_from_fine_tunes(synthetic_folder, tmp_path) -> None:
    """Every batch with error-driven clicks trains and resumes; init_from starts from its weights."""
    first = train(config(synthetic_folder, tmp_path / "a", steps=3, error_clicks_p=1.0, error_clicks_max=3),
                  progress=False)
    train(config(synthetic_folder, tmp_path / "a", steps=4, error_clicks_p=1.0, error_clicks_max=3), progress=False)
    assert len(losses(tmp_path / "a")) == 4 and all(np.isfinite(losses(tmp_path / "a")))
    start = load_checkpoint(first).model.state_dict()
    tuned = load_checkpoint(train(config(synthetic_folder, tmp_path / "b", steps=1, lr=1e-12, init_from=str(first)),
                                  progress=False)).model.state_dict()
    weights = [k for k in start if k.endswith("weight")]
    assert all(torch.allclose(start[k], tuned[k], atol=1e-6) for k in weights)  # lr ~0: the same network


def test_init_from_refuses_a_missing_file_or_another_model(synthetic_folder, tmp_path) -> None:
    from ihp_rt.errors import InputError

    with pytest.raises(InputError, match="no checkpoint"):
        train(config(synthetic_folder, tmp_path / "a", steps=1, init_from=str(tmp_path / "nope.pt")), progress=False)
    other = train(config(synthetic_folder, tmp_path / "b", steps=1, backbone="resnet18"), progress=False)
    with pytest.raises(InputError, match="another configuration"):
        train(config(synthetic_folder, tmp_path / "c", steps=1, init_from=str(other)), progress=False)


def test_init_from_refuses_a_base_that_held_out_other_photos(synthetic_folder, tmp_path) -> None:
    """Fine-tuning must not train on the photos the base model was validated on (nor validate on
    photos the base trained on): a base whose held-out names differ from this run's split is
    refused, naming the photos, unless the run says init_from_other_split; a base that records no
    held-out names cannot be checked and is refused alike."""
    from ihp_rt.errors import InputError
    from ihp_rt.model import save_checkpoint
    from ihp_rt.training.trainer import split_names

    base = train(config(synthetic_folder, tmp_path / "base", steps=1), progress=False)
    base_val = load_checkpoint(base).training["val_names"]
    train_names, val_names = split_names(load_folder(synthetic_folder), 2, seed=1)
    assert set(base_val) & set(train_names)  # seed 1 would train on photos the base held out
    with pytest.raises(InputError, match="held out other photos") as refused:
        train(config(synthetic_folder, tmp_path / "tuned", steps=1, seed=1, init_from=str(base)), progress=False)
    assert all(name in str(refused.value) for name in set(base_val) - set(val_names))
    assert "init_from_other_split" in str(refused.value) and not (tmp_path / "tuned" / "last.pt").exists()
    allowed = train(config(synthetic_folder, tmp_path / "tuned", steps=1, seed=1, init_from=str(base),
                           init_from_other_split=True), progress=False)
    assert load_checkpoint(allowed).training["val_names"] == val_names

    unrecorded = tmp_path / "unrecorded.pt"
    checkpoint = load_checkpoint(base)
    save_checkpoint(unrecorded, checkpoint.model, checkpoint.spec, {"step": 1})
    with pytest.raises(InputError, match="records no held-out photos"):
        train(config(synthetic_folder, tmp_path / "u", steps=1, init_from=str(unrecorded)), progress=False)


@pytest.mark.parametrize(("key", "value"), [("error_clicks_p", 1.5), ("error_clicks_max", -1)])
def test_error_click_settings_are_checked(key: str, value) -> None:
    from ihp_rt.errors import InputError

    with pytest.raises(InputError, match="error_clicks"):
        TrainConfig(**{key: value})


@pytest.mark.slow
def test_head_training_adds_a_head_to_a_base_and_trains_only_the_head(synthetic_folder, tmp_path) -> None:
    """init_from a network without a head, train_only_head: the head's weights move, every weight
    and BatchNorm statistic of the network stays as the base had it, and the log says how many
    simulated corrections the head honoured."""
    base = train(config(synthetic_folder, tmp_path / "base", steps=2, input_size=200, crop=(200, 160)),
                 progress=False)
    tuned = train(config(synthetic_folder, tmp_path / "head", steps=3, input_size=200, crop=(200, 160),
                         init_from=str(base), correction_head=True, train_only_head=True, head_rounds=2, lr=1e-2),
                  progress=False)
    before, after = load_checkpoint(base).model.state_dict(), load_checkpoint(tuned)
    assert after.spec.correction_head and after.model.correction is not None
    state = after.model.state_dict()
    assert all(torch.equal(before[k], state[k]) for k in before)
    head = [k for k in state if k.startswith("correction.")]
    assert head and not torch.equal(state["correction.out.weight"], torch.zeros_like(state["correction.out.weight"]))
    with (tmp_path / "head" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(0 <= float(r["honoured"]) <= 1 for r in rows)


def test_head_options_are_checked() -> None:
    from ihp_rt.errors import InputError

    with pytest.raises(InputError, match="needs correction_head"):
        TrainConfig(train_only_head=True)
    with pytest.raises(InputError, match="head_rounds"):
        TrainConfig(correction_head=True, head_rounds=0)
