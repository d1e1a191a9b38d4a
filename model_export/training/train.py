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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export.config import TrainConfig
from model_export.data.dataset import RatedDataset, assign_splits, load_datasets
from model_export.data.reason_targets import apply_expected_reason_targets
from model_export.model.features import (
    Bag,
    FeatureCache,
    build_trunk,
    default_cache_dir,
    state_hash,
)
from model_export.model.network import PatchMILQualityNet, QualityHead, VGG16Trunk
from model_export.training.bags import BagData, batch_loss, evaluate_loss, forward_batch

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


@dataclass
class _Best:
    """Where the run stands: the epochs so far and the best one (by validation AUC)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    auc: float = -math.inf
    epoch: int = 0
    loss: float = math.inf


@dataclass
class _Fit:
    """The trained objects and their RNG: head, trunk (when fine-tuned), optimiser, schedule."""

    head: QualityHead
    trunk: VGG16Trunk
    trunk_train: VGG16Trunk | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    shuffle_rng: np.random.Generator


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
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    seed_everything(config.seed)
    resumed = _resumable(config, out_dir, ckpt_dir / "last.pt", resume, restart)
    dataset, reason_targets = _run_dataset(config, out_dir, resumed is not None)
    train_idx = dataset.split_indices("train")
    val_idx = dataset.split_indices("val")
    trunk = build_trunk(config.weights, seed=config.seed)
    trunk_hash = state_hash(trunk)
    cache = make_cache(config, trunk, device)
    t_extract = time.perf_counter()
    train_data, val_data, stat_bags = _bag_data(
        config, cache, dataset, train_idx, val_idx, progress
    )
    extract_s = time.perf_counter() - t_extract
    extract_rate = (
        cache.stats["patches"] / cache.stats["extract_s"] if cache.stats["extract_s"] > 0 else None
    )
    # re-seed: feature extraction may or may not have run (cold or warm cache), and must not
    # change the head's initialisation
    seed_everything(config.seed)
    fit = _make_fit(config, len(dataset.reason_names), stat_bags, trunk, device)
    best = _restore(fit, resumed, config) if resumed is not None else _Best()

    from tqdm import tqdm

    n_batches = math.ceil(len(train_data) / config.batch_size)
    total = (config.epochs - best.start_epoch) * n_batches
    bar = tqdm(total=total, desc="train", unit="batch", disable=not progress, dynamic_ncols=True)
    train_time, train_patches = 0.0, 0
    for epoch in range(best.start_epoch, config.epochs):
        t0 = time.perf_counter()
        train_loss, patches = _train_epoch(fit, train_data, config, device, n_batches, bar, epoch)
        train_patches += patches
        train_time += time.perf_counter() - t0
        row = _epoch_row(fit, val_data, device, config, epoch, train_loss, t0)
        best.history.append(row)
        bar.set_postfix(epoch=epoch + 1, loss=f"{train_loss:.4f}", val_auc=f"{row['val_auc']:.3f}")
        _save_epoch(fit, best, config, dataset, trunk_hash, ckpt_dir, row, len(val_data) == 0)
        write_history(out_dir, best.history)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            logger.info("stopping after epoch %d as asked; resume to continue", epoch + 1)
            break
    bar.close()
    if not (ckpt_dir / "best.pt").is_file():
        raise TrainingError("no checkpoint was written (no epoch ran)")
    result = TrainResult(
        out_dir=out_dir,
        best_epoch=best.epoch,
        best_val_auc=best.auc,
        history=best.history,
        extract_patches_per_s=extract_rate,
        train_patches_per_s=train_patches / train_time if train_time > 0 else math.nan,
    )
    timing = {"extract_s": extract_s, "train_s": train_time, "device": str(device)}
    _write_summary(out_dir, config, result, cache, timing, reason_targets)
    return result


def _resumable(
    config: TrainConfig, out_dir: Path, last_path: Path, resume: bool, restart: bool
) -> dict[str, Any] | None:
    """The last checkpoint to resume from (None: a new run); refuses a run of another config."""
    if not last_path.is_file() or restart:
        return None
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
    return resumed


def _run_dataset(
    config: TrainConfig, out_dir: Path, resumed: bool
) -> tuple[RatedDataset, dict[str, Any]]:
    """The run's dataset (a resumed run keeps its splits), with ``splits.csv`` and
    ``config.json`` written; and what the reason targets were."""
    splits_file = out_dir / "splits.csv"
    dataset = load_run_dataset(config, splits_file if resumed else None)
    write_splits(dataset, splits_file)
    reason_targets: dict[str, Any] = {"mode": config.reason_targets}
    if config.reason_targets == "expected":
        dataset, targets_report = apply_expected_reason_targets(dataset)
        reason_targets.update(targets_report.to_dict())
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    if not dataset.split_indices("train"):
        raise TrainingError("no training images (no row has split 'train' or a blank split)")
    if not dataset.split_indices("val"):
        logger.warning("no validation images: model selection will use the last epoch")
    logger.info("dataset: %s", json.dumps(dataset.summary()))
    return dataset, reason_targets


def _bag_data(
    config: TrainConfig,
    cache: FeatureCache,
    dataset: RatedDataset,
    train_idx: list[int],
    val_idx: list[int],
    progress: bool,
) -> tuple[BagData, BagData, list[Bag]]:
    """Training and validation data (cached descriptors, or tiles when the trunk is
    fine-tuned), and the bags the feature normalisation is computed on."""
    train_ds, val_ds = dataset.subset(train_idx), dataset.subset(val_idx)
    if config.trainable_blocks > 0:
        # normalisation statistics from the initial trunk on (up to 64) training images
        stat_images = [im.path for im in train_ds.images[:64]]
        stat_bags = cache.get_many(stat_images, progress=progress, desc="feature statistics")
        train_data = BagData(train_ds, None, config.patch_size, config)
        val_data = BagData(val_ds, None, config.patch_size, config)
        return train_data, val_data, stat_bags
    all_bags = cache.get_many(
        [im.path for im in train_ds.images + val_ds.images], progress=progress
    )
    n_train = len(train_idx)
    train_data = BagData(train_ds, all_bags[:n_train], config.patch_size, config)
    val_data = BagData(val_ds, all_bags[n_train:], config.patch_size, config)
    return train_data, val_data, all_bags[:n_train]


def _make_fit(
    config: TrainConfig,
    n_reasons: int,
    stat_bags: list[Bag],
    trunk: VGG16Trunk,
    device: torch.device,
) -> _Fit:
    """A new head (feature normalisation from ``stat_bags``), the trunk's trainable blocks,
    AdamW and the cosine schedule."""
    head = QualityHead(**head_kwargs(config, n_reasons))
    all_desc = np.concatenate([b.desc for b in stat_bags])
    head.set_feature_normalisation(
        torch.from_numpy(all_desc.mean(axis=0)), torch.from_numpy(all_desc.std(axis=0))
    )
    head.to(device)
    params: list[dict[str, Any]] = [{"params": list(head.parameters()), "lr": config.lr}]
    trunk_train: VGG16Trunk | None = None
    if config.trainable_blocks > 0:
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
    return _Fit(head, trunk, trunk_train, optimizer, scheduler, shuffle_rng)


def _restore(fit: _Fit, resumed: dict[str, Any], config: TrainConfig) -> _Best:
    """Weights, optimiser, schedule and RNG states from the last checkpoint; where it stood."""
    fit.head.load_state_dict(resumed["head_state"])
    if config.trainable_blocks > 0 and resumed.get("trunk_state") is not None:
        fit.trunk.load_state_dict(resumed["trunk_state"])
    fit.optimizer.load_state_dict(resumed["optimizer"])
    fit.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fit.optimizer, T_max=config.epochs)
    fit.scheduler.load_state_dict({**resumed["scheduler"], "T_max": config.epochs})
    fit.shuffle_rng.bit_generator.state = resumed["rng"]["numpy"]
    torch.set_rng_state(resumed["rng"]["torch"])
    if resumed["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(resumed["rng"]["cuda"])
    return _Best(
        history=list(resumed["history"]),
        start_epoch=int(resumed["epoch"]),
        auc=float(resumed["best"]["val_auc"]),
        epoch=int(resumed["best"]["epoch"]),
        loss=float(resumed["best"].get("val_loss", math.inf)),
    )


def _train_epoch(
    fit: _Fit,
    train_data: BagData,
    config: TrainConfig,
    device: torch.device,
    n_batches: int,
    bar: Any,
    epoch: int,
) -> tuple[float, int]:
    """One pass over the shuffled training set; (mean training loss, patches seen)."""
    fit.head.train()
    if fit.trunk_train is not None:
        fit.trunk_train.train()
    order = fit.shuffle_rng.permutation(len(train_data))
    epoch_loss, seen, patches = 0.0, 0, 0
    for b in range(n_batches):
        idx = order[b * config.batch_size : (b + 1) * config.batch_size].tolist()
        batch = train_data.batch(idx, config.patch_dropout, fit.shuffle_rng).to(device)
        out = forward_batch(fit.head, fit.trunk_train, batch)
        loss = batch_loss(out, batch, config.reason_weight)
        fit.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        fit.optimizer.step()
        epoch_loss += loss.item() * len(idx)
        seen += len(idx)
        patches += int(batch.mask.sum())
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{epoch_loss / seen:.4f}")
    fit.scheduler.step()
    return epoch_loss / max(seen, 1), patches


def _epoch_row(
    fit: _Fit,
    val_data: BagData,
    device: torch.device,
    config: TrainConfig,
    epoch: int,
    train_loss: float,
    t0: float,
) -> dict[str, Any]:
    """The epoch's history row, with its validation loss and AUC (NaN without validation)."""
    val_loss, val_auc = (
        evaluate_loss(fit.head, fit.trunk_train, val_data, device, config)
        if len(val_data)
        else (math.nan, math.nan)
    )
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_auc": val_auc,
        "lr": fit.optimizer.param_groups[0]["lr"],
        "epoch_s": time.perf_counter() - t0,
    }


