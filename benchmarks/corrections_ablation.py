"""Corrections that take: the remedies of interactive segmentation measured against each other.

``python -m ihp_rt.benchmarks.corrections_ablation --arm ARM --out DIR [--minutes M]``, then
``python -m ihp_rt.benchmarks.corrections_ablation --combine DIR... --out DIR`` for one table and plot.

Every arm starts from the shipped network (ihp_rt/assets/ihp_default.pt) and is scored with the
paper's protocol on the 64 held-out validation photos (configs/ccp_val_names.txt), network alone
(click radius 0) and with the shipped click disks (radius 4), on ONNX Runtime's CPU provider.
The trained arms get the same wall time (``--minutes``, on the same 2-core machine, nothing else
running) and the same crops, augmentation and simulated user as the correction head's run
(configs/correction_head.yaml):

* ``network``: the network alone, as shipped; every correction is a full pass.
* ``prev_mask``: RITM's remedy (Sofiiuk et al. 2022). The previous prediction enters as C more
  input channels (one-hot, all zero before the first prediction; the first convolution widened
  with zero weights), and the whole network is fine-tuned with iterative training: no-grad passes
  place each next click at the centre of the largest wrong region of the network's own previous
  prediction and feed that prediction back, then one pass with gradient.
* ``wide_maps``: the click maps' reach. Each class gets a second map, a cone 1 - d / 48 px
  around its clicks (Eq. 1 reaches isqrt(255) = 15 px, under one stride-16 cell), in C more input
  channels; fine-tuned with the same iterative clicks, without the previous prediction.
* ``focus_crop``: FocalClick's correction path with the shipped network, no training. A
  correction runs the network on a Focus Crop around the click (the box of the previous
  prediction's region under the click, x1.4, at least 96 model pixels, square) resized to the
  full input, and Progressive Merge writes back only the changed region that touches the click.
* ``boost``: the shipped correction (:class:`ihp_rt.correction.Boost`), no training: a correction
  raises its class's stride-4 logits by a Gaussian around the click, just enough to win the clicked
  pixel by a margin, and Progressive Merge writes only the changed pixels connected to the click; a
  correction costs no network pass. ``--boost-sigma``, ``--boost-margin`` and ``--boost-rule``
  (which clicks the network runs on) are the sweep that chose the shipped values.
* ``head`` is the shipped remedy and is not trained here: ``ihp-rt train --config
  configs/correction_head.yaml`` then ``ihp-rt eval`` (README, "Corrections that take").

Writes eval.json, eval.md and miou_vs_clicks.png, as ``ihp-rt eval`` does, and the trained
network (``model.onnx``) for the trained arms.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ihp_rt.click_enforcement import DEFAULT_CLICK_RADIUS, enforce_clicks
from ihp_rt.clicks import Click, clicks_array, make_click
from ihp_rt.correction import BOOST_MARGIN, BOOST_SIGMA, Boost, Pass, corrected, network_clicks
from ihp_rt.data.folder import IGNORE, FolderDataset
from ihp_rt.encoding import encode_cpu
from ihp_rt.geometry import prepare_image
from ihp_rt.labels import get_label_mapping
from ihp_rt.model import load_checkpoint
from ihp_rt.model.deeplab import DeepLabV3Plus
from ihp_rt.model.input_stem import InputStem
from ihp_rt.session import Prediction
from ihp_rt.simulation import central_clicks, correction_clicks
from ihp_rt.spec import ModelSpec
from ihp_rt.training.config import TrainConfig
from ihp_rt.training.dataset import Augment, ClickTrainingSet
from ihp_rt.training.error_clicks import unpadded
from ihp_rt.training.trainer import recalibrate_batchnorm, split_names

ARMS = ("network", "prev_mask", "wide_maps", "focus_crop", "boost")
TRAINED = ("prev_mask", "wide_maps")
CONE_REACH = 48.0  # model pixels at which a wide map's cone falls to zero
FOCUS_MARGIN, FOCUS_MIN = 1.4, 96  # Focus Crop: box expansion and smallest side, model pixels
# boost: "clicks" runs the network as shipped (ihp_rt.correction.network_clicks, a function of the click
# list); "parts" as shipped but not on the first correction; "batch" as "parts" and on every click given
# before the first prediction
BOOST_RULES = ("clicks", "parts", "batch")
HEAD_CONFIG = Path("configs/correction_head.yaml")  # crops, scale, batch, lr and rounds shared with the head
MAX_ROUNDS = 5  # corrections simulated per sample before the pass with gradient: 0..MAX_ROUNDS


def cone_maps(clicks: np.ndarray, num_classes: int, height: int, width: int, reach: float = CONE_REACH) -> np.ndarray:
    """(C, H, W) float32: per class, the largest 1 - d / reach (clamped at 0) over its clicks."""
    out = np.zeros((num_classes, height, width), np.float32)
    rows, cols = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    for x, y, label in np.asarray(clicks).tolist():
        r = int(reach)
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, height), max(x - r, 0), min(x + r + 1, width)
        d = np.sqrt((rows[y0:y1] - y) ** 2 + (cols[:, x0:x1] - x) ** 2)
        np.maximum(out[label, y0:y1, x0:x1], np.clip(1 - d / reach, 0, None), out=out[label, y0:y1, x0:x1])
    return out


def one_hot(labels: np.ndarray | None, num_classes: int, height: int, width: int) -> np.ndarray:
    """(C, H, W) float32 one-hot of a label map; all zero when there is no prediction yet."""
    out = np.zeros((num_classes, height, width), np.float32)
    if labels is not None:
        np.put_along_axis(out, labels[None].astype(np.int64), 1.0, axis=0)
    return out


def extra_channels(arm: str, clicks: np.ndarray, previous: np.ndarray | None, spec: ModelSpec, height: int,
                   width: int) -> np.ndarray:
    """The C channels an arm adds after RGB + Eq. 1 maps."""
    if arm == "prev_mask":
        return one_hot(previous, spec.num_classes, height, width)
    return cone_maps(clicks, spec.num_classes, height, width)


def widen_first_layer(model: DeepLabV3Plus, extra: int) -> DeepLabV3Plus:
    """The network with ``extra`` more input channels, their first-layer weights zero: at step 0 it
    computes exactly what the shipped network does."""
    model = copy.deepcopy(model)
    stem = next(m for m in model.modules() if isinstance(m, InputStem))
    if stem.entry.mode != "concat" or stem.entry.scale != 1:
        raise ValueError("the ablation widens concat stems with raw maps (the shipped default)")
    old = stem[0]
    wide = torch.nn.Conv2d(old.in_channels + extra, old.out_channels, old.kernel_size, old.stride, old.padding,
                           bias=False, dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : old.in_channels] = old.weight
    stem[0] = wide
    return model


def batch_inputs(arm: str, x: torch.Tensor, clicks: list[list[Click]], previous: np.ndarray | None,
                 spec: ModelSpec) -> torch.Tensor:
    """(N, 3 + 2C, H, W): RGB, Eq. 1 maps of ``clicks``, the arm's extra channels."""
    n, _, h, w = x.shape
    out = torch.empty((n, 3 + 2 * spec.num_classes, h, w))
    out[:, :3] = x[:, :3]
    for i, sample in enumerate(clicks):
        array = clicks_array(sample)
        out[i, 3:3 + spec.num_classes] = torch.from_numpy(encode_cpu(array, spec.num_classes, h, w, spec.cap))
        prev = None if previous is None else previous[i]
        out[i, 3 + spec.num_classes:] = torch.from_numpy(extra_channels(arm, array, prev, spec, h, w))
    return out


