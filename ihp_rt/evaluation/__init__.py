"""The paper's interactive evaluation protocol and its metrics."""

from ihp_rt.evaluation.metrics import confusion_matrix, iou_per_class, mean_iou
from ihp_rt.evaluation.protocol import interactive_run

__all__ = ["confusion_matrix", "interactive_run", "iou_per_class", "mean_iou"]
