"""ihp-rt: interactive human parsing from labelled clicks, on CPU and GPU engines.

Only light modules are imported here: ``import ihp_rt`` pulls in no torch, CUDA or server
library, so it works (and is fast) on any machine.
"""

from ihp_rt.clicks import Click, clicks_to_json, load_clicks, parse_clicks
from ihp_rt.errors import BackendError, IhpError, InputError, ModelError
from ihp_rt.labels import LabelSet, get_label_set, label_set_names
from ihp_rt.session import Prediction, Session
from ihp_rt.spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Click",
    "IhpError",
    "InputError",
    "LabelSet",
    "ModelError",
    "ModelSpec",
    "Prediction",
    "Session",
    "__version__",
    "clicks_to_json",
    "get_label_set",
    "label_set_names",
    "load_clicks",
    "parse_clicks",
]
