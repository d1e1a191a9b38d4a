"""The int8 file: static QDQ quantisation of the convolutions, the optional distillation of
its head on the int8 trunk's descriptors, and how its decisions compare with fp32's."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from model_export.config import TrainConfig
from model_export.export.onnx_graph import ExportCheckError, descriptor_function
from model_export.metrics import confusion_at
from model_export.model.features import tile_image
from model_export.model.network import PatchMILQualityNet, QualityHead
from model_export.training.distil import DistilBag, distil_head, score_gap
from model_export.training.train import make_cache


def _quantize_convs_qdq(
    fp32_path: Path,
    int8_path: Path,
    feeds: Iterable[dict[str, np.ndarray]],
    reduce_range: bool = True,
    exclude: list[str] | None = None,
) -> None:
    """The one int8 recipe: static QDQ, convolutions only (except ``exclude``), per-channel int8
    weights, uint8 activations, min-max calibration on ``feeds`` (one graph input dict each)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # untyped onnxruntime base
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(
        str(fp32_path),
        str(int8_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=exclude or [],
        calibrate_method=CalibrationMethod.MinMax,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration: list[tuple[np.ndarray, np.ndarray]],
    reduce_range: bool = True,
    fp32_first_convs: int = 0,
) -> None:
    """Static QDQ int8 (convolutions only, except the first ``fp32_first_convs``), min-max
    calibrated on real patch bags. (Percentile / entropy calibration keep every activation of
    every calibration image in memory: > 22 GB for 32 images of 6 patches, so not offered.)"""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = int8_path.with_name(int8_path.stem + "-pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    _quantize_convs_qdq(
        pre,
        int8_path,
        ({"patches": patches, "positions": positions} for patches, positions in calibration),
        reduce_range=reduce_range,
        exclude=convs[:fp32_first_convs],
    )
    pre.unlink(missing_ok=True)


def quantize_trunk_int8_for_speed(fp32_path: Path, int8_path: Path, patches: np.ndarray) -> None:
    """int8 QDQ copy of a trunk-only ONNX (input ``patches``), for speed measurements: the same
    recipe as the shipped int8 model."""
    _quantize_convs_qdq(fp32_path, int8_path, [{"patches": patches}])


def int8_operating_point(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, Any]:
    """The int8 file's own threshold and its validation rates there (``labels``, ``scores``
    ``[M]``)."""
    c = confusion_at(labels, scores, threshold)
    return {
        "value": float(threshold),
        "n": len(labels),
        "sensitivity": c.sensitivity,
        "specificity": c.specificity,
        "ppv": c.ppv,
        "npv": c.npv,
    }


def decision_agreement(
    labels: np.ndarray, accepted_fp32: np.ndarray, accepted_int8: np.ndarray
) -> dict[str, Any]:
    """How often the int8 file makes the fp32 model's accept/reject decision (``labels`` 1 = good,
    decisions bool, all ``[M]``), and where it differs: quantisation moves every score a little,
    which matters only where it flips a decision."""
    good = labels == 1
    only_int8 = accepted_int8 & ~accepted_fp32
    only_fp32 = accepted_fp32 & ~accepted_int8
    same = int(np.sum(accepted_int8 == accepted_fp32))
    return {
        "n": len(labels),
        "same": same,
        "share": same / len(labels) if len(labels) else math.nan,
        "int8_only_accepts": int(only_int8.sum()),
        "int8_only_accepts_poor": int((only_int8 & ~good).sum()),
        "int8_only_rejects": int(only_fp32.sum()),
        "int8_only_rejects_good": int((only_fp32 & good).sum()),
    }


def distil_int8_head(
    model: PatchMILQualityNet,
    int8_path: Path,
    descriptor: str,
    config: TrainConfig,
    train_images: list[Path],
    n_images: int,
    epochs: int = 6,
    lr: float = 1e-5,
    progress: bool = True,
) -> tuple[QualityHead, dict[str, Any]]:
    """A copy of ``model.head`` fine-tuned to give, on the int8 file's descriptors of
    ``n_images`` training images (seeded sample), what the head gives on their fp32 descriptors
    (from the run's descriptor cache). Returns the head and what to record in the metadata."""
    from tqdm import tqdm

    rng = np.random.default_rng(0)
    chosen = [train_images[i] for i in rng.permutation(len(train_images))[:n_images]]
    cache = make_cache(config, model.trunk, torch.device("cpu"))
    int8_descriptors = descriptor_function(int8_path, descriptor)
    bags: list[DistilBag] = []
    started = time.perf_counter()
    for image in tqdm(chosen, desc="int8 descriptors", disable=not progress, leave=False):
        patches, positions, _, _ = tile_image(image, config.patch_size, config.train_grid)
        fp32_bag = cache.get(image)
        if fp32_bag.positions.shape != positions.shape or not np.allclose(
            fp32_bag.positions, positions
        ):
            raise ExportCheckError(f"{image}: its cached fp32 bag does not match the tiling")
        bags.append(
            DistilBag(
                int8_descriptors(patches, positions),
                np.asarray(fp32_bag.desc, np.float32),
                positions,
            )
        )
    seconds_descriptors = time.perf_counter() - started
    started = time.perf_counter()
    result = distil_head(model.head, bags, epochs=epochs, lr=lr)
    seconds_training = time.perf_counter() - started
    gap_before = score_gap(model.head, model.head, bags)
    gap_after = score_gap(model.head, result.head, bags)
    info = {
        "images": len(bags),
        "epochs": epochs,
        "lr": lr,
        "loss": "MSE of bag ordinal, reason and patch ordinal logits against the fp32 head",
        "epoch_losses": result.epoch_losses,
        "train_gap_before": gap_before,
        "train_gap_after": gap_after,
        "seconds": {"descriptors": seconds_descriptors, "training": seconds_training},
    }
    return result.head, info


def difference_stats(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """rms and largest |other - reference| of two score vectors ``[M]``."""
    gap = np.abs(other - reference)
    return {"rms": float(np.sqrt(np.mean(gap**2))), "max": float(gap.max())}
