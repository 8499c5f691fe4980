"""The IHP network: DeepLabV3+ over RGB + click maps, and its checkpoint format."""

from ihp_rt.model.backbones import BACKBONES
from ihp_rt.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ihp_rt.model.deeplab import DeepLabV3Plus, build_model, default_spec

__all__ = [
    "BACKBONES", "Checkpoint", "DeepLabV3Plus", "build_model", "default_spec", "load_checkpoint", "save_checkpoint",
]
