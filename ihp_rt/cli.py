"""``ihp-rt`` command line: thin argument parsing over the library.

Errors the user can cause (IhpError) become one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ihp_rt.click_enforcement import DEFAULT_CLICK_RADIUS
from ihp_rt.errors import IhpError

UNTRAINED_BANNER = """\
################################################################################
#  WARNING: no trained model given and none shipped with this version.        #
#  Using a RANDOMLY INITIALISED network: the mask below is meaningless noise.  #
#  Pass --model CHECKPOINT to parse for real.                                 #
################################################################################"""


def _model_arg(model: str | None, backend: str = "auto", backbone: str = "mobilenetv3_large",
               label_set: str = "lip"):
    """An exported file (.onnx / .engine) as a path; anything else as a loaded checkpoint.

    Without --model, engines other than torch get the shipped ONNX export of the default model.
    """
    from ihp_rt.zoo import default_onnx_path

    if model is None and backend != "torch" and (shipped := default_onnx_path()) is not None:
        return str(shipped)
    if model is not None and Path(model).suffix.lower() in (".onnx", ".engine"):
        return model
    return _open_checkpoint(model, backbone, label_set)


def _open_checkpoint(model: str | None, backbone: str, label_set: str):
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model, load_checkpoint
    from ihp_rt.spec import ModelSpec
    from ihp_rt.zoo import default_model_path

    path = Path(model) if model else default_model_path()
    if path is not None:
        return load_checkpoint(path)
    print(UNTRAINED_BANNER, file=sys.stderr)
    spec = ModelSpec(labels=get_label_set(label_set), backbone=backbone)
    return Checkpoint(build_model(spec, seed=0).eval(), spec, {"untrained": True})