def finetune(arm: str, minutes: float, out: Path) -> Path:
    """Fine-tune the widened shipped network for ``minutes`` with iterative training clicks; returns
    the exported .onnx. As the shipped fourth stage was (configs/default_ccp_finetune3.yaml): AdamW
    at 1e-4, BatchNorm in training mode, its statistics re-estimated at the end. (With frozen
    statistics one AdamW step ruined the network: it moves every weight by about the learning
    rate, and the first layer's map weights read maps of 0..255, so its outputs shifted by
    units that only batch statistics absorb; measured: 66.5 -> 21.5 % mIoU after one step.)"""
    cfg = TrainConfig.from_yaml(HEAD_CONFIG)
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    base = load_checkpoint("ihp_rt/assets/ihp_default.pt")
    spec = base.spec
    model = widen_first_layer(base.model, spec.num_classes).train().to(memory_format=torch.channels_last)
    folder = FolderDataset(cfg.data, get_label_mapping(cfg.label_mapping))
    train_names, _ = split_names(folder, cfg.val_count, cfg.seed)
    samples = ClickTrainingSet(folder.subset(train_names), spec, Augment(cfg.crop, cfg.scale, cfg.flip),
                               cfg.strategy, cfg.extra_clicks, cfg.d_margin, cfg.seed)
    loader = torch.utils.data.DataLoader(samples, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=cfg.weight_decay)
    log = (out / "log.csv").open("w", buffering=1)
    log.write("step,seconds,loss\n")
    start, step = time.monotonic(), 0
    bar = tqdm(desc=f"train {arm}", unit="step")
    while time.monotonic() - start < minutes * 60:
        for x, labels, padded in loader:
            rng = np.random.default_rng([cfg.seed, step])
            truths = labels.numpy().astype(np.uint8)
            clicks = [central_clicks(t, rng, IGNORE, with_background=False) if rng.random() < 0.75 else c
                      for t, c in zip(truths, unpadded(padded), strict=True)]
            previous = None
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
                for _ in range(int(rng.integers(0, MAX_ROUNDS + 1))):
                    inputs = batch_inputs(arm, x, clicks, previous, spec).to(memory_format=torch.channels_last)
                    previous = model(inputs).argmax(1).to(torch.uint8).numpy()
                    clicks = [c + correction_clicks(p, t, rng, 1, IGNORE)
                              for c, p, t in zip(clicks, previous, truths, strict=True)]
            inputs = batch_inputs(arm, x, clicks, previous, spec).to(memory_format=torch.channels_last)
            with torch.autocast("cpu", torch.bfloat16):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            elapsed = time.monotonic() - start
            log.write(f"{step},{elapsed:.1f},{loss.item():.4f}\n")
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", minutes=f"{elapsed / 60:.1f}")
            if elapsed >= minutes * 60:
                break
    bar.close()

    def recalibration_batches():
        rng = np.random.default_rng([cfg.seed, 2**31])  # apart from the training steps
        for x, labels, _ in loader:
            truths = labels.numpy().astype(np.uint8)
            clicks = [central_clicks(t, rng, IGNORE, with_background=False) for t in truths]
            yield batch_inputs(arm, x, clicks, None, spec), None, None

    recalibrate_batchnorm(model, recalibration_batches(), cfg.bn_recalibration_batches)
    path = out / "model.onnx"
    example = torch.zeros(1, 3 + 2 * spec.num_classes, spec.input_size, spec.input_size)
    torch.onnx.export(model.float().eval(), (example,), str(path), dynamo=False, opset_version=18,
                      input_names=["input"], output_names=["logits"])
    (out / "train.json").write_text(json.dumps({"arm": arm, "minutes": minutes, "steps": step}))
    return path


