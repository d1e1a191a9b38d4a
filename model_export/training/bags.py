"""Batches of bags for training and scoring: padded descriptor bags (or tiled patches when the
trunk is fine-tuned), the head's forward pass and loss on them, predictions, validation loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model_export.config import TrainConfig
from model_export.data.dataset import RatedDataset
from model_export.metrics import roc_auc
from model_export.model.features import Bag, tile_image
from model_export.model.losses import coral_loss, cumulative_targets, reason_loss
from model_export.model.network import QualityHead, VGG16Trunk


@dataclass
class Batch:
    """Padded bags: ``desc`` ``[B, N, 2944]`` (or ``patches`` ``[sum N, 3, P, P]`` with
    ``counts`` in fine-tuning mode), ``positions`` ``[B, N, 2]``, ``mask`` ``[B, N]`` bool,
    ``cum_targets`` ``[B, K-1]``, ``reasons`` ``[B, R]`` (NaN unknown), ``labels`` ``[B]``."""

    positions: Tensor
    mask: Tensor
    cum_targets: Tensor
    reasons: Tensor
    labels: Tensor
    desc: Tensor | None = None
    patches: Tensor | None = None
    counts: list[int] | None = None

    def to(self, device: torch.device) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            move(self.positions),  # type: ignore[arg-type]
            move(self.mask),  # type: ignore[arg-type]
            move(self.cum_targets),  # type: ignore[arg-type]
            move(self.reasons),  # type: ignore[arg-type]
            move(self.labels),  # type: ignore[arg-type]
            move(self.desc),
            move(self.patches),
            self.counts,
        )


def pad_bags(descs: list[np.ndarray], positions: list[np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
    """Lists of ``[N_i, D]`` / ``[N_i, 2]`` -> padded ``[B, N, D]``, ``[B, N, 2]``, ``[B, N]``
    mask (True = real patch)."""
    n_max = max(d.shape[0] for d in descs)
    b = len(descs)
    dim = descs[0].shape[1]
    desc = np.zeros((b, n_max, dim), np.float32)
    pos = np.zeros((b, n_max, 2), np.float32)
    mask = np.zeros((b, n_max), bool)
    for i, (d, p) in enumerate(zip(descs, positions, strict=True)):
        desc[i, : len(d)] = d
        pos[i, : len(p)] = p
        mask[i, : len(d)] = True
    return torch.from_numpy(desc), torch.from_numpy(pos), torch.from_numpy(mask)


def split_and_pad(flat: Tensor, counts: list[int]) -> tuple[Tensor, Tensor]:
    """``[sum N_i, D]`` -> padded ``[B, N_max, D]`` and mask ``[B, N_max]`` (differentiable)."""
    parts = torch.split(flat, counts)
    n_max = max(counts)
    padded = torch.stack([torch.nn.functional.pad(p, (0, 0, 0, n_max - p.shape[0])) for p in parts])
    mask = torch.zeros((len(counts), n_max), dtype=torch.bool, device=flat.device)
    for i, n in enumerate(counts):
        mask[i, :n] = True
    return padded, mask


class BagData:
    """Targets of a dataset, and its bags (cached descriptors, or tiled patches on demand)."""

    def __init__(
        self,
        dataset: RatedDataset,
        bags: list[Bag] | None,
        patch_size: int,
        config: TrainConfig,
    ) -> None:
        self.dataset = dataset
        self.bags = bags
        self.patch_size = patch_size
        self.config = config
        ratings = np.full((len(dataset), max(len(im.ratings) for im in dataset.images)), np.nan)
        for i, im in enumerate(dataset.images):
            ratings[i, : len(im.ratings)] = im.ratings
        self.cum_targets = torch.from_numpy(cumulative_targets(ratings, dataset.k_levels))
        self.reasons = torch.from_numpy(
            np.stack([im.reasons for im in dataset.images]).astype(np.float32)
            if dataset.reason_names
            else np.zeros((len(dataset), 0), np.float32)
        )
        self.labels = torch.from_numpy(dataset.labels())

    def __len__(self) -> int:
        return len(self.dataset)

    def n_patches(self, i: int) -> int:
        if self.bags is not None:
            return int(self.bags[i].desc.shape[0])
        return 0

    def batch(
        self, indices: list[int], patch_dropout: float = 0.0, rng: np.random.Generator | None = None
    ) -> Batch:
        targets = (self.cum_targets[indices], self.reasons[indices], self.labels[indices])
        if self.bags is not None:
            descs: list[np.ndarray] = []
            bag_positions: list[np.ndarray] = []
            for i in indices:
                bag = self.bags[i]
                keep = np.arange(bag.desc.shape[0])
                if patch_dropout > 0 and rng is not None and keep.size > 1:
                    chosen = rng.random(keep.size) >= patch_dropout
                    if not chosen.any():
                        chosen[rng.integers(keep.size)] = True
                    keep = keep[chosen]
                descs.append(bag.desc[keep])
                bag_positions.append(bag.positions[keep])
            desc, pos, mask = pad_bags(descs, bag_positions)
            return Batch(pos, mask, *targets, desc=desc)
        patch_list, pos_list, counts = [], [], []
        for i in indices:
            patches, positions, _, _ = tile_image(
                self.dataset.images[i].path, self.patch_size, self.config.train_grid
            )
            patch_list.append(torch.from_numpy(patches))
            pos_list.append(positions)
            counts.append(len(patches))
        dummy = [np.zeros((n, 1), np.float32) for n in counts]
        _, pos, mask = pad_bags(dummy, pos_list)
        return Batch(pos, mask, *targets, patches=torch.cat(patch_list), counts=counts)


def forward_batch(head: QualityHead, trunk: VGG16Trunk | None, batch: Batch) -> dict[str, Tensor]:
    """Head outputs for a batch (descriptors from the batch, or from the trunk on its patches)."""
    if batch.desc is not None:
        return head.forward_features(batch.desc, batch.positions, batch.mask)
    assert trunk is not None and batch.patches is not None and batch.counts is not None
    desc, mask = split_and_pad(trunk(batch.patches), batch.counts)
    return head.forward_features(desc, batch.positions, mask)


def batch_loss(out: dict[str, Tensor], batch: Batch, reason_weight: float) -> Tensor:
    loss = coral_loss(out["cum_logits"], batch.cum_targets)
    if out["reason_logits"].shape[-1] > 0 and reason_weight > 0:
        loss = loss + reason_weight * reason_loss(out["reason_logits"], batch.reasons)
    return loss


@torch.no_grad()
def predict(
    head: QualityHead,
    trunk: VGG16Trunk | None,
    data: BagData,
    device: torch.device,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Scores ``[M]`` (P(good)), cumulative probabilities ``[M, K-1]``, reasons ``[M, R]``."""
    head.eval()
    if trunk is not None:
        trunk.eval()
    scores, cums, reasons = [], [], []
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        batch = data.batch(idx).to(device)
        out = forward_batch(head, trunk, batch)
        scores.append(out["score"].float().cpu().numpy())
        cums.append(torch.sigmoid(out["cum_logits"]).float().cpu().numpy())
        reasons.append(torch.sigmoid(out["reason_logits"]).float().cpu().numpy())
    return {
        "score": np.concatenate(scores) if scores else np.zeros(0, np.float32),
        "cum_probs": np.concatenate(cums) if cums else np.zeros((0, 0), np.float32),
        "reasons": np.concatenate(reasons) if reasons else np.zeros((0, 0), np.float32),
    }


@torch.no_grad()
def evaluate_loss(
    head: QualityHead,
    trunk: VGG16Trunk | None,
    data: BagData,
    device: torch.device,
    config: TrainConfig,
) -> tuple[float, float]:
    """(mean loss, AUC of the score against the majority label) on ``data``."""
    head.eval()
    total, n = 0.0, 0
    scores = []
    for start in range(0, len(data), config.batch_size):
        idx = list(range(start, min(start + config.batch_size, len(data))))
        batch = data.batch(idx).to(device)
        out = forward_batch(head, trunk, batch)
        total += float(batch_loss(out, batch, config.reason_weight)) * len(idx)
        n += len(idx)
        scores.append(out["score"].cpu().numpy())
    if n == 0:
        return math.nan, math.nan
    auc = roc_auc(data.labels.numpy(), np.concatenate(scores))
    return total / n, auc
