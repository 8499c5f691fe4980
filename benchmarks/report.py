"""bench.json -> Markdown table and PNG chart, with ratios against PyTorch eager and the paper."""

from __future__ import annotations

from pathlib import Path

PAPER = {"ms": 20.0, "gpu_mb": 1799.0, "gpu": "TITAN Xp", "model": "DeepLabV3+ ResNet-101, 473x473"}


def markdown(report: dict) -> str:
    """The table; with several models, a model column and each row's p50 against the first model's."""
    runs = [r for r in report["results"] if "error" not in r]
    models = report.get("models", [report["model"]])
    several = len(models) > 1
    torch_p50 = {r.get("model"): r["p50_ms"] for r in runs if r["backend"] == "torch"}
    first_p50 = {r["backend"]: r["p50_ms"] for r in runs if r.get("model", models[0]) == models[0]}
    what = f"Models: {', '.join(models)}" if several else f"Model: {report['model']}"
    lines = [f"{what} ({report['size']}x{report['size']}); machine: {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, GPU: {report['machine'].get('gpu') or 'none'}", "",
             ("| model " if several else "") + "| backend | engine | p50 ms | p95 ms | p99 ms | mean ms | encode "
             "| network | download | map back | once per image ms | peak RSS MB | GPU MB | p50 vs torch |"
             + (" p50 vs first model |" if several else ""),
             ("|---" if several else "") + "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             + ("---:|" if several else "")]
    for r in runs:
        s = r["stages_median_ms"]
        base = torch_p50.get(r.get("model"))
        ratio = f"{base / r['p50_ms']:.2f}x" if base else "-"
        gpu = "-" if r["gpu_memory_mb"] is None else f"{r['gpu_memory_mb']:.0f}"
        row = (f"| {r['backend']} | {r['engine']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
               f"{r['mean_ms']:.1f} | {s['encode_ms']:.2f} | {s['network_ms']:.1f} | {s['download_ms']:.2f} | "
               f"{s['map_back_ms']:.2f} | {r['set_image_median_ms']:.1f} | {r['peak_rss_mb']:.0f} | {gpu} | {ratio} |")
        if several:
            first = first_p50.get(r["backend"])
            row = f"| {r['model']} " + row + (f" {r['p50_ms'] / first:.2f}x |" if first else " - |")
        lines.append(row)
    pad = " |" * (13 if several else 12)
    for r in report["results"]:
        if "error" in r:
            who = f"| {r['model']} " if several else ""
            lines.append(who + f"| {r['backend']} | failed: {r['error']} |" + pad)
    for name, why in report.get("skipped", {}).items():
        lines.append(("| all " if several else "") + f"| {name} | not run: {why} |" + pad)
    lines += ["", f"Paper (Clicking Matters, {PAPER['gpu']}, {PAPER['model']}): {PAPER['ms']:.0f} ms per image, "
              f"{PAPER['gpu_mb']:.0f} MB GPU memory."]
    lines += ["", "Network clicks (the network runs: a part named for the first time, the first correction after "
              "the parts, every click of an export without the stride-4 output) and correction clicks (no network "
              "pass: ihp_rt/correction.py), of the same run:", "",
              ("| model " if several else "") + "| backend | network clicks | p50 ms | p95 ms | corrections | p50 ms | "
              "p95 ms | correction p50 / network p50 |",
              ("|---" if several else "") + "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        net, fix = r["by_kind"]["network"], r["by_kind"]["correction"]
        ratio = f"{fix['p50_ms'] / net['p50_ms']:.2f}" if fix["clicks"] and net["clicks"] else "-"
        cells = [str(net["clicks"]), *_p50_p95(net), str(fix["clicks"]), *_p50_p95(fix), ratio]
        lines.append((f"| {r['model']} " if several else "") + f"| {r['backend']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _p50_p95(figures: dict) -> list[str]:
    return [f"{figures['p50_ms']:.1f}", f"{figures['p95_ms']:.1f}"] if figures["clicks"] else ["-", "-"]


def chart(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in report["results"] if "error" not in r]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(runs) + 1.5))
    several = len(report.get("models", [])) > 1
    names = [f"{r['model']}: {r['backend']}" if several else r["backend"] for r in runs]
    p50 = [r["p50_ms"] for r in runs]
    err = [[0] * len(runs), [r["p95_ms"] - r["p50_ms"] for r in runs]]
    ax.barh(names, p50, xerr=err, color="#4c72b0", capsize=4)
    for i, v in enumerate(p50):
        ax.text(v, i, f" {v:.0f} ms", va="center")
    ax.axvline(PAPER["ms"], color="grey", linestyle="--", label=f"paper: {PAPER['ms']:.0f} ms ({PAPER['gpu']})")
    ax.set_xlabel("per-click latency, p50 (bar) to p95 (whisker), ms")
    ax.set_title(f"{', '.join(report.get('models', [report['model']]))} at {report['size']} px")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
