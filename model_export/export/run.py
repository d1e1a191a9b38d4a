"""``skin-capture-model export``: ONNX fp32 + int8 carrying the model contract, with checks.

1. fp32: ``torch.onnx.export`` of :class:`PatchMILQualityNet` (opset 17, dynamic N) with the
   :class:`ModelMeta` JSON under ``metadata_props``; onnxruntime outputs are compared with PyTorch
   on real validation images at both grids (max abs difference over all outputs <= ``tol``).
2. int8: ``onnxruntime.quantization.quantize_static``, QDQ, per-channel int8 weights, uint8
   activations, calibrated on real training-image patches cut by the shared tiling. Only the
   convolutions are quantized (>99 % of the compute); the small head (attention softmax, CORAL
   thresholds) stays fp32. Its validation AUC must be within ``max_auc_drop`` of fp32's, and its
   metadata carries the validation metrics measured on the int8 file itself.
3. Both graphs are then rewritten so that the trunk runs one patch at a time inside an ONNX
   ``Loop`` (:mod:`model_export.model.streaming`; same inputs, outputs and arithmetic, a
   fraction of the activation memory); every check above runs on the rewritten files that are
   shipped.
4. A model card (Markdown, :mod:`model_export.export.card`) and ``NAME-torch.pt`` (head weights
   + architecture, for ``model_export.bench.bench_torch``).

A model that fails a check is not written (the files are built in a temporary folder and only
moved into place when every check passed). The steps: :mod:`.onnx_graph` (fp32 graph, checks),
:mod:`.int8` (quantisation, distillation), :mod:`.meta` (metadata), :mod:`.card`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from desktop_app.core.model_meta import ModelMeta
from model_export.config import TrainConfig
from model_export.data.dataset import RatedDataset
from model_export.evaluation.evaluate import evaluate_run, load_eval_dataset
from model_export.export.card import model_card
from model_export.export.int8 import (
    decision_agreement,
    difference_stats,
    distil_int8_head,
    int8_operating_point,
    quantize_int8,
)
from model_export.export.meta import build_meta, int8_meta
from model_export.export.onnx_graph import (
    ExportCheckError,
    compare_with_torch,
    descriptor_function,
    export_onnx,
    fold_reason_thresholds,
    onnx_scores,
    set_metadata,
    store_exact_fp16_weights,
)
from model_export.export.seam import find_descriptor, seam_model_file
from model_export.metrics import roc_auc, youden_threshold
from model_export.model.features import tile_image
from model_export.model.network import DESCRIPTOR_DIM, PatchMILQualityNet
from model_export.model.streaming import find_trunk_output, is_streamed, write_streamed
from model_export.training.train import TrainingError, load_checkpoint, model_from_checkpoint

logger = logging.getLogger(__name__)

Bag = tuple[np.ndarray, np.ndarray]


@dataclass
class ExportResult:
    fp32_path: Path
    int8_path: Path | None
    card_path: Path
    torch_path: Path
    max_abs_diff: float
    auc_fp32: float
    auc_int8: float | None
    meta: ModelMeta


@dataclass
class _Run:
    """What every export step reads: the checkpoint, its evaluation, the model (reason thresholds
    folded in) and the validation images the files are checked on."""

    payload: dict[str, Any]
    config: TrainConfig
    report: dict[str, Any]
    model: PatchMILQualityNet
    dataset: RatedDataset
    val_idx: list[int]
    train_idx: list[int]
    progress: bool

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels()[self.val_idx]

    def iter_bags(self, indices: list[int]) -> Iterator[Bag]:
        """Tiled lazily, so a large validation split is never held in memory at once."""
        from tqdm import tqdm

        grid = self.config.tiling().capture
        for i in tqdm(indices, desc="scoring", disable=not self.progress, leave=False):
            patches, positions, _, _ = tile_image(
                self.dataset.images[i].path, self.config.patch_size, grid
            )
            yield patches, positions

    def bags(self, indices: list[int], grid_name: str = "capture") -> list[Bag]:
        from tqdm import tqdm

        tiling = self.config.tiling()
        grid = tiling.capture if grid_name == "capture" else tiling.live
        out_bags = []
        desc = f"tiling ({grid_name})"
        for i in tqdm(indices, desc=desc, disable=not self.progress, leave=False):
            patches, positions, _, _ = tile_image(
                self.dataset.images[i].path, self.config.patch_size, grid
            )
            out_bags.append((patches, positions))
        return out_bags

    def val_scores(self, path: Path) -> np.ndarray:
        """The file's scores of the validation (check) images."""
        return onnx_scores(path, self.iter_bags(self.val_idx))


@dataclass
class _Int8Options:
    calibration_images: int
    reduce_range: bool
    fp32_first_convs: int
    max_auc_drop: float
    threshold: str
    distil_images: int
    stream_chunk: int


