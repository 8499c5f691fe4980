"""The paper's losses -- balanced cross-entropy and the SP-loss (Eq. 2) -- and the class
weightings measured against it (README, "Training recipe": plain CE won here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ihp_rt.data.folder import IGNORE

SP_MARGIN = 1.5
_EPS = 1e-6


CE_WEIGHTINGS = ("plain", "balanced", "sqrt_balanced")


def _inverse_frequency(counts: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """w_c = (total / (P * n_c)) ** power over the P classes with n_c > 0; 1 for classes never seen."""
    weights = torch.ones_like(counts)
    seen = counts > 0
    if seen.any():
        weights[seen] = (counts[seen].sum() / (seen.sum() * counts[seen])) ** power
    return weights


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, clicks: torch.Tensor, weighting: str = "plain",
                  ignore_index: int = IGNORE) -> torch.Tensor:
    """Cross-entropy with one of the measured class weightings.

    ``plain``: unweighted. ``balanced``: the paper's (see :func:`balanced_cross_entropy`).
    ``sqrt_balanced``: the same two halves with square-rooted weights, which narrows the ~100x
    gap between background and a small part to ~10x (fewer false positives of small parts).
    """
    if weighting == "plain":
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    if weighting not in CE_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {CE_WEIGHTINGS}, got {weighting!r}")
    return balanced_cross_entropy(logits, target, clicks, ignore_index, 0.5 if weighting == "sqrt_balanced" else 1.0)


def balanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, clicks: torch.Tensor,
                           ignore_index: int = IGNORE, power: float = 1.0) -> torch.Tensor:
    """0.5 * CE weighted by inverse pixel frequency + 0.5 * CE weighted by inverse click frequency.

    Frequencies are counted over the batch: ``n_c`` pixels (ignore excluded) and ``k_c`` clicks
    of class c; each weight vector is ``w_c = total / (P * count_c)`` over the P classes that
    occur (weight 1 for the others), so rare parts -- by area and by clicks -- count as much
    as common ones. ``clicks`` is (N, K, 3) of (x, y, label) with label -1 as padding.
    ``power`` < 1 softens both weightings.
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    pixel_counts = torch.bincount(target[valid].flatten(), minlength=num_classes).float()
    click_labels = clicks[..., 2].flatten()
    click_counts = torch.bincount(click_labels[click_labels >= 0], minlength=num_classes).float()
    halves = [F.cross_entropy(logits, target, weight=_inverse_frequency(counts, power), ignore_index=ignore_index)
              for counts in (pixel_counts, click_counts)]
    return 0.5 * halves[0] + 0.5 * halves[1]


def adjacent_pairs(labels: torch.Tensor, ignore_index: int = IGNORE) -> set[tuple[int, int]]:
    """Ordered pairs (m, n), m != n, of classes whose masks touch (4-neighbourhood)."""
    pairs: set[tuple[int, int]] = set()
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:], labels[:-1])):
        touch = (a != b) & (a != ignore_index) & (b != ignore_index)
        for m, n in torch.stack([a[touch], b[touch]], 1).unique(dim=0).tolist():
            pairs.update({(m, n), (n, m)})
    return pairs


def sp_loss(features: torch.Tensor, labels: torch.Tensor, clicks: torch.Tensor, margin: float = SP_MARGIN,
            pixels_per_pair: int = 4, generator: torch.Generator | None = None,
            ignore_index: int = IGNORE) -> torch.Tensor:
    """Semantic-perception loss on the stride-4 decoder features.

    For every ordered pair (m, n) of adjacent parts that both have clicks, and each of
    ``pixels_per_pair`` random pixels r of part m::

        S_p = (1 + cos(f_r, mean_{q in clicks(m)} f_q)) / 2        (in [0, 1])
        S_n = (1 + cos(f_r, mean_{q in clicks(n)} f_q)) / 2
        L   = max(0, log(S_n + eps) - log(S_p + eps) + margin)

    averaged over all terms (0 when no pair qualifies). The paper's Eq. 2 has sign/min-max
    typos and a cosine that can be negative; this is the intended triplet form: a pixel must
    be e^margin times more similar to its own part's clicks than to a neighbouring part's.
    ``labels`` (N, H, W) and ``clicks`` (N, K, 3; label -1 = padding) are at input resolution.
    """
    n_img, _, h, w = features.shape
    small = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    sy, sx = h / labels.shape[1], w / labels.shape[2]
    terms = []
    for b in range(n_img):
        feats = features[b]
        real = clicks[b][clicks[b, :, 2] >= 0]
        if not len(real):
            continue
        cy = (real[:, 1].float() * sy).long().clamp_(0, h - 1)
        cx = (real[:, 0].float() * sx).long().clamp_(0, w - 1)
        click_feats = feats[:, cy, cx].T  # (K, D)
        centres = {int(c): click_feats[real[:, 2] == c].mean(0) for c in real[:, 2].unique().tolist()}
        for m, n in sorted(adjacent_pairs(small[b], ignore_index)):
            if m not in centres or n not in centres:
                continue
            ys, xs = torch.nonzero(small[b] == m, as_tuple=True)
            pick = torch.randint(len(ys), (pixels_per_pair,), generator=generator, device=ys.device)
            f_r = feats[:, ys[pick], xs[pick]].T  # (P, D)
            s_p = (1 + F.cosine_similarity(f_r, centres[m][None], dim=1)) / 2
            s_n = (1 + F.cosine_similarity(f_r, centres[n][None], dim=1)) / 2
            terms.append(F.relu(torch.log(s_n + _EPS) - torch.log(s_p + _EPS) + margin))
    if not terms:
        return features.sum() * 0.0
    return torch.cat(terms).mean()