def cmd_predict(args: argparse.Namespace) -> int:
    from ihp_rt.clicks import load_clicks
    from ihp_rt.images import overlay, read_image, write_label_png, write_rgb_png
    from ihp_rt.session import Session

    image = read_image(args.image)
    model = _model_arg(args.model, args.backend, args.backbone, args.label_set)
    session = Session.open(model, backend=args.backend, device=args.device, threads=args.threads, half=args.half)
    print(f"backend: {session.backend.name} ({session.backend.choice})")
    clicks = load_clicks(args.clicks, session.labels, image.shape[:2])
    session.set_image(image)
    for c in clicks:
        session.add_click(c.x, c.y, c.label)
    pred = session.predict()
    write_label_png(args.output, pred.labels)
    print(f"wrote {args.output} ({pred.labels.shape[1]}x{pred.labels.shape[0]} label ids, "
          f"{session.labels.name} label set) in {pred.latency_ms:.0f} ms on {pred.backend}")
    if args.overlay:
        write_rgb_png(args.overlay, overlay(image, pred.labels, session.labels, list(clicks)))
        print(f"wrote {args.overlay}")
    present = sorted(set(pred.labels.ravel().tolist()))
    print("classes in mask: " + ", ".join(session.labels.names[i] for i in present))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from ihp_rt.backends import open_backend
    from ihp_rt.correction import correct
    from ihp_rt.export import export_onnx

    checkpoint = _open_checkpoint(args.model, args.backbone, args.label_set)
    if args.precision == "int8":  # static QDQ: quantise an fp32 export, calibrated on labelled photos
        from ihp_rt.export.quantize import calibration_inputs, quantize_int8

        samples = _calibration_samples(args.calibration, checkpoint.spec, args.calibration_count)
        fp32 = export_onnx(checkpoint, Path(args.output).with_suffix(".fp32.onnx"), output=args.head,
                           simplify=not args.no_simplify)
        try:
            path = quantize_int8(fp32, args.output, calibration_inputs(samples, checkpoint.spec),
                                 args.calibration_method)
        finally:
            fp32.unlink()  # an intermediate: never left behind, whether quantisation worked or not
    else:
        path = export_onnx(checkpoint, args.output, output=args.head, simplify=not args.no_simplify,
                           precision=args.precision)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.precision}, {args.head} output, "
          "spec in metadata)")
    # Parity check right after export: the .onnx alone must reproduce the PyTorch masks.
    rng = np.random.default_rng(0)
    torch_backend, ort_backend = open_backend(checkpoint, "torch", "cpu"), open_backend(path, "onnxruntime", "cpu")
    spec, agree = checkpoint.spec, []
    for _ in range(args.check):
        image = rng.standard_normal((3, spec.input_size, spec.input_size)).astype(np.float32)
        k = int(rng.integers(1, 12))
        clicks = np.stack([rng.integers(0, spec.input_size, k), rng.integers(0, spec.input_size, k),
                           rng.integers(0, spec.num_classes, k)], axis=1).astype(np.int32)
        for backend in (torch_backend, ort_backend):
            backend.set_image(image)
        if ort_backend.corrector is not None:  # the last click as a correction, each engine after its own pass
            passes = [correct(backend.predict(clicks[:-1]), clicks, backend.corrector)
                      for backend in (torch_backend, ort_backend)]
        else:
            passes = [backend.predict(clicks) for backend in (torch_backend, ort_backend)]
        agree.append(float((passes[0].labels == passes[1].labels).mean()))
    if agree:
        print(f"parity vs PyTorch on {len(agree)} random inputs: {100 * min(agree):.3f} % of pixels equal (worst)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ihp_rt.training.config import TrainConfig
    from ihp_rt.training.trainer import train

    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    for key in ("data", "out", "steps", "device", "backbone", "strategy"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.time_limit is not None:
        cfg.time_limit_min = args.time_limit
    path = train(cfg)
    print(f"wrote {path} (resume by running the same command again)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ihp_rt.errors import InputError
    from ihp_rt.evaluation.examples import save_example
    from ihp_rt.evaluation.runner import evaluate, markdown, plot
    from ihp_rt.session import Session

    # Checked before any model opens: a sweep over several models would otherwise fail only at
    # the first bad radius, after minutes of evaluation.
    bad = [r for r in args.click_radius if r < 0]
    if bad:
        raise InputError(f"--click-radius must be 0 or more model pixels, got {bad[0]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = args.model or [None]
    backends = args.backend or ["auto"]
    results = []
    for model_arg in models:
        for backend in backends:
            model = _model_arg(model_arg, backend)
            session = Session.open(model, backend=backend, threads=args.threads)
            dataset = _eval_dataset(args, session.labels)
            name = Path(model_arg).stem if model_arg else "default"
            runs = []
            for radius in args.click_radius:
                tag = f"{name} [{session.backend.name}]"
                if radius != DEFAULT_CLICK_RADIUS:
                    tag += " network alone" if radius == 0 else f" click radius {radius}"
                runs.append(("central", tag, radius))
                if args.baselines:
                    runs.append(("none", f"{tag} RGB-only init", radius))
            for initial, label, radius in runs:
                session.click_radius = radius
                saved = []

                def keep(index, sample, run, label=label, saved=saved, labels=session.labels,
                         ignore=dataset.ignore_index):
                    if len(saved) < args.save_examples:
                        k = len(run.predictions) - 1
                        title = f"{sample.name}: {label}, {len(run.clicks)} clicks ({k} corrections)"
                        saved.append(save_example(out / "examples" / f"{_slug(label)}_{sample.name}.png",
                                                  sample.image, run.predictions[-1], sample.labels, run.clicks,
                                                  labels, ignore, title))

                result = evaluate(session, dataset, args.max_clicks, tuple(args.standard), args.seed, initial,
                                  desc=label, on_image=keep)
                result.update(label=label, model=model_arg or "default", data=str(args.data), click_radius=radius)
                results.append(result)
                print(f"{label}: mIoU {100 * result['miou'][0]:.1f} -> {100 * result['miou'][-1]:.1f} "
                      f"after {args.max_clicks} clicks; Add. {result['add']:.2f}, Avg. {result['avg']:.2f}")
    report = {
        "data": str(args.data), "images": results[0]["images"], "max_corrections": args.max_clicks,
        "standards": args.standard, "seed": args.seed,
        "convention": "miou[k]: data-set mIoU from one confusion matrix accumulated over all images after k "
                      "correction clicks; miou_per_image_mean: mean of per-image mIoUs; add: mean correction "
                      "clicks to reach the standard (per-image mIoU), capped at max_corrections; "
                      "corrections_honoured: share of correction clicks whose pixel has their label right after; "
                      "avg: total "
                      "clicks (initial + corrections) / total part classes present; near-edge figures within "
                      "5 px of ground-truth part boundaries, [after initialisation, after the last click]",
        "runs": results,
    }
    (out / "eval.json").write_text(json.dumps(report, indent=1))
    (out / "eval.md").write_text(markdown(results))
    plot(results, out / "miou_vs_clicks.png")
    print(markdown(results))
    print(f"wrote {out / 'eval.json'}, {out / 'eval.md'}, {out / 'miou_vs_clicks.png'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ihp_rt.backends import open_backend
    from ihp_rt.serving.model_identity import model_identity
    from ihp_rt.serving.runner import serve_forever
    from ihp_rt.session import SharedBackend

    create_app, config = _serving_app(), _serve_config(args)  # refuse bad limits before loading a model
    from ihp_rt.serving.label_studio import LabelStudioHost

    label_studio = LabelStudioHost.from_environment(args.label_studio_label_map)  # and a bad label map
    store = None
    if args.redis:  # shared sessions: refuse an unreachable Redis before loading a model too
        from ihp_rt.serving.redis_store import connect

        store = connect(args.redis, config, allow_eviction=args.redis_allow_eviction)
        print(f"sessions: shared in {store.where}")
    model = _model_arg(args.model, args.backend, args.backbone, args.label_set)
    engine = SharedBackend(open_backend(model, args.backend, args.device, args.threads, args.half))
    print(f"backend: {engine.backend.name} ({engine.backend.choice})")
    app = create_app(engine, config, store=store, model_id=model_identity(engine.backend.spec, model),
                     label_studio=label_studio)
    print(f"model: {app.state.sessions.model}")
    print(f"annotation page: http://{args.host}:{args.port}/   API: http://{args.host}:{args.port}/openapi.json",
          flush=True)
    serve_forever(app, args.host, args.port)
    return 0


def _serving_app():
    try:
        from ihp_rt.serving.app import create_app
    except ImportError as e:
        raise IhpError(f"serving needs the serve extra: pip install 'ihp-rt[serve]' ({e})") from None
    return create_app


def _serve_config(args: argparse.Namespace):
    from ihp_rt.serving import ServeConfig

    try:
        return ServeConfig(max_sessions=args.max_sessions, session_ttl_s=args.session_ttl,
                           max_upload_bytes=round(args.max_upload_mb * 2**20),
                           max_session_clicks=args.max_session_clicks, cache_images=args.cache_images,
                           mask_cache_bytes=round(args.cache_mb * 2**20), click_radius=args.click_radius)
    except ValueError as e:
        raise IhpError(str(e)) from None


def cmd_loadtest(args: argparse.Namespace) -> int:
    from ihp_rt.benchmarks.encoding import cpu_name
    from ihp_rt.serving.loadtest import check_target, run_load, started_workers, write_report

    check_target(args.url, args.workers, redis=args.redis, model=args.model, threads=args.threads,
                 cache_images=args.cache_images)
    image = Path(args.image).read_bytes()
    if args.url:
        report = run_load(args.url, image, args.sessions, args.clicks, args.max_duration, args.transport)
    else:
        server_args = ["--max-sessions", str(args.sessions), *(["--model", args.model] if args.model else []),
                       *(["--threads", str(args.threads)] if args.threads else []),
                       *(["--cache-images", str(args.cache_images)] if args.cache_images is not None else [])]
        with started_workers(server_args, args.workers, args.redis) as urls:
            report = run_load(urls, image, args.sessions, args.clicks, args.max_duration, args.transport)
    json_path, md_path = write_report(report, Path(args.out), f"{cpu_name()}, {os.cpu_count()} cores")
    print(md_path.read_text())
    for error in report.errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    print(f"wrote {json_path}, {md_path}")
    return 1 if report.errors else 0


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def _eval_dataset(args: argparse.Namespace, model_labels):
    from ihp_rt.data.layouts import dataset_for_labels

    data = dataset_for_labels(args.data, model_labels, args.split, args.label_map)
    if args.names:
        names = [n.strip() for n in Path(args.names).read_text().splitlines() if n.strip()]
        data = data.subset(names)
    if args.limit:
        data = data.subset(data.names[: args.limit])
    return data


def cmd_build_engine(args: argparse.Namespace) -> int:
    from ihp_rt.export.to_tensorrt import build_engine

    path = build_engine(args.onnx, args.output, fp16=args.fp16, workspace_gib=args.workspace,
                        timing_cache=args.timing_cache)
    print(f"engine {path} (sidecar {path.name}.json records TensorRT version, GPU and ONNX hash)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ihp_rt.benchmarks.latency import BENCH_BACKENDS
    from ihp_rt.benchmarks.report import markdown
    from ihp_rt.benchmarks.run import run_benchmark
    from ihp_rt.errors import InputError
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.spec import ModelSpec

    if args.paper:  # the paper's configuration; weights do not change speed, so no training is needed
        spec = ModelSpec(labels=get_label_set("lip"), backbone="resnet101", input_size=473)
        checkpoint, label = Checkpoint(build_model(spec, seed=0).eval(), spec), "paper: DeepLabV3+ ResNet-101"
    else:
        checkpoint = _open_checkpoint(args.model[0] if args.model else None, "mobilenetv3_large", "lip")
        label = f"{Path(args.model[0]).stem if args.model else 'default'} ({checkpoint.spec.backbone})"
    also = []
    for path in (args.model or [])[1:]:
        other = _open_checkpoint(path, "mobilenetv3_large", "lip")
        if (other.spec.input_size, other.spec.labels) != (checkpoint.spec.input_size, checkpoint.spec.labels):
            raise InputError(f"{path} ({other.spec.labels.name}, {other.spec.input_size} px) differs from the first "
                             f"model ({checkpoint.spec.labels.name}, {checkpoint.spec.input_size} px): compare models "
                             "of one label set and input size (clicks and INT8 calibration are shared)")
        also.append((other, f"{Path(path).stem} ({other.spec.backbone})"))
    names = args.backends.split(",") if args.backends else list(BENCH_BACKENDS)
    calibration = None
    if any(n.endswith("int8") for n in names):
        calibration = _calibration_samples(args.calibration, checkpoint.spec, args.calibration_count)
    report = run_benchmark(checkpoint, label, names, Path(args.out), Path(args.image), args.clicks, args.warmup,
                           args.clicks_per_image, args.threads, calibration, args.rounds,
                           args.calibration_method, also=also)
    print(markdown(report))
    print(f"wrote {args.out}/bench.json, bench.md, bench.png")
    return 0


def _calibration_samples(data: str | None, spec, count: int) -> list:
    from ihp_rt.data.layouts import dataset_for_labels
    from ihp_rt.errors import InputError

    if data is None:
        raise InputError("INT8 calibration needs photos with labels: pass --calibration DATA_FOLDER")
    folder = dataset_for_labels(data, spec.labels)
    step = max(1, len(folder) // count)
    return [folder[i] for i in range(0, len(folder), step)][:count]


def cmd_synth(args: argparse.Namespace) -> int:
    from ihp_rt.data.synthetic import write_folder_layout, write_lip_layout

    if args.layout == "lip":
        root = write_lip_layout(args.out, args.count, args.val_count, args.seed, args.height, args.width)
    else:
        root = write_folder_layout(args.out, args.count, args.seed, args.height, args.width)
    print(f"wrote {args.count} SYNTHETIC scenes ({args.layout} layout, LIP classes) to {root}")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    from ihp_rt.labels import get_label_set, label_set_names

    for name in [args.name] if args.name else label_set_names():
        ls = get_label_set(name)
        print(f"{ls.name}: {ls.title} ({ls.num_classes} classes)")
        mirror = {a: b for a, b in ls.mirrors} | {b: a for a, b in ls.mirrors}
        for i, n in enumerate(ls.names):
            extra = f"  <-> {ls.names[mirror[i]]}" if i in mirror else ""
            print(f"  {i:3d}  {n}{extra}")
    return 0


def _stand_in_options(p: argparse.ArgumentParser) -> None:
    from ihp_rt.model.backbones import BACKBONES

    p.add_argument("--backbone", default="mobilenetv3_large", choices=sorted(BACKBONES),
                   help="architecture of the untrained stand-in when no model exists")
    p.add_argument("--label-set", default="lip", help="label set of the untrained stand-in")


def build_parser() -> argparse.ArgumentParser:
    from ihp_rt import __version__
    from ihp_rt.backends import BACKENDS

    parser = argparse.ArgumentParser(prog="ihp-rt", description="Interactive human parsing from labelled clicks.")
    parser.add_argument("--version", action="version", version=f"ihp-rt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="parse a photo from a click list")
    p.add_argument("image", help="photo (JPEG/PNG/...)")
    p.add_argument("--clicks", required=True, help='click list JSON: {"clicks": [{"x":..,"y":..,"label":..}]}')
    p.add_argument("-o", "--output", required=True, help="label-id PNG to write")
    p.add_argument("--overlay", help="also write a colour overlay PNG")
    p.add_argument("--model", help="checkpoint (.pt) or exported .onnx; default: the shipped model")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="inference engine (default: auto, chosen by model file and hardware)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: the GPU when one is usable")
    p.add_argument("--threads", type=int, help="CPU threads for onnxruntime (default: all cores)")
    p.add_argument("--half", action="store_true", help="torch backend in FP16 (for CUDA)")
    _stand_in_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (spec in metadata, parity-checked)")
    p.add_argument("--model", help="checkpoint (.pt); default: the shipped model")
    p.add_argument("-o", "--output", required=True, help=".onnx file to write")
    p.add_argument("--head", choices=("labels", "logits"), default="labels",
                   help="labels: arg-max in the graph, uint8 mask out (default); logits: float32 scores")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp16: half-precision graph with float32 input, for TensorRT 11 FP16 engines; "
                   "int8: static QDQ quantisation for ONNX Runtime on CPU (needs --calibration)")
    p.add_argument("--calibration", help="labelled data folder for INT8 calibration")
    p.add_argument("--calibration-count", type=int, default=32, help="calibration photos (default 32)")
    p.add_argument("--calibration-method", choices=("percentile", "minmax"), default="percentile",
                   help="INT8 activation ranges: 0.01-99.99 percentiles (default) or extremes")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--check", type=int, default=3, help="random inputs for the parity check (0: none)")
    _stand_in_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("build-engine", help="build a TensorRT engine from an exported .onnx (needs a GPU)")
    p.add_argument("onnx", help="model exported by `ihp-rt export` (use --precision fp16 for TensorRT 11)")
    p.add_argument("-o", "--output", help="engine file (default: the engine cache, keyed by ONNX+TensorRT+GPU)")
    # Default None, the choice opening the .onnx makes: the precision is part of the engine cache key,
    # so any other default builds an engine that `serve`/`predict` never find and build again.
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="--fp16: FP16 engine (TensorRT 11 takes it from the graph: export with --precision fp16); "
                   "--no-fp16: the graph's own precision; default: what opening the .onnx builds (FP16 where "
                   "this TensorRT can make it), so that engine is the one reused")
    p.add_argument("--workspace", type=float, default=4.0, help="builder workspace in GiB")
    p.add_argument("--timing-cache", help="timing cache file (default: in the engine cache)")
    p.set_defaults(func=cmd_build_engine)

    p = sub.add_parser("train", help="train an IHP model (resumes from OUT/last.pt if present)")
    p.add_argument("--config", help="YAML file of TrainConfig options (configs/*.yaml)")
    p.add_argument("--data", help="data folder (images/ + labels/ + manifest.json)")
    p.add_argument("--out", help="run folder: checkpoints, log.csv, loss.png")
    p.add_argument("--steps", type=int)
    p.add_argument("--time-limit", type=float, help="minutes of training before stopping (and saving)")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--backbone")
    p.add_argument("--strategy", choices=("random", "near_edge", "random_only"))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="the paper's interactive protocol: mIoU vs. clicks, Add., Avg.")
    p.add_argument("--data", required=True, help="data folder: generic images/ + labels/ + manifest.json, or the "
                   "LIP, CIHP, PASCAL-Person-Part or Helen layout")
    p.add_argument("--model", action="append", help="checkpoint or .onnx; repeat to compare (default: shipped)")
    p.add_argument("--backend", action="append", choices=BACKENDS, help="repeat to compare engines")
    p.add_argument("--standard", type=float, nargs="+", default=[85.0],
                   help="mIoU (%%) an image must reach; several give several Add./Avg. columns (default 85)")
    p.add_argument("--max-clicks", type=int, default=20, help="correction clicks per image (default 20)")
    p.add_argument("--split", help="split of a benchmark layout (LIP/CIHP/PPP: val, Helen: test by default)")
    p.add_argument("--label-map", metavar="NAME", help="built-in label mapping (ihp_rt/label_maps.json) that reads "
                   "the data's classes in the model's, e.g. cihp_to_ccp_coarse; default: the one that knows every "
                   "class the data's manifest names")
    p.add_argument("--names", help="file of image names (one per line) to evaluate, e.g. a held-out split")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--baselines", action="store_true", help="also run the RGB-only initialisation baseline")
    p.add_argument("--save-examples", type=int, default=0, metavar="N", help="write N side-by-side PNGs per run")
    p.add_argument("--click-radius", type=int, nargs="+", default=[DEFAULT_CLICK_RADIUS], metavar="R",
                   help="pixels within R model pixels of a click take its label (0: the network alone); "
                   f"several compare them (default {DEFAULT_CLICK_RADIUS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", required=True, help="folder for eval.json, eval.md, miou_vs_clicks.png")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="per-click latency and memory of every available backend")
    p.add_argument("--model", action="append", help="checkpoint (.pt); default: the shipped model. Repeat to compare "
                   "models side by side in one run (rounds interleave them; README's old-vs-new figures)")
    p.add_argument("--paper", action="store_true", help="the paper's DeepLabV3+ ResNet-101 at 473 px instead")
    p.add_argument("--backends", help="comma-separated: torch,onnxruntime,onnxruntime-int8,torch-cuda,"
                   "torch-cuda-fp16,onnxruntime-cuda,tensorrt (default: all; unavailable ones are reported)")
    p.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"))
    p.add_argument("--clicks", type=int, default=60, help="timed clicks per backend (default 60)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--clicks-per-image", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3,
                   help="backends take turns in this many rounds, each in a fresh process (default 3)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--calibration", help="labelled data folder for INT8 calibration")
    p.add_argument("--calibration-count", type=int, default=32)
    p.add_argument("--calibration-method", choices=("percentile", "minmax"), default="percentile")
    p.add_argument("-o", "--out", required=True, help="folder for bench.json, bench.md, bench.png")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("synth", help="write procedural (synthetic, not real) people in the LIP classes")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--count", type=int, default=64, help="scenes (the train split for --layout lip)")
    p.add_argument("--val-count", type=int, default=16, help="validation scenes (--layout lip only)")
    p.add_argument("--layout", choices=("folder", "lip"), default="folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=256)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("serve", help="interactive HTTP/WebSocket server and annotation page (the serve extra)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help="checkpoint (.pt), .onnx or .engine; default: the shipped model")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, help="CPU threads for the network (default: all cores)")
    p.add_argument("--half", action="store_true", help="torch backend in FP16 (for CUDA)")
    p.add_argument("--max-sessions", type=int, default=16, help="sessions held at once (default 16; each holds "
                   "its upload in the session store, and in a worker a pre-processed image (2.7 MB at 473 px) and its "
                   "last mask, up to --cache-mb)")
    p.add_argument("--session-ttl", type=float, default=900.0, help="seconds before an idle session expires")
    p.add_argument("--max-upload-mb", type=float, default=20.0)
    p.add_argument("--max-session-clicks", type=int, default=500,
                   help="clicks a session may hold (and keypoints per Label Studio request; default 500)")
    p.add_argument("--redis", metavar="URL", help="keep sessions in this Redis (redis://HOST:PORT/DB), shared by "
                   "every worker started with it; default: in this process. Its maxmemory-policy must be "
                   "noeviction")
    p.add_argument("--redis-allow-eviction", action="store_true", help="start even if Redis may evict keys at its "
                   "maxmemory: a session it evicts is then lost (404) in the middle of someone's work")
    p.add_argument("--cache-images", type=int, help="pre-processed images this worker keeps (default: "
                   "--max-sessions); a miss rebuilds one from the session store")
    p.add_argument("--cache-mb", type=float, default=256.0, help="memory for the sessions' last masks this "
                   "worker keeps (full-resolution label maps: 12 MB for a 12 MP photo; default 256); a miss "
                   "costs one predict")
    p.add_argument("--click-radius", type=int, default=DEFAULT_CLICK_RADIUS, metavar="R",
                   help="pixels within R model pixels of a click take its label (0: the network alone; "
                   f"default {DEFAULT_CLICK_RADIUS})")
    p.add_argument("--label-studio-label-map", metavar="JSON",
                   help='Label Studio label names -> the model\'s classes, for names that are not a class\'s own '
                   '(in any case), e.g. \'{"Shirt": "upper-clothes"}\' (default: LABEL_STUDIO_LABEL_MAP)')
    _stand_in_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("loadtest", help="bounded load test: N sessions clicking at once against a server")
    p.add_argument("--url", action="append", help="a running server (repeat for workers sharing one Redis: "
                   "sessions and clicks alternate between them); default: start `ihp-rt serve` on loopback")
    p.add_argument("--workers", type=int, default=1, help="servers to start, sharing one Redis when more than "
                   "one (default 1)")
    p.add_argument("--redis", metavar="URL", help="Redis for the workers started here (default with --workers "
                   "2 or more: a throw-away redis-server on loopback)")
    p.add_argument("--model", help="model for the servers started here")
    p.add_argument("--threads", type=int, help="network threads of each server started here")
    p.add_argument("--cache-images", type=int, help="--cache-images of the servers started here (0: every "
                   "click a cache miss)")
    p.add_argument("--sessions", type=int, default=4, help="concurrent sessions (default 4)")
    p.add_argument("--clicks", type=int, default=10, help="clicks per session (default 10)")
    p.add_argument("--max-duration", type=float, default=120.0, help="time cap in seconds (default 120)")
    p.add_argument("--transport", choices=("ws", "http"), default="ws")
    p.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"))
    p.add_argument("-o", "--out", required=True, help="folder for load.json and load.md")
    p.set_defaults(func=cmd_loadtest)

    p = sub.add_parser("labels", help="list the built-in label sets")
    p.add_argument("name", nargs="?", help="one label set (lip, cihp, ppp, helen, atr)")
    p.set_defaults(func=cmd_labels)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IhpError as e:
        print("ihp-rt: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