def _save_epoch(
    fit: _Fit,
    best: _Best,
    config: TrainConfig,
    dataset: RatedDataset,
    trunk_hash: str,
    ckpt_dir: Path,
    row: dict[str, Any],
    no_validation: bool,
) -> None:
    """``best.pt`` when the epoch improved on validation AUC (ties: lower loss), and the
    resumable ``last.pt``; updates ``best``."""
    val_auc, val_loss, epoch = row["val_auc"], row["val_loss"], row["epoch"]
    improved = (
        (not math.isnan(val_auc) and val_auc > best.auc)
        or (not math.isnan(val_auc) and val_auc == best.auc and val_loss < best.loss)
        or (math.isnan(val_auc) and no_validation)
    )
    fine_tune = config.trainable_blocks > 0
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "epoch": epoch,
        "head_kwargs": head_kwargs(config, len(dataset.reason_names)),
        "head_state": {k: v.detach().cpu() for k, v in fit.head.state_dict().items()},
        "trunk_state": (
            {k: v.detach().cpu() for k, v in fit.trunk.state_dict().items()} if fine_tune else None
        ),
        "trunk_hash": trunk_hash,
        "reason_names": list(dataset.reason_names),
        "dataset_summary": dataset.summary(),
        "history": best.history,
    }
    if improved:
        best.auc = val_auc if not math.isnan(val_auc) else best.auc
        best.loss, best.epoch = val_loss, epoch
        save_checkpoint(ckpt_dir / "best.pt", payload)
    payload.update(
        optimizer=fit.optimizer.state_dict(),
        scheduler=fit.scheduler.state_dict(),
        rng={
            "numpy": fit.shuffle_rng.bit_generator.state,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        best={"val_auc": best.auc, "epoch": best.epoch, "val_loss": best.loss},
    )
    save_checkpoint(ckpt_dir / "last.pt", payload)


def _write_summary(
    out_dir: Path,
    config: TrainConfig,
    result: TrainResult,
    cache: FeatureCache,
    timing: dict[str, Any],
    reason_targets: dict[str, Any],
) -> None:
    """``train_summary.json``: the best epoch, descriptor extraction and head training speed."""
    summary = {
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_val_auc,
        "descriptor_extraction": {
            "extractor": cache.extractor_name,
            "images_computed": cache.stats["computed"],
            "images_cached": cache.stats["hits"],
            "patches": cache.stats["patches"],
            "patches_per_s": result.extract_patches_per_s,
            "wall_s": timing["extract_s"],
        },
        "head_training": {
            "patches_per_s": result.train_patches_per_s,
            "wall_s": timing["train_s"],
            "device": timing["device"],
            "fine_tuned_blocks": config.trainable_blocks,
        },
        "reason_targets": reason_targets,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    logger.info("training done: %s", json.dumps(summary))


def write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    (out_dir / "metrics.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    with (out_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