@dataclass
class _Fp32:
    plain: Path  # one trunk pass over the bag: what quantization sees
    path: Path  # the shipped (streamed) file
    max_diff: float
    scores: np.ndarray


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    name: str | None = None,
    checkpoint: str = "best",
    tol: float = 1e-4,
    max_auc_drop: float = 0.005,
    calibration_images: int = 64,
    max_check_images: int = 0,
    int8: bool = True,
    reduce_range: bool = True,
    fp32_first_convs: int = 0,
    stream_chunk: int = 1,
    reason_thresholds: dict[str, float] | None = None,
    int8_threshold: str = "fp32",
    int8_distil_images: int = 0,
    model_version: str | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export a run (evaluating it first when ``eval/report.json`` is missing).

    ``int8_threshold``: ``"fp32"`` gives the int8 file the fp32 model's Youden threshold;
    ``"youden"`` chooses its own on its validation scores (the check images), for when
    quantisation shifts the scores enough to move the operating point.

    ``stream_chunk``: patches per trunk pass in the shipped graphs (0: one pass over the bag).
    ``reason_thresholds``: per-reason decision thresholds (from ``reason-f1 --tune-on val``)
    folded into the reason outputs, so that the app's 0.5 cut-off applies each one.
    ``int8_distil_images``: > 0 gives the int8 file a head distilled on that many training
    images' int8 descriptors (:mod:`model_export.training.distil`), kept only when it brings
    the int8 scores closer to fp32's on validation (no labels involved).
    ``model_version``: the version written into the files (default: the run config's), for a
    re-export that changes the shipped files but not the trained weights.
    """
    if int8_threshold not in ("fp32", "youden"):
        raise ValueError(f"int8_threshold must be 'fp32' or 'youden', not {int8_threshold!r}")
    run = _load_run(
        Path(run_dir), checkpoint, model_version, reason_thresholds, max_check_images, progress
    )
    name = name or run.config.model_name
    out = Path(out_dir) if out_dir else Path(run_dir) / "export"
    out.mkdir(parents=True, exist_ok=True)
    options = _Int8Options(
        calibration_images,
        reduce_range,
        fp32_first_convs,
        max_auc_drop,
        int8_threshold,
        int8_distil_images,
        stream_chunk,
    )
    with tempfile.TemporaryDirectory(dir=out) as tmp_name:
        tmp = Path(tmp_name)
        fp32 = _export_fp32(run, tmp / f"{name}-fp32.onnx", stream_chunk, tol)
        auc_fp32 = roc_auc(run.labels, fp32.scores)
        extra: dict[str, Any] = {
            "onnx_vs_torch_max_abs_diff": fp32.max_diff,
            "val_auc_onnx_fp32": auc_fp32,
            "trunk_patches_per_pass": stream_chunk,  # 0: the whole bag in one pass
        }
        if reason_thresholds:
            extra["reason_thresholds"] = dict(reason_thresholds)
        int8_file: tuple[Path, np.ndarray, float] | None = None
        if int8:
            int8_file = _export_int8(run, tmp / f"{name}-int8.onnx", fp32, options, extra)
        meta = _write_files(run, out, name, fp32, int8_file, extra)
    return ExportResult(
        fp32_path=out / f"{name}-fp32.onnx",
        int8_path=(out / f"{name}-int8.onnx") if int8 else None,
        card_path=out / f"{name}-model-card.md",
        torch_path=out / f"{name}-torch.pt",
        max_abs_diff=fp32.max_diff,
        auc_fp32=auc_fp32,
        auc_int8=extra.get("val_auc_onnx_int8"),
        meta=meta,
    )


def _load_run(
    run_dir: Path,
    checkpoint: str,
    model_version: str | None,
    reason_thresholds: dict[str, float] | None,
    max_check_images: int,
    progress: bool,
) -> _Run:
    """The checkpoint, its evaluation report (re-evaluated when missing or for another
    checkpoint), the model and the check images."""
    payload = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    if model_version:
        payload = {**payload, "config": {**payload["config"], "model_version": model_version}}
    config = TrainConfig.from_dict(payload["config"])
    report_path = run_dir / "eval" / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        if report.get("checkpoint") != checkpoint or report.get("epoch") != payload["epoch"]:
            logger.info("evaluation report is for another checkpoint; re-evaluating")
            report = evaluate_run(run_dir, checkpoint, progress=progress)
    else:
        report = evaluate_run(run_dir, checkpoint, progress=progress)
    model = model_from_checkpoint(payload).cpu().eval()
    if reason_thresholds:
        fold_reason_thresholds(model, payload["reason_names"], reason_thresholds)
    dataset = load_eval_dataset(run_dir, config, payload["reason_names"], [])
    val_idx = dataset.split_indices("val")
    if not val_idx:
        raise TrainingError("the run has no validation images to check the export on")
    if max_check_images > 0:
        val_idx = val_idx[:max_check_images]
    train_idx = dataset.split_indices("train")
    return _Run(payload, config, report, model, dataset, val_idx, train_idx, progress)


def _export_fp32(run: _Run, path: Path, stream_chunk: int, tol: float) -> _Fp32:
    """The fp32 file (streamed when asked, float16-exact weights stored as float16), checked
    against PyTorch; with its validation scores."""
    plain = path.with_name("plain-fp32.onnx")
    export_onnx(
        run.model, run.config.patch_size, plain, build_meta(run.payload, run.report, "fp32", {})
    )
    if stream_chunk > 0:
        write_streamed(plain, path, stream_chunk)
    else:
        shutil.copyfile(plain, path)
    saved = store_exact_fp16_weights(path)
    logger.info("fp32 file: %.1f MB of float16-exact weights stored as float16", saved / 1e6)
    check_bags = run.bags(run.val_idx[:4]) + run.bags(run.val_idx[:2], "live")
    max_diff = compare_with_torch(run.model, path, check_bags)
    logger.info("ONNX fp32 vs PyTorch: max abs difference %.2e (tolerance %.0e)", max_diff, tol)
    if not max_diff <= tol:
        raise ExportCheckError(
            f"ONNX fp32 differs from PyTorch by {max_diff:.3g} (> {tol:g}); not written"
        )
    return _Fp32(plain, path, max_diff, run.val_scores(path))


def _export_int8(
    run: _Run, path: Path, fp32: _Fp32, options: _Int8Options, extra: dict[str, Any]
) -> tuple[Path, np.ndarray, float]:
    """The int8 file, checked against fp32's validation AUC; records its checks in ``extra``.
    Returns its path, validation scores and threshold."""
    cal_idx = (run.train_idx or run.val_idx)[: options.calibration_images]
    calibration = run.bags(cal_idx)

    def build_int8(fp32_source: Path, target: Path) -> str:
        """Quantize ``fp32_source`` into ``target`` (streamed when asked); returns the name of
        its descriptor tensor."""
        quantize_int8(
            fp32_source,
            target,
            calibration,
            reduce_range=options.reduce_range,
            fp32_first_convs=options.fp32_first_convs,
        )
        descriptor = find_trunk_output(onnx.load(str(target)))
        if options.stream_chunk > 0:
            write_streamed(target, target, options.stream_chunk)
        return descriptor

    descriptor = build_int8(fp32.plain, path)
    scores_int8 = run.val_scores(path)
    if options.distil_images > 0:
        scores_int8, extra["int8_head_distillation"] = _distil_int8(
            run, path, descriptor, build_int8, calibration[0], fp32.scores, scores_int8, options
        )
    auc_fp32 = extra["val_auc_onnx_fp32"]
    auc_int8 = roc_auc(run.labels, scores_int8)
    drop = auc_fp32 - auc_int8
    score_diff = difference_stats(fp32.scores, scores_int8)["max"]
    logger.info(
        "validation AUC fp32 %.4f, int8 %.4f (drop %.4f, allowed %.4f); max |diff| %.4f",
        auc_fp32,
        auc_int8,
        drop,
        options.max_auc_drop,
        score_diff,
    )
    if math.isnan(drop) or drop > options.max_auc_drop:
        raise ExportCheckError(
            f"int8 validation AUC {auc_int8:.4f} is {drop:.4f} below fp32 {auc_fp32:.4f} "
            f"(allowed {options.max_auc_drop}); int8 model not written"
        )
    extra.update(
        val_auc_onnx_int8=auc_int8,
        int8_max_abs_score_diff=score_diff,
        int8_calibration_images=len(cal_idx),
        int8_max_auc_drop=options.max_auc_drop,
        int8_settings={
            "format": "QDQ, per-channel int8 weights, uint8 activations, convs only",
            "reduce_range": options.reduce_range,
            "calibration": "min-max",
            "fp32_first_convs": options.fp32_first_convs,
        },
    )
    labels = run.labels
    threshold_fp32 = float(run.report["threshold"]["value"])
    threshold_int8 = threshold_fp32
    if options.threshold == "youden":
        threshold_int8, _ = youden_threshold(labels, scores_int8)
        extra["int8_threshold"] = int8_operating_point(labels, scores_int8, threshold_int8)
    extra["int8_decision_agreement"] = decision_agreement(
        labels, fp32.scores >= threshold_fp32, scores_int8 >= threshold_int8
    )
    return path, scores_int8, threshold_int8


def _distil_int8(
    run: _Run,
    int8_path: Path,
    descriptor: str,
    build_int8: Callable[[Path, Path], str],
    calibration_bag: Bag,
    scores_fp32: np.ndarray,
    scores_int8: np.ndarray,
    options: _Int8Options,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Distil the head on the int8 trunk's descriptors and adopt it (replacing ``int8_path``)
    when it brings the validation scores closer to fp32's. Returns the int8 file's validation
    scores and what to record."""
    student, info = distil_int8_head(
        run.model,
        int8_path,
        descriptor,
        run.config,
        [run.dataset.images[i].path for i in run.train_idx],
        options.distil_images,
        progress=run.progress,
    )
    tmp = int8_path.parent
    distilled_fp32 = tmp / "distilled-fp32.onnx"
    meta = build_meta(run.payload, run.report, "fp32", {})
    export_onnx(
        PatchMILQualityNet(student, run.model.trunk), run.config.patch_size, distilled_fp32, meta
    )
    distilled = tmp / "distilled-int8.onnx"
    build_int8(distilled_fp32, distilled)
    # Same calibration, same trunk: the quantized trunk should be identical, so that the head
    # meets the descriptors it was distilled on.
    patches, positions = calibration_bag
    desc_distilled = descriptor_function(distilled, descriptor)(patches, positions)
    desc_plain = descriptor_function(int8_path, descriptor)(patches, positions)
    info["trunk_max_abs_diff"] = float(np.max(np.abs(desc_distilled - desc_plain)))
    scores_distilled = run.val_scores(distilled)
    before = difference_stats(scores_fp32, scores_int8)
    after = difference_stats(scores_fp32, scores_distilled)
    adopted = after["rms"] < before["rms"]
    info.update(validation_before=before, validation_after=after, adopted=adopted)
    logger.info(
        "int8 head distillation: validation rms score gap %.4f -> %.4f (max %.3f -> %.3f); %s",
        before["rms"],
        after["rms"],
        before["max"],
        after["max"],
        "adopted" if adopted else "not adopted (no smaller gap)",
    )
    if adopted:
        shutil.move(str(distilled), int8_path)
        return scores_distilled, info
    return scores_int8, info


def _write_files(
    run: _Run,
    out: Path,
    name: str,
    fp32: _Fp32,
    int8_file: tuple[Path, np.ndarray, float] | None,
    extra: dict[str, Any],
) -> ModelMeta:
    """Metadata into both files, ``NAME-torch.pt`` and the card beside them, then everything
    moved from the temporary folder into ``out``. Returns the fp32 file's metadata."""
    meta = build_meta(run.payload, run.report, "fp32", extra)
    set_metadata(fp32.path, meta)
    check_bags = run.bags(run.val_idx[:2])
    seam = is_streamed(onnx.load(str(fp32.path)))  # a one-pass trunk cannot take a seam
    if seam:
        meta = _open_seam_checked(fp32.path, check_bags)
    written = [fp32.path]
    if int8_file is not None:
        int8_path, scores_int8, threshold_int8 = int8_file
        cohorts = [run.dataset.images[i].cohort for i in run.val_idx]
        set_metadata(
            int8_path, int8_meta(meta, extra, run.labels, scores_int8, threshold_int8, cohorts)
        )
        if seam:
            _open_seam_checked(int8_path, check_bags)
        written.append(int8_path)
    tmp = fp32.path.parent
    written.append(_save_torch(run.payload, tmp / f"{name}-torch.pt"))
    card = tmp / f"{name}-model-card.md"
    card.write_text(model_card(meta, run.report, run.payload, extra, name), encoding="utf-8")
    written.append(card)
    for f in written:
        shutil.move(str(f), out / f.name)
    return meta


def _open_seam_checked(path: Path, bags: list[Bag]) -> ModelMeta:
    """Open the trunk/head seam of the streamed file ``path`` (metadata schema 2) and check that
    the app's engine, splitting each bag over two sessions, gives the scores of the file in one
    piece."""
    from desktop_app.core.inference import QualityEngine

    before = onnx_scores(path, bags)
    descriptor = find_descriptor(onnx.load(str(path)))
    meta = seam_model_file(path, path, descriptor, DESCRIPTOR_DIM)
    engine = QualityEngine(path, providers="cpu", intra_op_threads=2)
    after = np.array([float(engine.run_patches(p, q)[0][0]) for p, q in bags])
    worst = float(np.max(np.abs(after - before))) if len(bags) else 0.0
    if not (engine.splits_bags and worst <= 1e-5):
        raise ExportCheckError(
            f"{path.name} with its trunk/head seam differs by {worst:.3g} when split "
            f"(split: {engine.splits_bags}); not written"
        )
    return meta


def _save_torch(payload: dict[str, Any], path: Path) -> Path:
    """``NAME-torch.pt``: head weights and architecture, for the PyTorch benchmark."""
    torch.save(
        {
            "head_kwargs": payload["head_kwargs"],
            "head_state": payload["head_state"],
            "trunk_state": payload.get("trunk_state"),
            "config": payload["config"],
        },
        path,
    )
    return path
