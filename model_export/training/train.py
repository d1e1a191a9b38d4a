"""``skin-capture-model train``: fit the MIL ordinal head (and optionally the last VGG blocks).

Two modes, chosen by ``trainable_blocks`` in the config:

* ``0`` (default; what a 2-core CPU can do): the VGG16 trunk is frozen; each image's patch
  descriptors ``[N, 2944]`` are computed once and cached
  (:mod:`model_export.model.features`), and only
  the head (~0.8 M parameters) is trained, on padded batches of bags ``[B, N_max, 2944]``.
* ``> 0`` (a GPU): the last ``trainable_blocks`` VGG blocks are fine-tuned end to end together
  with the head, on patches tiled from the images every epoch (no cache). On a CPU this works but
  is slow; it is allowed so that small runs and tests can exercise it.

Outputs in ``out_dir``: ``config.json``, ``splits.csv`` (split of every image), ``metrics.csv``
and ``metrics.json`` (one row per epoch), ``checkpoints/last.pt`` (resumable: weights, optimizer,
RNG states, history) and ``checkpoints/best.pt`` (best validation AUC).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model_export.config import TrainConfig
from model_export.data.dataset import RatedDataset, assign_splits, load_datasets
from model_export.data.reason_targets import apply_expected_reason_targets
from model_export.metrics import roc_auc
from model_export.model.features import (
    Bag,
    FeatureCache,
    build_trunk,
    default_cache_dir,
    state_hash,
    tile_image,
)
from model_export.model.losses import coral_loss, cumulative_targets, reason_loss
from model_export.model.network import PatchMILQualityNet, QualityHead, VGG16Trunk

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but torch sees no CUDA GPU")
    return torch.device(preference)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def head_kwargs(config: TrainConfig, n_reasons: int) -> dict[str, Any]:
    return {
        "k_levels": config.k_levels,
        "n_reasons": n_reasons,
        "acceptable_level": config.acceptable_level,
        "embed_dim": config.embed_dim,
        "hidden_dim": config.hidden_dim,
        "pooling": config.pooling,
        "dropout": config.dropout,
        "reason_pooling": config.reason_pooling,
    }


# ---- data ------------------------------------------------------------------------------------


def load_run_dataset(config: TrainConfig, splits_file: Path | None = None) -> RatedDataset:
    """Load the config's CSVs; blank splits come from ``splits_file`` if given, else are
    assigned (seeded, stratified by label and cohort)."""
    dataset = load_datasets(
        config.csv,
        k_levels=config.k_levels,
        acceptable_level=config.acceptable_level,
        reason_names=config.reasons,
    )
    if splits_file is not None and splits_file.is_file():
        stored = read_splits(splits_file)
        from dataclasses import replace

        for i, im in enumerate(dataset.images):
            key = str(im.path.resolve())
            if not im.split and key in stored:
                dataset.images[i] = replace(im, split=stored[key])
    if any(not im.split for im in dataset.images):
        split_seed = config.split_seed if config.split_seed is not None else config.seed
        counts = assign_splits(dataset, config.val_fraction, config.test_fraction, split_seed)
        logger.info("assigned splits to rows without one: %s", counts)
    return dataset


def write_splits(dataset: RatedDataset, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "split", "cohort", "label", "mean_rating"])
        for im in dataset.images:
            writer.writerow(
                [str(im.path.resolve()), im.split, im.cohort, im.label, f"{im.mean_rating:.3f}"]
            )


def read_splits(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["image"]: row["split"] for row in csv.DictReader(handle)}


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


# ---- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"no checkpoint at {path}")
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: unknown checkpoint format {payload.get('format')!r}")
    return payload


def model_from_checkpoint(
    payload: dict[str, Any], trunk: VGG16Trunk | None = None
) -> PatchMILQualityNet:
    """Rebuild trunk + head. The trunk comes from the checkpoint when it was fine-tuned, else from
    the config's weights file (its hash must match the one trained on)."""
    config = TrainConfig.from_dict(payload["config"])
    head = QualityHead(**payload["head_kwargs"])
    head.load_state_dict(payload["head_state"])
    if trunk is None:
        trunk = build_trunk(config.weights, seed=config.seed)
        if payload.get("trunk_state") is not None:
            trunk.load_state_dict(payload["trunk_state"])
        elif state_hash(trunk) != payload["trunk_hash"]:
            raise TrainingError(
                f"the VGG16 weights at {config.weights} differ from those the head was trained "
                "on (hash mismatch); use the same weights file"
            )
    return PatchMILQualityNet(head, trunk).eval()


