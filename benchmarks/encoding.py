"""Click-encoding speed: reference vs. windowed NumPy vs. full-image NumPy vs. PyTorch (vs. CuPy).

``python -m benchmarks.encoding [--size 473] [--classes 20] [--clicks 5 20 60] [-o DIR]`` prints a
Markdown table and writes ``encoding.json``. Times are medians over repeats; the ratios within
one run are what to compare, absolute times on shared CPUs are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ihp_rt.encoding import DEFAULT_CAP, encode_cpu, encode_reference


def encode_full_numpy(clicks: np.ndarray, num_classes: int, height: int, width: int, cap: int = DEFAULT_CAP):
    """The obvious vectorised alternative: a full-image float32 distance map per click."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    out = np.full((num_classes, height, width), float(cap), dtype=np.float32)
    for x, y, label in clicks:
        np.minimum(out[label], (rows - y) ** 2 + (cols - x) ** 2, out=out[label])
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def encoders() -> dict[str, Callable]:
    found: dict[str, Callable] = {"reference (NumPy float64)": encode_reference, "full-image NumPy": encode_full_numpy,
                                  "windowed NumPy (encode_cpu)": encode_cpu}
    try:
        from ihp_rt.encoding.torch_encoding import encode_torch

        found["PyTorch CPU"] = encode_torch
    except ImportError:
        pass
    try:
        import cupy as cp

        from ihp_rt.encoding.cuda import encode_cuda

        if cp.cuda.runtime.getDeviceCount() > 0:
            def cuda(*args):
                out = encode_cuda(*args)
                cp.cuda.get_current_stream().synchronize()
                return out

            found["CuPy kernel"] = cuda
    except Exception:
        pass
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=473)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--clicks", type=int, nargs="+", default=[5, 20, 60])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("-o", "--out", type=Path, help="folder for encoding.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for k in args.clicks:
        clicks = np.stack([rng.integers(0, args.size, k), rng.integers(0, args.size, k),
                           rng.integers(0, args.classes, k)], axis=1).astype(np.int32)
        for name, fn in encoders().items():
            ms = median_ms(lambda fn=fn, c=clicks: fn(c, args.classes, args.size, args.size), args.repeats)
            rows.append({"encoder": name, "clicks": k, "ms": ms})
    print(f"| encoder | clicks | ms ({args.size}x{args.size}, {args.classes} maps) | x faster than reference |")
    print("|---|---:|---:|---:|")
    for r in rows:
        ref = next(q["ms"] for q in rows if q["clicks"] == r["clicks"] and q["encoder"].startswith("reference"))
        r["speedup"] = ref / r["ms"]
        print(f"| {r['encoder']} | {r['clicks']} | {r['ms']:.2f} | {r['speedup']:.1f} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
        (args.out / "encoding.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
