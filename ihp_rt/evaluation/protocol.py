"""The simulated user of the paper (IV-A), over any Session.

Initialisation: one central click per connected component of every part present (background
excluded) -- or, for the paper's "RGB-only initialisation" baseline, no click at all. Then, each
round, one correction click at the centre of the largest wrongly labelled region, labelled with
the ground truth. Seeded and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihp_rt.clicks import Click
from ihp_rt.data.folder import Sample
from ihp_rt.session import Session
from ihp_rt.simulation import central_clicks, correction_click

INITIALISATIONS = ("central", "none")


@dataclass
class Run:
    """Predictions after initialisation (index 0) and after each correction round."""

    predictions: list[np.ndarray]
    clicks: list[Click]
    initial_clicks: int
    latency_ms: list[float]


def interactive_run(session: Session, sample: Sample, max_corrections: int, rng: np.random.Generator,
                    ignore: int | None = None, initial: str = "central") -> Run:
    """Play the simulated user on one image. Once a prediction is perfect, no click is added
    and the prediction repeats."""
    if initial not in INITIALISATIONS:
        raise ValueError(f"initial must be one of {INITIALISATIONS}, got {initial!r}")
    session.set_image(sample.image)
    if initial == "central":
        for click in central_clicks(sample.labels, rng, ignore, with_background=False):
            session.add_click(click.x, click.y, click.label)
    first = session.predict()
    run = Run([first.labels], [], len(session.clicks), [first.latency_ms])
    for _ in range(max_corrections):
        click = correction_click(run.predictions[-1], sample.labels, rng, ignore)
        if click is None:
            run.predictions.append(run.predictions[-1])
            continue
        session.add_click(click.x, click.y, click.label)
        pred = session.predict()
        run.predictions.append(pred.labels)
        run.latency_ms.append(pred.latency_ms)
    run.clicks = list(session.clicks)
    return run
