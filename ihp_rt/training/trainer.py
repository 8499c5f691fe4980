"""The training loop: checkpoints often, resumes where it stopped, logs and plots losses.

``out/last.pt`` is a normal self-describing checkpoint (it opens in a Session);
``out/resume.pt`` holds the optimiser state and step. Both are written atomically every
``checkpoint_every`` steps, so an interruption loses at most that many steps.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ihp_rt.data.folder import FolderDataset
from ihp_rt.errors import InputError
from ihp_rt.evaluation import evaluate
from ihp_rt.labels import get_label_mapping
from ihp_rt.model import Checkpoint, build_model, default_spec, load_checkpoint, save_checkpoint
from ihp_rt.session import Session
from ihp_rt.spec import ModelSpec
from ihp_rt.training.config import TrainConfig
from ihp_rt.training.correction_steps import head_loss
from ihp_rt.training.dataset import Augment, ClickTrainingSet
from ihp_rt.training.error_clicks import error_driven_batch, unpadded
from ihp_rt.training.losses import cross_entropy, sp_loss

LOG_FIELDS = ("step", "seconds", "lr", "loss", "ce", "sp", "honoured")  # honoured: head training only


def split_names(dataset: FolderDataset, val_count: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random train/validation split by name (never by folder order)."""
    names = sorted(dataset.names)
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in order[:val_count])
    train = sorted(names[i] for i in order[val_count:])
    return train, val


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of what the run trains: the whole model, or with ``train_only_head`` its
    correction head alone (the network's parameters are frozen then)."""
    if cfg.train_only_head:
        model.requires_grad_(False)
        model.correction.requires_grad_(True)
        model = model.correction
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise InputError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")


def poly_lr(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """Poly decay over whichever budget -- steps or wall time -- will run out first."""
    progress = step / cfg.steps
    if cfg.time_limit_min:
        progress = max(progress, seconds / (cfg.time_limit_min * 60))
    return cfg.lr * (1 - min(progress, 1.0)) ** cfg.poly_power


def make_loaders(samples: torch.utils.data.Dataset, cfg: TrainConfig, step: int) -> tuple:
    """(training loader, loader for BatchNorm re-estimation).

    The second draws its own batches in the main process: iterating the training loader for it
    mid-epoch would restart its persistent workers and end the training epoch early.
    """
    generator = torch.Generator().manual_seed(cfg.seed + step)
    loader = torch.utils.data.DataLoader(samples, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         num_workers=cfg.workers, generator=generator,
                                         persistent_workers=cfg.workers > 0)
    bn_loader = torch.utils.data.DataLoader(samples, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                            generator=torch.Generator().manual_seed(cfg.seed + 1))
    return loader, bn_loader


def restore(out: Path, spec: ModelSpec, cfg: TrainConfig,
            val_names: list[str]) -> tuple[torch.nn.Module, torch.optim.Optimizer, int, float]:
    """(model, optimizer, step, seconds) of the run in ``out``, or a fresh start (``val_names``:
    this run's held-out photos, which an ``init_from`` base must have held out too).

    The model is moved to ``cfg.device`` before the optimizer exists, so its saved state is
    loaded onto the parameters' device (a run interrupted on the CPU resumes on a GPU and back).
    """
    last, resume = out / "last.pt", out / "resume.pt"
    if last.is_file() and resume.is_file():
        checkpoint = load_checkpoint(last)
        state = torch.load(resume, map_location="cpu", weights_only=True)
        if checkpoint.spec != spec or state["step"] != checkpoint.training.get("step"):
            raise InputError(f"{out} holds a run of another configuration; choose a new --out")
        model = checkpoint.model.train().to(cfg.device, memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg)
        optimizer.load_state_dict(state["optimizer"])
        print(f"resuming {out} at step {state['step']} ({state['seconds'] / 60:.1f} min trained)")
        return model, optimizer, state["step"], state["seconds"]
    if cfg.init_from:
        model = initial_weights(Path(cfg.init_from), spec, val_names, cfg.init_from_other_split, cfg.seed).train()
    else:
        model = build_model(spec, seed=cfg.seed, pretrained=cfg.pretrained).train()
    # channels-last makes the CPU (oneDNN) convolutions about 20 % faster here, and suits GPUs too.
    model.to(cfg.device, memory_format=torch.channels_last)
    return model, make_optimizer(model, cfg), 0, 0.0


def bf16_autocast(cfg: TrainConfig) -> bool:
    """Whether the run autocasts to bfloat16: asked for, and native on the device it runs on.

    A CPU without AVX-512 BF16 (a 2-core AMD EPYC with AVX2 only, for one) emulates bfloat16: a
    step of the default recipe's fine-tuning took 42 s there against 4.5 s in float32; GPUs before
    Ampere emulate it too. A config written on a BF16 machine would crawl silently on another, so
    the run says so and keeps float32. Only x86 CPUs and CUDA can be asked; elsewhere (ARM CPUs)
    the config's choice stands.
    """
    if not cfg.autocast_bf16:
        return False
    kind = torch.device(cfg.device).type
    if kind == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    elif kind == "cpu" and platform.machine().lower() in ("x86_64", "amd64"):
        native = torch.cpu._is_avx512_bf16_supported()
    else:
        native = True
    if not native:
        warnings.warn(f"autocast_bf16: this {kind} device has no native bfloat16, where it is emulated and steps "
                      "are many times slower; training in float32 instead", RuntimeWarning, stacklevel=2)
    return native


def initial_weights(path: Path, spec: ModelSpec, val_names: list[str], other_split: bool = False,
                    seed: int = 0) -> torch.nn.Module:
    """The network of checkpoint ``path``, to fine-tune into a model of ``spec``.

    Only the version name may differ: another label set, backbone or map entry would load
    weights that mean something else, so it is refused rather than half-loaded. The one thing a
    run may add is a correction head, to a base without one: the head starts fresh (seeded by
    ``seed``).

    The base must have held out the photos this run holds out (``val_names``): with another
    split, fine-tuning trains on photos the base was validated on, and this run's validation
    scores photos the base trained on, both silently. Such a base (or one that records no
    held-out names, which cannot be checked) is refused unless ``other_split`` says the run
    knows.
    """
    if not path.is_file():
        raise InputError(f"init_from: no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    adds_head = spec.correction_head and not checkpoint.spec.correction_head
    base_as_run = dataclasses.replace(checkpoint.spec, model_version=spec.model_version,
                                      correction_head=checkpoint.spec.correction_head or adds_head)
    if base_as_run != spec:
        raise InputError(f"init_from: {path} is a {checkpoint.spec.backbone} model of another configuration "
                         f"(labels, backbone, input size, map entry or correction head differ from this run's)")
    base_val = checkpoint.training.get("val_names")
    if not other_split and base_val is None:
        raise InputError(f"init_from: {path} records no held-out photos, so this run cannot check that it does not "
                         "train on photos the base was validated on; set init_from_other_split: true to start from "
                         "it anyway")
    if not other_split and set(base_val) != set(val_names):
        not_held = sorted(set(base_val) - set(val_names))
        raise InputError(f"init_from: {path} held out other photos than this run: {len(not_held)} it held out are "
                         f"not held out here ({', '.join(not_held[:8])}{', ...' if len(not_held) > 8 else ''}) and "
                         f"{len(set(val_names) - set(base_val))} held out here were not held out by it. Use the "
                         "base's data, val_count and seed, or set init_from_other_split: true to fine-tune anyway "
                         "(the validation is then not of held-out photos)")
    if not adds_head:
        return checkpoint.model
    model = build_model(spec, seed=seed)
    model.load_state_dict(checkpoint.model.state_dict(), strict=False)  # everything but the head's weights
    return model


def validate(checkpoint: Checkpoint, dataset: FolderDataset, corrections: int, seed: int) -> dict:
    """Data-set mIoU (accumulated confusion) after the initial clicks and after k corrections."""
    session = Session.open(checkpoint, backend="torch", device="cpu", click_radius=0)
    result = evaluate(session, dataset, corrections, seed=seed, progress=False)
    return {f"miou@{k}": v for k, v in enumerate(result["miou"])}


def plot_losses(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with log_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "ce", "sp"):
        values = np.array([float(r[key]) for r in rows])
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=f"{key} (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("ihp-rt training losses")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) into ``cfg.out``; returns the path of the final checkpoint."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    mapping = get_label_mapping(cfg.label_mapping) if cfg.label_mapping else None
    folder = FolderDataset(cfg.data, mapping)
    train_names, val_names = split_names(folder, cfg.val_count, cfg.seed)
    spec = default_spec(folder.label_set, cfg.backbone, input_size=cfg.input_size, model_version=cfg.model_version,
                        map_entry=cfg.map_entry, map_scale=cfg.map_scale, correction_head=cfg.correction_head)
    last, resume = out / "last.pt", out / "resume.pt"
    model, optimizer, step, elapsed = restore(out, spec, cfg, val_names)
    if cfg.train_only_head:
        model.eval()  # the frozen network keeps its BatchNorm statistics; the head has none

    samples = ClickTrainingSet(folder.subset(train_names), spec, Augment(cfg.crop, cfg.scale, cfg.flip),
                               cfg.strategy, cfg.extra_clicks, cfg.d_margin, cfg.seed)
    loader, bn_loader = make_loaders(samples, cfg, step)
    log_path = out / "log.csv"
    new_log = not log_path.is_file() or step == 0
    log_file = log_path.open("w" if new_log else "a", newline="")
    log = csv.DictWriter(log_file, LOG_FIELDS)
    if new_log:
        log.writeheader()
    sp_lambda = cfg.effective_sp_lambda
    autocast_bf16 = bf16_autocast(cfg)

    def save() -> None:
        torch.save({"step": step, "seconds": elapsed, "optimizer": optimizer.state_dict()}, resume.with_suffix(".tmp"))
        resume.with_suffix(".tmp").replace(resume)
        save_checkpoint(last, model, spec, {"step": step, "seconds": round(elapsed, 1), "config": cfg.to_dict(),
                                            "autocast_bf16_used": autocast_bf16, "train_images": len(train_names),
                                            "val_names": val_names})
        log_file.flush()

    def budget_left() -> bool:
        return step < cfg.steps and not (cfg.time_limit_min and elapsed >= cfg.time_limit_min * 60)

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train", unit="step")
    started = time.monotonic() - elapsed
    while budget_left():
        for x, labels, clicks in loader:
            lr = poly_lr(cfg, step, elapsed)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Seeded by the step, so a resumed run draws the same error-driven batches.
            rng = np.random.default_rng([cfg.seed, step])
            honoured = ""
            if cfg.train_only_head:
                ce, rounds = head_loss(model, x, labels, unpadded(clicks), spec, rng, cfg.head_rounds,
                                       cfg.head_region_weight, autocast_bf16)
                sp, honoured = ce * 0, f"{rounds.honoured / max(1, rounds.corrections):.3f}"
            else:
                if cfg.error_clicks_p and rng.random() < cfg.error_clicks_p:
                    x, clicks = error_driven_batch(model, x, labels, spec, rng, cfg.error_clicks_max, autocast_bf16)
                x = x.to(cfg.device, memory_format=torch.channels_last)
                labels, clicks = labels.to(cfg.device), clicks.to(cfg.device)
                with torch.autocast(torch.device(cfg.device).type, torch.bfloat16, enabled=autocast_bf16):
                    logits, features = model(x, return_features=True)
                ce = cross_entropy(logits.float(), labels, clicks, cfg.ce_weighting)
                sp = sp_loss(features.float(), labels, clicks) if sp_lambda > 0 else ce * 0
            loss = ce + sp_lambda * sp
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"loss became {loss.item()} at step {step}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            elapsed = time.monotonic() - started
            log.writerow({"step": step, "seconds": round(elapsed, 1), "lr": f"{lr:.3g}", "loss": f"{loss.item():.4f}",
                          "ce": f"{ce.item():.4f}", "sp": f"{sp.item():.4f}", "honoured": honoured})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", ce=f"{ce.item():.3f}", sp=f"{sp.item():.3f}")
            if step % cfg.checkpoint_every == 0:
                save()
            if cfg.val_every and step % cfg.val_every == 0:
                snapshot = copy.deepcopy(model)
                if not cfg.train_only_head:
                    recalibrate_batchnorm(snapshot, bn_loader, cfg.bn_recalibration_batches, cfg.device)
                scores = validate(Checkpoint(snapshot, spec), folder.subset(val_names[:16]), cfg.val_corrections, 0)
                tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
            if not budget_left():
                break
    bar.close()
    # The running BatchNorm statistics lag far behind weights trained from scratch at this learning
    # rate (eval-mode pixel accuracy 13 % vs 72 % in train mode, measured): recompute them exactly
    # for the final weights before saving. Running `train` again on a finished run only redoes this.
    # A frozen network keeps the statistics it came with.
    if not cfg.train_only_head:
        recalibrate_batchnorm(model, bn_loader, cfg.bn_recalibration_batches, cfg.device)
    save()
    log_file.close()
    plot_losses(log_path, out / "loss.png")
    return last


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, loader, batches: int, device: str = "cpu") -> None:
    """Replace BatchNorm running statistics by their exact average over ``batches`` training batches
    (the "precise BN" of Wu & Johnson 2021); leaves the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average instead of an exponential one
    model.train()
    for i, (x, _, _) in enumerate(loader):
        if i >= batches:
            break
        model(x.to(device, memory_format=torch.channels_last))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
