"""Training losses: CORAL ordinal loss on the raters' empirical cumulative targets, reason BCE.

CORAL (Cao, Mirjalili & Raschka 2020) models P(rating > k), k = 1..K-1, with one shared weight
vector and K-1 ordered biases. Instead of one hard label per image we use all raters: the target
for threshold k is the fraction of the image's raters whose rating exceeds k, so an image that
splits the raters 2-2 teaches the model that it is borderline rather than flipping a coin.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def cumulative_targets(ratings: np.ndarray, k_levels: int) -> np.ndarray:
    """float ``[B, n_raters]`` ratings (NaN = blank) -> float32 ``[B, K-1]``: P(rating > k).

    Each row must have at least one rating.
    """
    ratings = np.atleast_2d(np.asarray(ratings, dtype=np.float64))
    rated = ~np.isnan(ratings)
    counts = rated.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError("every image needs at least one rating")
    ks = np.arange(1, k_levels, dtype=np.float64)
    above = (np.where(rated, ratings, -np.inf)[:, None, :] > ks[None, :, None]).sum(axis=2)
    return np.asarray(above / counts[:, None], dtype=np.float32)


def coral_loss(cum_logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean over images of the summed BCE over the K-1 thresholds.

    ``cum_logits`` ``[B, K-1]``; ``targets`` ``[B, K-1]`` in [0, 1]; ``weights`` ``[B]`` optional
    per-image weights (normalised to mean 1).
    """
    per_image = F.binary_cross_entropy_with_logits(cum_logits, targets, reduction="none").sum(-1)
    if weights is None:
        return per_image.mean()
    return (per_image * weights).sum() / weights.sum()


def reason_loss(reason_logits: Tensor, targets: Tensor) -> Tensor:
    """BCE over known reason labels only.

    ``reason_logits`` ``[B, R]``; ``targets`` ``[B, R]`` with NaN for unknown. Returns 0 when no
    label is known (or R = 0).
    """
    known = ~torch.isnan(targets)
    if reason_logits.numel() == 0 or not bool(known.any()):
        return reason_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(
        reason_logits[known], targets[known], reduction="mean"
    )