# ---- training --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out_dir: Path
    best_epoch: int
    best_val_auc: float
    history: list[dict[str, Any]]
    extract_patches_per_s: float | None
    train_patches_per_s: float


def make_cache(config: TrainConfig, trunk: VGG16Trunk, device: torch.device) -> FeatureCache:
    root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    return FeatureCache(
        root,
        trunk,
        config.patch_size,
        config.train_grid,
        extractor=config.extractor,
        device=str(device),
        threads=config.threads,
    )


def train(
    config: TrainConfig,
    resume: bool = True,
    progress: bool = True,
    restart: bool = False,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Run (or resume) a training run; see the module docstring for what is written.

    ``stop_after_epoch``: end (resumably) after that epoch, e.g. to split a long run into
    sessions; a later call resumes where it stopped.
    """
    out_dir = Path(config.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    seed_everything(config.seed)

    resumed: dict[str, Any] | None = None
    if last_path.is_file() and not restart:
        if not resume:
            raise TrainingError(
                f"{out_dir} already holds a run; resume it or start over with --restart"
            )
        resumed = load_checkpoint(last_path)
        previous = dict(resumed["config"])
        current = config.to_dict()
        changed = sorted(k for k in current if k != "epochs" and previous.get(k) != current[k])
        if changed:
            raise TrainingError(
                f"{out_dir} holds a run with a different config ({', '.join(changed)}); "
                "use another out_dir or --restart"
            )
        logger.info("resuming %s after epoch %d", out_dir, resumed["epoch"])

    splits_file = out_dir / "splits.csv"
    dataset = load_run_dataset(config, splits_file if resumed else None)
    write_splits(dataset, splits_file)
    reason_targets: dict[str, Any] = {"mode": config.reason_targets}
    if config.reason_targets == "expected":
        dataset, targets_report = apply_expected_reason_targets(dataset)
        reason_targets.update(targets_report.to_dict())
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    train_idx = dataset.split_indices("train")
    val_idx = dataset.split_indices("val")
    if not train_idx:
        raise TrainingError("no training images (no row has split 'train' or a blank split)")
    if not val_idx:
        logger.warning("no validation images: model selection will use the last epoch")
    logger.info("dataset: %s", json.dumps(dataset.summary()))

    trunk = build_trunk(config.weights, seed=config.seed)
    trunk_hash = state_hash(trunk)
    cache = make_cache(config, trunk, device)
    fine_tune = config.trainable_blocks > 0
    train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)

    t_extract = time.perf_counter()
    if fine_tune:
        # normalisation statistics from the initial trunk on (up to 64) training images
        stat_images = [im.path for im in train_ds.images[:64]]
        stat_bags = cache.get_many(stat_images, progress=progress, desc="feature statistics")
        train_data = BagData(train_ds, None, config.patch_size, config)
        val_data = BagData(val_ds, None, config.patch_size, config)
    else:
        all_bags = cache.get_many(
            [im.path for im in train_ds.images + val_ds.images], progress=progress
        )
        stat_bags = all_bags[: len(train_idx)]
        train_data = BagData(train_ds, all_bags[: len(train_idx)], config.patch_size, config)
        val_data = BagData(val_ds, all_bags[len(train_idx) :], config.patch_size, config)
    extract_s = time.perf_counter() - t_extract
    extract_rate = (
        cache.stats["patches"] / cache.stats["extract_s"] if cache.stats["extract_s"] > 0 else None
    )

    # re-seed: feature extraction may or may not have run (cold or warm cache), and must not
    # change the head's initialisation
    seed_everything(config.seed)
    head = QualityHead(**head_kwargs(config, len(dataset.reason_names)))
    all_desc = np.concatenate([b.desc for b in stat_bags])
    head.set_feature_normalisation(
        torch.from_numpy(all_desc.mean(axis=0)), torch.from_numpy(all_desc.std(axis=0))
    )
    head.to(device)
    params: list[dict[str, Any]] = [{"params": list(head.parameters()), "lr": config.lr}]
    trunk_train: VGG16Trunk | None = None
    if fine_tune:
        trunk.set_trainable_blocks(config.trainable_blocks)
        trunk_train = trunk.to(device)
        params.append(
            {"params": [p for p in trunk.parameters() if p.requires_grad], "lr": config.trunk_lr}
        )
        if device.type == "cpu":
            logger.warning("fine-tuning VGG blocks on a CPU is very slow; use a GPU")
    optimizer = torch.optim.AdamW(params, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    shuffle_rng = np.random.default_rng(config.seed)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_auc, best_epoch, best_loss = -math.inf, 0, math.inf
    if resumed is not None:
        head.load_state_dict(resumed["head_state"])
        if fine_tune and resumed.get("trunk_state") is not None:
            trunk.load_state_dict(resumed["trunk_state"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        scheduler.load_state_dict({**resumed["scheduler"], "T_max": config.epochs})
        shuffle_rng.bit_generator.state = resumed["rng"]["numpy"]
        torch.set_rng_state(resumed["rng"]["torch"])
        if resumed["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resumed["rng"]["cuda"])
        history = list(resumed["history"])
        start_epoch = int(resumed["epoch"])
        best_auc = float(resumed["best"]["val_auc"])
        best_epoch = int(resumed["best"]["epoch"])
        best_loss = float(resumed["best"].get("val_loss", math.inf))

    from tqdm import tqdm

    n_batches = math.ceil(len(train_data) / config.batch_size)
    bar = tqdm(
        total=(config.epochs - start_epoch) * n_batches,
        desc="train",
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
    )
    train_time, train_patches = 0.0, 0
    for epoch in range(start_epoch, config.epochs):
        head.train()
        if trunk_train is not None:
            trunk_train.train()
        order = shuffle_rng.permutation(len(train_data))
        epoch_loss, seen = 0.0, 0
        t0 = time.perf_counter()
        for b in range(n_batches):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size].tolist()
            batch = train_data.batch(idx, config.patch_dropout, shuffle_rng).to(device)
            out = forward_batch(head, trunk_train, batch)
            loss = batch_loss(out, batch, config.reason_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            epoch_loss += loss.item() * len(idx)
            seen += len(idx)
            train_patches += int(batch.mask.sum())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{epoch_loss / seen:.4f}")
        scheduler.step()
        train_time += time.perf_counter() - t0
        val_loss, val_auc = (
            evaluate_loss(head, trunk_train, val_data, device, config)
            if len(val_data)
            else (math.nan, math.nan)
        )
        row = {
            "epoch": epoch + 1,
            "train_loss": epoch_loss / max(seen, 1),
            "val_loss": val_loss,
            "val_auc": val_auc,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_s": time.perf_counter() - t0,
        }
        history.append(row)
        bar.set_postfix(epoch=epoch + 1, loss=f"{row['train_loss']:.4f}", val_auc=f"{val_auc:.3f}")
        improved = (
            (not math.isnan(val_auc) and val_auc > best_auc)
            or (not math.isnan(val_auc) and val_auc == best_auc and val_loss < best_loss)
            or (math.isnan(val_auc) and len(val_data) == 0)
        )
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "epoch": epoch + 1,
            "head_kwargs": head_kwargs(config, len(dataset.reason_names)),
            "head_state": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "trunk_state": (
                {k: v.detach().cpu() for k, v in trunk.state_dict().items()} if fine_tune else None
            ),
            "trunk_hash": trunk_hash,
            "reason_names": list(dataset.reason_names),
            "dataset_summary": dataset.summary(),
            "history": history,
        }
        if improved:
            best_auc = val_auc if not math.isnan(val_auc) else best_auc
            best_loss, best_epoch = val_loss, epoch + 1
            save_checkpoint(ckpt_dir / "best.pt", payload)
        payload.update(
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng={
                "numpy": shuffle_rng.bit_generator.state,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            best={"val_auc": best_auc, "epoch": best_epoch, "val_loss": best_loss},
        )
        save_checkpoint(last_path, payload)
        write_history(out_dir, history)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            logger.info("stopping after epoch %d as asked; resume to continue", epoch + 1)
            break
    bar.close()
    if not (ckpt_dir / "best.pt").is_file():
        raise TrainingError("no checkpoint was written (no epoch ran)")
    result = TrainResult(
        out_dir=out_dir,
        best_epoch=best_epoch,
        best_val_auc=best_auc,
        history=history,
        extract_patches_per_s=extract_rate,
        train_patches_per_s=train_patches / train_time if train_time > 0 else math.nan,
    )
    summary = {
        "best_epoch": best_epoch,
        "best_val_auc": best_auc,
        "descriptor_extraction": {
            "extractor": cache.extractor_name,
            "images_computed": cache.stats["computed"],
            "images_cached": cache.stats["hits"],
            "patches": cache.stats["patches"],
            "patches_per_s": extract_rate,
            "wall_s": extract_s,
        },
        "head_training": {
            "patches_per_s": result.train_patches_per_s,
            "wall_s": train_time,
            "device": str(device),
            "fine_tuned_blocks": config.trainable_blocks,
        },
        "reason_targets": reason_targets,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    logger.info("training done: %s", json.dumps(summary))
    return result


def write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    (out_dir / "metrics.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    with (out_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
