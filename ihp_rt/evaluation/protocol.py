"""The simulated user of the paper (IV-A), over any Session.

Initialisation: one central click per connected component of every part present (background
excluded). Then, each round, one correction click at the centre of the largest wrongly
labelled region, labelled with the ground truth. Seeded and deterministic.
"""

from __future__ import annotations

import numpy as np

from ihp_rt.clicks import Click
from ihp_rt.data.folder import Sample
from ihp_rt.evaluation.metrics import confusion_matrix
from ihp_rt.session import Session
from ihp_rt.simulation import central_clicks, correction_click


def interactive_run(session: Session, sample: Sample, max_corrections: int, rng: np.random.Generator,
                    ignore: int | None = None) -> tuple[list[np.ndarray], list[Click]]:
    """Confusion matrices after initialisation and after each of ``max_corrections`` clicks.

    Once a prediction is perfect no click is added and the last matrix repeats.
    """
    num_classes = session.spec.num_classes
    session.set_image(sample.image)
    for click in central_clicks(sample.labels, rng, ignore, with_background=False):
        session.add_click(click.x, click.y, click.label)
    prediction = session.predict().labels
    confusions = [confusion_matrix(prediction, sample.labels, num_classes, ignore)]
    for _ in range(max_corrections):
        click = correction_click(prediction, sample.labels, rng, ignore)
        if click is not None:
            session.add_click(click.x, click.y, click.label)
            prediction = session.predict().labels
        confusions.append(confusion_matrix(prediction, sample.labels, num_classes, ignore))
    return confusions, list(session.clicks)
