"""Where the shipped models live inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL_NAME = "ihp_default.pt"


def default_model_path() -> Path | None:
    """The shipped default model, or None while the project ships none."""
    path = Path(str(resources.files("ihp_rt").joinpath("assets", DEFAULT_MODEL_NAME)))
    return path if path.is_file() else None
