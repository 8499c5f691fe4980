"""The models shipped inside the package, and the one command that makes them.

The default model ships twice: ``ihp_default.pt`` (the self-describing checkpoint, weights stored
in float16 to halve its size) and ``ihp_default.onnx`` (exported from exactly those weights, so the
two agree), the file the CPU default path (ONNX Runtime) opens.

``python -m ihp_rt.zoo runs/default_ccp/last.pt`` rebuilds both from a training run.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

DEFAULT_MODEL_NAME = "ihp_default.pt"
DEFAULT_ONNX_NAME = "ihp_default.onnx"


def _asset(name: str) -> Path:
    return Path(str(resources.files("ihp_rt").joinpath("assets", name)))


def default_model_path() -> Path | None:
    """The shipped default checkpoint, or None while the project ships none."""
    path = _asset(DEFAULT_MODEL_NAME)
    return path if path.is_file() else None


def default_onnx_path() -> Path | None:
    """The shipped default model as ONNX, or None."""
    path = _asset(DEFAULT_ONNX_NAME)
    return path if path.is_file() else None


def ship(checkpoint_path: str | Path, assets: Path | None = None) -> tuple[Path, Path]:
    """Write the default model's checkpoint (float16 weights) and its ONNX export into ``assets``."""
    from ihp_rt.export import export_onnx
    from ihp_rt.model import load_checkpoint, save_checkpoint

    assets = assets or _asset("")
    checkpoint = load_checkpoint(checkpoint_path)
    training = {**checkpoint.training, "shipped_from": str(checkpoint_path), "weights_stored_as": "float16"}
    pt = save_checkpoint(assets / DEFAULT_MODEL_NAME, checkpoint.model, checkpoint.spec, training, half_weights=True)
    # Export from the saved file, not the run: both then hold the same float16-rounded weights.
    onnx_file = export_onnx(load_checkpoint(pt), assets / DEFAULT_ONNX_NAME)
    return pt, onnx_file


if __name__ == "__main__":
    for path in ship(sys.argv[1]):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
