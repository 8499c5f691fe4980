"""The paper's interactive evaluation protocol and its metrics."""

from ihp_rt.evaluation.metrics import confusion_matrix, iou_per_class, mean_iou
from ihp_rt.evaluation.protocol import Run, interactive_run
from ihp_rt.evaluation.runner import evaluate

__all__ = ["Run", "confusion_matrix", "evaluate", "interactive_run", "iou_per_class", "mean_iou"]
