"""Typed training configuration, loadable from YAML (unknown keys are an error, not ignored)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ihp_rt.errors import InputError


@dataclass
class TrainConfig:
    """Defaults are the paper's recipe where it applies (SGD 7e-4, poly decay, Random-Sampling
    with 1..15 extra clicks, SP-loss lambda 1, d_margin 10) at a CPU-friendly size."""

    data: str = "../shared/data/ccp"
    label_mapping: str | None = "ccp_coarse"  # merge of the data's classes; None: use them as they are
    val_count: int = 64  # images held out for validation (a seeded split of the folder)
    backbone: str = "mobilenetv3_large"
    pretrained: bool = False  # start the encoder from its ImageNet weights (EfficientNet-Lite only)
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning: new optimiser and schedule)
    init_from_other_split: bool = False  # allow an init_from that held out other photos than this run (see trainer)
    map_entry: str = "concat"  # how the click maps enter: concat (the paper) | branch (ihp_rt/model/input_stem.py)
    map_scale: float = 1.0  # the network sees maps * map_scale (1: raw 0..255 units)
    input_size: int = 473
    crop: tuple[int, int] = (384, 256)  # (height, width) of training crops
    scale: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    batch_size: int = 8
    steps: int = 3000
    time_limit_min: float | None = None  # stop (and save) after this many minutes of training
    optimizer: str = "sgd"  # "sgd" (paper) or "adamw" (from scratch)
    lr: float = 7e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    strategy: str = "random"  # random | near_edge | random_only
    extra_clicks: tuple[int, int] = (1, 15)
    ce_weighting: str = "balanced"  # plain | balanced (the paper) | sqrt_balanced (losses.py)
    sp_lambda: float | None = None  # None: 1 for random, 3 for near_edge (the paper's choice)
    error_clicks_p: float = 0.0  # share of batches given error-driven clicks instead (training/error_clicks.py)
    error_clicks_max: int = 10  # those batches get 0..this many corrections where the model errs
    correction_head: bool = False  # the model carries a correction head (ihp_rt/model/correction_head.py)
    train_only_head: bool = False  # freeze the network, train the head on simulated corrections (correction_steps)
    head_rounds: int = 5  # corrections simulated per sample and step when training the head
    head_region_weight: float = 5.0  # extra loss weight of the clicked wrong region's pixels
    d_margin: int = 10
    seed: int = 0
    workers: int = 1
    threads: int | None = None
    device: str = "cpu"
    autocast_bf16: bool = False  # bfloat16 autocast of forward and loss (CPUs with AVX-512 BF16, GPUs)
    checkpoint_every: int = 50
    bn_recalibration_batches: int = 20  # batches that re-estimate BatchNorm statistics at the end
    val_every: int = 0  # steps between validations (0: only at the end)
    val_corrections: int = 5
    out: str = "runs/train"
    model_version: str = "dev"
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse unknown choices here, before data loaders start, not at the first step."""
        from ihp_rt.simulation import STRATEGIES
        from ihp_rt.spec import MAP_ENTRIES
        from ihp_rt.training.losses import CE_WEIGHTINGS

        choices = {"optimizer": ("sgd", "adamw"), "ce_weighting": CE_WEIGHTINGS, "map_entry": MAP_ENTRIES,
                   "strategy": STRATEGIES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InputError(f"{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        if not 0 <= self.error_clicks_p <= 1 or self.error_clicks_max < 0:
            raise InputError(f"error_clicks_p must be in [0, 1] and error_clicks_max >= 0; got "
                             f"{self.error_clicks_p} and {self.error_clicks_max}")
        if not 0 < self.map_scale <= 1:
            raise InputError(f"map_scale must be in (0, 1], got {self.map_scale}")
        if self.train_only_head and not self.correction_head:
            raise InputError("train_only_head needs correction_head: true")
        if self.head_rounds < 1 or self.head_region_weight < 0:
            raise InputError(f"head_rounds must be >= 1 and head_region_weight >= 0; got {self.head_rounds} and "
                             f"{self.head_region_weight}")

    @property
    def effective_sp_lambda(self) -> float:
        if self.sp_lambda is not None:
            return self.sp_lambda
        return 3.0 if self.strategy == "near_edge" else 1.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise InputError(f"unknown training option(s): {', '.join(unknown)}")
        values = {}
        for key, value in d.items():
            default = known[key].default
            values[key] = tuple(value) if isinstance(default, tuple) and value is not None else value
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"cannot read training config {path}: {e}") from None
        if not isinstance(doc, dict):
            raise InputError(f"training config {path} must be a mapping of options")
        return cls.from_dict(doc)