def progressive_merge(previous: np.ndarray, proposed: np.ndarray, click: np.ndarray) -> np.ndarray:
    """``previous`` labels with ``proposed`` written only over the 8-connected region of changed
    pixels that holds the clicked pixel (FocalClick's Progressive Merge); unchanged if the clicked
    pixel did not change."""
    x, y = int(click[0]), int(click[1])
    changed = (proposed != previous).astype(np.uint8)
    merged = previous.copy()
    if changed[y, x]:
        _, parts = cv2.connectedComponents(changed, connectivity=8)
        keep = parts == parts[y, x]
        merged[keep] = proposed[keep]
    return merged


class AblationSession:
    """The Session interface ``evaluate`` drives, over an arm's own way of predicting."""

    def __init__(self, arm: str, spec: ModelSpec, onnx_path: Path, radius: int,
                 boost: Boost | None = None, boost_rule: str = "clicks") -> None:
        import onnxruntime

        self.arm, self.spec, self.labels, self.click_radius = arm, spec, spec.labels, radius
        self.boost, self.boost_rule = boost or Boost(spec.input_size), boost_rule
        self.backend = SimpleNamespace(name="onnxruntime-cpu")
        self.ort = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def set_image(self, image: np.ndarray) -> None:
        self.box, self.x = prepare_image(image, self.spec)
        self._clicks: list[Click] = []
        self.previous: np.ndarray | None = None  # the model-frame labels of the last predict
        self.batch: int | None = None  # boost, rule "batch": the clicks of the first prediction
        self.boost_state: tuple[int, int, Pass] | None = None  # boost: (network clicks, clicks done, pass)

    def add_click(self, x: int, y: int, label: int) -> Click:
        click = make_click(x, y, label, self.labels, (self.box.height, self.box.width))
        self._clicks.append(click)
        return click

    @property
    def clicks(self) -> tuple[Click, ...]:
        return tuple(self._clicks)

    def outputs(self, rgb: np.ndarray, clicks: np.ndarray, previous: np.ndarray | None) -> list[np.ndarray]:
        """The arm's network on ``rgb`` with ``clicks`` (and the previous labels): (C, S, S) float32
        logits, then the stride-4 logits where the graph has them (the shipped network's export)."""
        size, c = rgb.shape[-1], self.spec.num_classes
        x = np.empty((1, self.ort.get_inputs()[0].shape[1], size, size), np.float32)
        x[0, :3] = rgb
        encode_cpu(clicks, c, size, size, self.spec.cap, out=x[0, 3:3 + c])
        if x.shape[1] > 3 + c:
            x[0, 3 + c:] = extra_channels(self.arm, clicks, previous, self.spec, size, size)
        return [output[0] for output in self.ort.run(None, {"input": x})]

    def network(self, rgb: np.ndarray, clicks: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        return self.outputs(rgb, clicks, previous)[0].argmax(0).astype(np.uint8)

    def boosted(self, clicks: np.ndarray) -> np.ndarray:
        """The labels after ``clicks`` in the boost arm: the network on the first n (BOOST_RULES), then
        every later click a correction, as :class:`ihp_rt.session.SharedBackend` runs them."""
        n = network_clicks(clicks, first_correction=self.boost_rule == "clicks")
        if self.boost_rule == "batch":
            self.batch = len(clicks) if self.batch is None else self.batch
            n = max(n, min(self.batch, len(clicks)))
        if self.boost_state is None or self.boost_state[0] != n or self.boost_state[1] > len(clicks):
            logits, coarse = self.outputs(self.x, clicks[:n], None)
            self.boost_state = (n, n, Pass(logits.argmax(0).astype(np.uint8), coarse))
        _, done, result = self.boost_state
        for end in range(done + 1, len(clicks) + 1):
            result = corrected(result, clicks[:end], self.boost) or result
        self.boost_state = (n, len(clicks), result)
        return result.labels

    def focus(self, clicks: np.ndarray) -> np.ndarray:
        """A correction through a Focus Crop and Progressive Merge (see the module docstring)."""
        size, previous = self.spec.input_size, self.previous
        x, y = clicks[-1, :2].tolist()
        _, region = cv2.connectedComponents((previous == previous[y, x]).astype(np.uint8), connectivity=8)
        ys, xs = np.nonzero(region == region[y, x])
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        side = max(FOCUS_MIN, FOCUS_MARGIN * max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
        side = int(min(side, size))
        y0 = int(np.clip(round(cy - side / 2), 0, size - side))
        x0 = int(np.clip(round(cx - side / 2), 0, size - side))
        crop = cv2.resize(self.x[:, y0:y0 + side, x0:x0 + side].transpose(1, 2, 0), (size, size),
                          interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        inside = clicks[(clicks[:, 0] >= x0) & (clicks[:, 0] < x0 + side) & (clicks[:, 1] >= y0)
                        & (clicks[:, 1] < y0 + side)]
        scaled = inside.copy()
        scaled[:, :2] = np.minimum(((inside[:, :2] - (x0, y0)) + 0.5) * size / side, size - 1).astype(np.int32)
        local = cv2.resize(self.network(crop, scaled, None), (side, side), interpolation=cv2.INTER_NEAREST_EXACT)
        merged = previous.copy()
        merged[y0:y0 + side, x0:x0 + side] = progressive_merge(merged[y0:y0 + side, x0:x0 + side], local,
                                                               clicks[-1] - (x0, y0, 0))
        return merged

    def predict(self) -> Prediction:
        start = time.perf_counter()
        clicks = self.box.clicks_to_model(list(self._clicks))
        if self.arm == "focus_crop" and self.previous is not None and len(clicks):
            labels = self.focus(clicks)
        elif self.arm == "boost":
            labels = self.boosted(clicks)
        else:
            labels = self.network(self.x, clicks, self.previous)
        self.previous = labels
        shown = enforce_clicks(labels, clicks, self.click_radius)
        return Prediction(self.box.labels_to_image(shown), self.clicks, self.backend.name,
                          (time.perf_counter() - start) * 1e3)


def arm_results(folder: Path) -> list[dict]:
    """The (network alone, with disks) results an arm's folder holds: this module's eval.json, or
    the eval.json ``ihp-rt eval --click-radius 4 0`` wrote into ``eval/`` (the head)."""
    for path in (folder / "eval.json", folder / "eval" / "eval.json"):
        if path.exists():
            data = json.loads(path.read_text())
            runs = data if isinstance(data, list) else data["runs"]
            alone = [r for r in runs if r["label"].endswith("network alone")]
            disks = [r for r in runs if not r["label"].endswith("network alone")]
            if len(alone) != 1 or len(disks) != 1:
                raise ValueError(f"{path}: expected one run network alone and one with disks")
            return [alone[0], disks[0]]
    raise FileNotFoundError(f"{folder}: no eval.json (run this module with --arm, or ihp-rt eval --out {folder}/eval)")


def combine(folders: list[Path], out: Path) -> str:
    """One table and one plot of the arms in ``folders`` (each named after its arm). No times: the
    arms ran at different hours, on shared VMs that drift; ``ihp-rt bench`` measures cost in one run."""
    from ihp_rt.evaluation.runner import plot

    ks = (0, 1, 3, 5, 10, 20)
    lines = ["| arm | alone " + " | alone ".join(f"@{k}" for k in ks) + " | honoured (alone) | disks "
             + " | disks ".join(f"@{k}" for k in ks) + " | reach 85 % (disks) |",
             "|---|" + "---:|" * (2 * len(ks) + 2)]
    curves = []
    for folder in folders:
        alone, disks = arm_results(folder)
        cells = [f"{100 * alone['miou'][k]:.1f}" for k in ks] + [f"{100 * alone['corrections_honoured']:.0f} %"]
        cells += [f"{100 * disks['miou'][k]:.1f}" for k in ks]
        cells.append(f"{disks['images'] - len(disks['failures'])}/{disks['images']}")
        lines.append(f"| {folder.name} | " + " | ".join(cells) + " |")
        curves.append({**disks, "label": folder.name})
    out.mkdir(parents=True, exist_ok=True)
    table = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(table)
    plot(curves, out / "ablation.png", f"corrections ablation, click disks ({curves[0]['images']} photos)")
    return table


def main(argv: list[str] | None = None) -> int:
    from ihp_rt.evaluation.runner import evaluate, markdown, plot
    from ihp_rt.export import export_onnx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combine", nargs="+", type=Path, metavar="ARM_DIR",
                        help="instead of running an arm: tabulate and plot the arms in these folders into --out")
    parser.add_argument("--arm", choices=ARMS)
    parser.add_argument("--minutes", type=float, default=25.0, help="training wall time of the trained arms")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--limit", type=int, help="evaluate the first N validation photos only")
    parser.add_argument("--boost-sigma", type=float, default=BOOST_SIGMA, help="boost: fall-off, model pixels")
    parser.add_argument("--boost-margin", type=float, default=BOOST_MARGIN, help="boost: logits won by")
    parser.add_argument("--boost-rule", choices=BOOST_RULES, default="clicks",
                        help="boost: which clicks the network runs on (BOOST_RULES)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.combine:
        print(combine(args.combine, out), end="")
        return 0
    if args.arm is None:
        parser.error("give --arm or --combine")
    out.mkdir(parents=True, exist_ok=True)
    shipped = load_checkpoint("ihp_rt/assets/ihp_default.pt")
    if args.arm in TRAINED:
        onnx_path = finetune(args.arm, args.minutes, out)
    else:
        onnx_path = export_onnx(shipped, out / "model.onnx", output="logits")
    cfg = TrainConfig.from_yaml(HEAD_CONFIG)
    folder = FolderDataset(cfg.data, get_label_mapping(cfg.label_mapping))
    names = Path("configs/ccp_val_names.txt").read_text().split()[: args.limit]
    results = []
    for radius in (0, DEFAULT_CLICK_RADIUS):
        boost = Boost(shipped.spec.input_size, args.boost_margin, args.boost_sigma)
        session = AblationSession(args.arm, shipped.spec, onnx_path, radius, boost, args.boost_rule)
        result = evaluate(session, folder.subset(names), args.max_clicks, seed=0, desc=f"{args.arm} r{radius}")
        result["label"] = f"{args.arm}" + (" network alone" if radius == 0 else "")
        results.append(result)
    (out / "eval.json").write_text(json.dumps(results, indent=1))
    (out / "eval.md").write_text(markdown(results))
    plot(results, out / "miou_vs_clicks.png", f"corrections ablation: {args.arm}")
    print((out / "eval.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
