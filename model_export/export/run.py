"""``skin-capture-model export``: ONNX fp32 + int8 carrying the model contract, with checks.

1. fp32: ``torch.onnx.export`` of :class:`PatchMILQualityNet` (opset 17, dynamic N) with the
   :class:`ModelMeta` JSON under ``metadata_props``; onnxruntime outputs are compared with PyTorch
   on real validation images at both grids (max abs difference over all outputs <= ``tol``).
2. int8: ``onnxruntime.quantization.quantize_static``, QDQ, per-channel int8 weights, uint8
   activations, calibrated on real training-image patches cut by the shared tiling. Only the
   convolutions are quantized (>99 % of the compute); the small head (attention softmax, CORAL
   thresholds) stays fp32. Its validation AUC must be within ``max_auc_drop`` of fp32's.
3. Both graphs are then rewritten so that the trunk runs one patch at a time inside an ONNX
   ``Loop`` (:mod:`model_export.model.streaming`;
   same inputs, outputs and arithmetic, a fraction of the
   activation memory); every check above runs on the rewritten files that are shipped.
4. A model card (Markdown) and ``NAME-torch.pt`` (head weights + architecture, for
   ``model_export.bench.bench_torch``).

A model that fails a check is not written (the files are built in a temporary folder and only
moved into place when every check passed).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from desktop_app.core.model_meta import (
    METADATA_KEY,
    DecisionSpec,
    GraphIO,
    InputSpec,
    ModelMeta,
    OrdinalSpec,
)
from model_export.config import TrainConfig
from model_export.evaluation.evaluate import (
    evaluate_run,
    load_eval_dataset,
    threshold_interval_text,
)
from model_export.metrics import confusion_at, roc_auc, youden_threshold
from model_export.model.features import tile_image
from model_export.model.network import PatchMILQualityNet, QualityHead
from model_export.model.streaming import descriptor_session, find_trunk_output, write_streamed
from model_export.training.distil import DistilBag, distil_head, score_gap
from model_export.training.train import (
    TrainingError,
    load_checkpoint,
    make_cache,
    model_from_checkpoint,
)

logger = logging.getLogger(__name__)

OPSET = 17
NORMALISATION_NOTE = (
    "RGB in [0, 1]; the Caffe/Keras preprocessing of the ImageNet VGG16 weights (BGR, 0-255, "
    "minus the mean [103.939, 116.779, 123.68]) is folded into the first convolution"
)


class ExportCheckError(RuntimeError):
    """An exported model failed a check and was not written."""


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


def build_meta(
    payload: dict[str, Any], report: dict[str, Any], precision: str, extra_metrics: dict[str, Any]
) -> ModelMeta:
    """The contract record from the checkpoint and the evaluation report."""
    config = TrainConfig.from_dict(payload["config"])
    summary = payload["dataset_summary"]
    training_data = (
        f"{summary['images']} rated images ({summary['good']} good, {summary['poor']} poor; "
        f"cohorts {summary['cohorts']}; splits {summary['splits']}) from "
        + ", ".join(Path(s).name for s in summary["sources"])
    )
    metrics: dict[str, Any] = {"threshold_method": report["threshold"]}
    for split, entry in report["splits"].items():
        if split == "train":
            continue
        m = entry["all"]
        metrics[split] = {
            "n": m["n"],
            **{
                key: {"value": m[key]["value"], "ci95": m[key]["ci95"]}
                for key in ("auc", "sensitivity", "specificity", "ppv", "npv")
            },
            "cohorts": {
                c: {"n": cm["n"], "auc": cm["auc"]["value"]} for c, cm in entry["cohorts"].items()
            },
        }
    metrics.update(extra_metrics)
    metrics["architecture"] = {
        "trunk": "VGG16-D conv, frozen"
        if config.trainable_blocks == 0
        else f"VGG16-D conv, last {config.trainable_blocks} block(s) fine-tuned",
        "pooling": config.pooling,
        "reason_pooling": config.reason_pooling,
        "ordinal": "CORAL",
        "embed_dim": config.embed_dim,
        "hidden_dim": config.hidden_dim,
    }
    return ModelMeta(
        model_name=config.model_name,
        model_version=config.model_version,
        created_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        training_data=training_data,
        input=InputSpec(normalisation_note=NORMALISATION_NOTE),
        tiling=config.tiling(),
        ordinal=OrdinalSpec(levels=tuple(config.levels), acceptable_level=config.acceptable_level),
        reason_names=tuple(payload["reason_names"]),
        decision=DecisionSpec(threshold=float(report["threshold"]["value"]), method="youden"),
        validation_metrics=_jsonable(metrics),
        precision=precision,
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


def output_names(n_reasons: int) -> list[str]:
    io = GraphIO()
    names = [io.output_score, io.output_level_probs, io.output_patch_scores, io.output_mil_weights]
    return [*names, io.output_reasons] if n_reasons else names


def export_onnx(model: PatchMILQualityNet, patch_size: int, path: Path, meta: ModelMeta) -> None:
    """fp32 graph of the contract: ``patches`` [N, 3, P, P], ``positions`` [N, 2]."""
    model = model.cpu().eval()
    io = GraphIO()
    names = output_names(model.head.n_reasons)
    gen = torch.Generator().manual_seed(0)
    dummy = (
        torch.rand(3, 3, patch_size, patch_size, generator=gen),
        torch.rand(3, 2, generator=gen) * 2 - 1,
    )
    dynamic: dict[str, dict[int, str]] = {
        io.input_patches: {0: "N"},
        io.input_positions: {0: "N"},
        io.output_patch_scores: {0: "N"},
        io.output_mil_weights: {0: "N"},
    }
    torch.onnx.export(
        model,
        dummy,
        str(path),
        input_names=[io.input_patches, io.input_positions],
        output_names=names,
        dynamic_axes=dynamic,
        opset_version=OPSET,
        dynamo=False,
    )
    set_metadata(path, meta)


def set_metadata(path: Path, meta: ModelMeta) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    model.producer_name = "skin-capture-model"
    model.doc_string = f"{meta.model_name} {meta.model_version} ({meta.precision})"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def store_exact_fp16_weights(path: Path, min_elements: int = 1024) -> int:
    """Store each float32 weight of ``path`` whose values are all exact in float16 as float16,
    followed by a ``Cast`` back to float32; rewrites the file and returns the bytes saved.

    The frozen VGG16 weights come from a float16 file, so all but the first convolution (which
    has the input normalisation folded in) are exact: the file halves and onnxruntime folds the
    casts at load, so every result is bit-identical.
    """
    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    saved = 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = onnx.numpy_helper.to_array(init)
        if values.size < min_elements:
            continue
        halves = values.astype(np.float16)
        if not np.array_equal(halves.astype(np.float32), values):
            continue
        name = init.name
        init.CopyFrom(onnx.numpy_helper.from_array(halves, f"{name}__fp16"))
        casts.append(
            onnx.helper.make_node(
                "Cast", [f"{name}__fp16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}__cast"
            )
        )
        saved += values.nbytes - halves.nbytes
    if casts:
        nodes = casts + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return saved


def _session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads > 0:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_with_torch(
    model: PatchMILQualityNet, onnx_path: Path, bags: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    """Max abs difference over every output between onnxruntime and PyTorch on ``bags``."""
    session = _session(onnx_path)
    names = output_names(model.head.n_reasons)
    worst = 0.0
    with torch.inference_mode():
        for patches, positions in bags:
            expected = model(torch.from_numpy(patches), torch.from_numpy(positions))
            got = session.run(names, {"patches": patches, "positions": positions})
            for e, g in zip(expected, got, strict=True):
                worst = max(worst, float(np.max(np.abs(e.numpy() - g))))
    return worst


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


def fold_reason_thresholds(
    model: PatchMILQualityNet, reason_names: list[str], thresholds: dict[str, float]
) -> None:
    """Shift each reason's logit by -logit(t_r): the exported output is then >= 0.5 exactly when
    the trained probability is >= t_r (the app decides at 0.5). Reasons not named keep 0.5."""
    head = model.head.reason_head
    unknown = set(thresholds) - set(reason_names)
    if head is None or unknown:
        raise ExportCheckError(f"reason thresholds for unknown reasons: {sorted(unknown)}")
    with torch.no_grad():
        for i, name in enumerate(reason_names):
            t = float(thresholds.get(name, 0.5))
            if not 0.0 < t < 1.0:
                raise ExportCheckError(f"reason threshold for {name} must be in (0, 1), not {t}")
            head.bias[i] -= math.log(t / (1.0 - t))


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


def onnx_scores(path: Path, bags: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The ``score`` output for each (patches, positions) bag."""
    session = _session(path)
    return np.array(
        [float(session.run(["score"], {"patches": p, "positions": q})[0][0]) for p, q in bags]
    )


def descriptor_function(
    path: Path, descriptor: str
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(patches ``[N, 3, P, P]``, positions ``[N, 2]``) -> the trunk's descriptors ``[N, D]``,
    exactly as the model file ``path`` computes them (its tensor ``descriptor``)."""
    session = descriptor_session(onnx.load(str(path)), descriptor)

    def descriptors(patches: np.ndarray, positions: np.ndarray) -> np.ndarray:
        feeds = {"patches": patches, "positions": positions}
        return np.asarray(session.run([descriptor], feeds)[0], np.float32)

    return descriptors


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


def _difference_stats(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """rms and largest |other - reference| of two score vectors ``[M]``."""
    gap = np.abs(other - reference)
    return {"rms": float(np.sqrt(np.mean(gap**2))), "max": float(gap.max())}


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
    the int8
    scores closer to fp32's on validation (no labels involved).
    ``model_version``: the version written into the files (default: the run config's), for a
    re-export that changes the shipped files but not the trained weights.
    """
    from tqdm import tqdm

    if int8_threshold not in ("fp32", "youden"):
        raise ValueError(f"int8_threshold must be 'fp32' or 'youden', not {int8_threshold!r}")
    run_dir = Path(run_dir)
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
    name = name or config.model_name
    out = Path(out_dir) if out_dir else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    model = model_from_checkpoint(payload).cpu().eval()
    if reason_thresholds:
        fold_reason_thresholds(model, payload["reason_names"], reason_thresholds)
    dataset = load_eval_dataset(run_dir, config, payload["reason_names"], [])
    val_idx = dataset.split_indices("val")
    train_idx = dataset.split_indices("train")
    if not val_idx:
        raise TrainingError("the run has no validation images to check the export on")
    if max_check_images > 0:
        val_idx = val_idx[:max_check_images]
    labels = dataset.labels()[val_idx]
    tiling = config.tiling()

    def iter_bags(indices: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Tiled lazily, so a large validation split is never held in memory at once."""
        for i in tqdm(indices, desc="scoring", disable=not progress, leave=False):
            patches, positions, _, _ = tile_image(
                dataset.images[i].path, config.patch_size, tiling.capture
            )
            yield patches, positions

    def bags_for(
        indices: list[int], grid_name: str = "capture"
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        grid = tiling.capture if grid_name == "capture" else tiling.live
        out_bags = []
        for i in tqdm(indices, desc=f"tiling ({grid_name})", disable=not progress, leave=False):
            patches, positions, _, _ = tile_image(dataset.images[i].path, config.patch_size, grid)
            out_bags.append((patches, positions))
        return out_bags

    with tempfile.TemporaryDirectory(dir=out) as tmp_name:
        tmp = Path(tmp_name)
        fp32_tmp = tmp / f"{name}-fp32.onnx"
        fp32_plain = tmp / "plain-fp32.onnx"  # one trunk pass over the bag: what quantization sees
        meta = build_meta(payload, report, "fp32", {})
        export_onnx(model, config.patch_size, fp32_plain, meta)
        if stream_chunk > 0:
            write_streamed(fp32_plain, fp32_tmp, stream_chunk)
        else:
            shutil.copyfile(fp32_plain, fp32_tmp)
        saved = store_exact_fp16_weights(fp32_tmp)
        logger.info("fp32 file: %.1f MB of float16-exact weights stored as float16", saved / 1e6)
        check_bags = bags_for(val_idx[:4]) + bags_for(val_idx[:2], "live")
        max_diff = compare_with_torch(model, fp32_tmp, check_bags)
        logger.info("ONNX fp32 vs PyTorch: max abs difference %.2e (tolerance %.0e)", max_diff, tol)
        if not max_diff <= tol:
            raise ExportCheckError(
                f"ONNX fp32 differs from PyTorch by {max_diff:.3g} (> {tol:g}); not written"
            )
        scores_fp32 = onnx_scores(fp32_tmp, iter_bags(val_idx))
        auc_fp32 = roc_auc(labels, scores_fp32)
        extra: dict[str, Any] = {
            "onnx_vs_torch_max_abs_diff": max_diff,
            "val_auc_onnx_fp32": auc_fp32,
            "trunk_patches_per_pass": stream_chunk,  # 0: the whole bag in one pass
        }
        if reason_thresholds:
            extra["reason_thresholds"] = dict(reason_thresholds)
        int8_tmp: Path | None = None
        auc_int8: float | None = None
        if int8:
            cal_idx = (train_idx or val_idx)[:calibration_images]
            calibration = bags_for(cal_idx)

            def build_int8(fp32_source: Path, target: Path) -> str:
                """Quantize ``fp32_source`` into ``target`` (streamed when asked); returns the
                name of its descriptor tensor."""
                quantize_int8(
                    fp32_source,
                    target,
                    calibration,
                    reduce_range=reduce_range,
                    fp32_first_convs=fp32_first_convs,
                )
                descriptor = find_trunk_output(onnx.load(str(target)))
                if stream_chunk > 0:
                    write_streamed(target, target, stream_chunk)
                return descriptor

            int8_tmp = tmp / f"{name}-int8.onnx"
            descriptor = build_int8(fp32_plain, int8_tmp)
            scores_int8 = onnx_scores(int8_tmp, iter_bags(val_idx))
            if int8_distil_images > 0:
                student, distil_info = distil_int8_head(
                    model,
                    int8_tmp,
                    descriptor,
                    config,
                    [dataset.images[i].path for i in train_idx],
                    int8_distil_images,
                    progress=progress,
                )
                export_onnx(
                    PatchMILQualityNet(student, model.trunk),
                    config.patch_size,
                    tmp / "distilled-fp32.onnx",
                    meta,
                )
                distilled = tmp / "distilled-int8.onnx"
                build_int8(tmp / "distilled-fp32.onnx", distilled)
                # Same calibration, same trunk: the quantized trunk should be identical, so that the
                # head meets the descriptors it was distilled on.
                patches, positions = calibration[0]
                desc_distilled = descriptor_function(distilled, descriptor)(patches, positions)
                desc_plain = descriptor_function(int8_tmp, descriptor)(patches, positions)
                trunk_diff = float(np.max(np.abs(desc_distilled - desc_plain)))
                distil_info["trunk_max_abs_diff"] = trunk_diff
                scores_distilled = onnx_scores(distilled, iter_bags(val_idx))
                before = _difference_stats(scores_fp32, scores_int8)
                after = _difference_stats(scores_fp32, scores_distilled)
                adopted = after["rms"] < before["rms"]
                distil_info.update(
                    validation_before=before, validation_after=after, adopted=adopted
                )
                logger.info(
                    "int8 head distillation: validation rms score gap %.4f -> %.4f (max %.3f -> "
                    "%.3f); %s",
                    before["rms"],
                    after["rms"],
                    before["max"],
                    after["max"],
                    "adopted" if adopted else "not adopted (no smaller gap)",
                )
                if adopted:
                    shutil.move(str(distilled), int8_tmp)
                    scores_int8 = scores_distilled
                extra["int8_head_distillation"] = distil_info
            auc_int8 = roc_auc(labels, scores_int8)
            drop = auc_fp32 - auc_int8
            score_diff = _difference_stats(scores_fp32, scores_int8)["max"]
            logger.info(
                "validation AUC fp32 %.4f, int8 %.4f (drop %.4f, allowed %.4f); max |diff| %.4f",
                auc_fp32,
                auc_int8,
                drop,
                max_auc_drop,
                score_diff,
            )
            if math.isnan(drop) or drop > max_auc_drop:
                raise ExportCheckError(
                    f"int8 validation AUC {auc_int8:.4f} is {drop:.4f} below fp32 {auc_fp32:.4f} "
                    f"(allowed {max_auc_drop}); int8 model not written"
                )
            extra.update(
                val_auc_onnx_int8=auc_int8,
                int8_max_abs_score_diff=score_diff,
                int8_calibration_images=len(cal_idx),
                int8_max_auc_drop=max_auc_drop,
                int8_settings={
                    "format": "QDQ, per-channel int8 weights, uint8 activations, convs only",
                    "reduce_range": reduce_range,
                    "calibration": "min-max",
                    "fp32_first_convs": fp32_first_convs,
                },
            )
            threshold_fp32 = float(report["threshold"]["value"])
            threshold_int8 = threshold_fp32
            if int8_threshold == "youden":
                threshold_int8, _ = youden_threshold(labels, scores_int8)
                extra["int8_threshold"] = int8_operating_point(labels, scores_int8, threshold_int8)
            extra["int8_decision_agreement"] = decision_agreement(
                labels, scores_fp32 >= threshold_fp32, scores_int8 >= threshold_int8
            )
        meta = build_meta(payload, report, "fp32", extra)
        set_metadata(fp32_tmp, meta)
        if int8_tmp is not None:
            int8_meta = replace(meta, precision="int8")
            if "int8_threshold" in extra:
                decision = replace(
                    meta.decision,
                    threshold=extra["int8_threshold"]["value"],
                    method="youden on the int8 file's validation scores",
                )
                int8_meta = replace(int8_meta, decision=decision)
            set_metadata(int8_tmp, int8_meta)
        torch_tmp = tmp / f"{name}-torch.pt"
        torch.save(
            {
                "head_kwargs": payload["head_kwargs"],
                "head_state": payload["head_state"],
                "trunk_state": payload.get("trunk_state"),
                "config": payload["config"],
            },
            torch_tmp,
        )
        card_tmp = tmp / f"{name}-model-card.md"
        card_tmp.write_text(model_card(meta, report, payload, extra, name), encoding="utf-8")
        for f in (fp32_tmp, int8_tmp, torch_tmp, card_tmp):
            if f is not None:
                shutil.move(str(f), out / f.name)
    return ExportResult(
        fp32_path=out / f"{name}-fp32.onnx",
        int8_path=(out / f"{name}-int8.onnx") if int8 else None,
        card_path=out / f"{name}-model-card.md",
        torch_path=out / f"{name}-torch.pt",
        max_abs_diff=max_diff,
        auc_fp32=auc_fp32,
        auc_int8=auc_int8,
        meta=meta,
    )


def _ci(metric: dict[str, Any]) -> str:
    lo, hi = metric["ci95"]
    value = metric["value"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f} ({lo:.3f}-{hi:.3f})"


KNOWN_LICENCES = {
    "dermnet": "DermNet NZ images: CC BY-NC-ND 3.0 NZ, used for non-commercial research "
    "(model development) only.",
    "fuseg": "FUSeg 2021 foot-ulcer images (AZH Wound and Vascular Center; Wang et al., Sci Rep "
    "2020): shared publicly for research.",
}


def data_licences(config: TrainConfig, summary: dict[str, Any]) -> list[str]:
    """Licence lines: the config's ``data_licences``, else those of recognised cohorts."""
    if config.data_licences:
        return list(config.data_licences)
    cohorts = " ".join(summary["cohorts"]).lower() + " ".join(summary["sources"]).lower()
    found = [text for key, text in KNOWN_LICENCES.items() if key in cohorts]
    return found or ["not stated: set data_licences in the training config"]


def model_card(
    meta: ModelMeta,
    report: dict[str, Any],
    payload: dict[str, Any],
    checks: dict[str, Any],
    file_stem: str | None = None,
) -> str:
    """Markdown model card: data, method, metrics with CIs, intended use, limits, licences."""
    config = TrainConfig.from_dict(payload["config"])
    summary = payload["dataset_summary"]
    t = report["threshold"]
    interval = threshold_interval_text(t)
    tiling = meta.tiling
    acceptable = meta.ordinal.levels[meta.ordinal.acceptable_level - 1]
    rows = []
    for split, entry in report["splits"].items():
        for cohort, m in [("all", entry["all"]), *entry["cohorts"].items()]:
            cells = [split, cohort, f"{m['n']} ({m['n_good']}/{m['n_poor']})"]
            cells += [_ci(m[k]) for k in ("auc", "sensitivity", "specificity", "ppv", "npv")]
            rows.append("| " + " | ".join(cells) + " |")
    if config.weights == "random":
        weights_text = "RANDOM initialisation (a test model: not for use)"
    else:
        weights_text = (
            f"ImageNet weights from {Path(config.weights).name}, their normalisation folded "
            "into the first convolution (input RGB [0, 1])"
        )
    trunk_text = (
        "frozen"
        if config.trainable_blocks == 0
        else f"last {config.trainable_blocks} block(s) fine-tuned"
    )
    licence_lines = [f"- {line}" for line in data_licences(config, summary)]
    if "val_auc_onnx_int8" in checks:
        int8_line = (
            f"- int8 vs fp32 validation AUC: {checks['val_auc_onnx_int8']:.4f} vs "
            f"{checks['val_auc_onnx_fp32']:.4f} (largest drop allowed "
            f"{checks['int8_max_auc_drop']}); max |score difference| "
            f"{checks['int8_max_abs_score_diff']:.4f}; calibrated on "
            f"{checks['int8_calibration_images']} training images; settings "
            f"{checks['int8_settings']}."
        )
    else:
        int8_line = "- no int8 model was exported."
    per_pass = int(checks.get("trunk_patches_per_pass", 0))
    own = checks.get("int8_threshold")
    if own:
        int8_line += (
            f"\n- the int8 file's own threshold: {own['value']:.4f} (Youden on its scores of "
            f"{own['n']} validation images; the fp32 file keeps {meta.decision.threshold:.4f}): "
            f"sensitivity {own['sensitivity']:.3f}, specificity {own['specificity']:.3f}, "
            f"PPV {own['ppv']:.3f}, NPV {own['npv']:.3f} there."
        )
    agreement = checks.get("int8_decision_agreement")
    if agreement:
        int8_line += (
            f"\n- decisions: the int8 file at its threshold decides as the fp32 model at its own "
            f"on {agreement['same']} of {agreement['n']} validation images "
            f"({agreement['share']:.1%}); it accepts {agreement['int8_only_accepts']} that fp32 "
            f"rejects ({agreement['int8_only_accepts_poor']} of them poor) and rejects "
            f"{agreement['int8_only_rejects']} that fp32 accepts "
            f"({agreement['int8_only_rejects_good']} of them good)."
        )
    distil = checks.get("int8_head_distillation")
    if distil:
        before, after = distil["validation_before"], distil["validation_after"]
        int8_line += (
            f"\n- int8 head distillation: a copy of the head fine-tuned on the int8 trunk's "
            f"descriptors of {distil['images']} training images to reproduce the fp32 head's "
            f"logits ({distil['epochs']} epochs, lr {distil['lr']:g}; no labels). Validation "
            f"score gap to fp32: rms {before['rms']:.4f} -> {after['rms']:.4f}, max "
            f"{before['max']:.3f} -> {after['max']:.3f}; "
            + (
                "the int8 file carries the distilled head."
                if distil["adopted"]
                else "not adopted (no smaller gap): the int8 file carries the fp32 head."
            )
        )
    tuned = checks.get("reason_thresholds")
    reason_line = (
        "- reason outputs: each reason's F1-best threshold on validation "
        f"({', '.join(f'{k} {v:.2f}' for k, v in tuned.items())}) is folded into its output, "
        "so 0.5 is every reason's decision point."
        if tuned
        else "- reason outputs: probabilities, decided at 0.5."
    )
    streaming_line = (
        f"- the trunk runs {per_pass} patch(es) per pass inside an ONNX Loop (same results, a "
        "fraction of the activation memory); the checks above ran on these files."
        if per_pass > 0
        else "- the trunk runs over the whole bag in one pass."
    )
    lines = [
        f"# Model card: {meta.model_name} {meta.model_version}",
        "",
        f"Created {meta.created_utc} by `skin-capture-model export`. Files: "
        f"`{file_stem or meta.model_name}-fp32.onnx`, `{file_stem or meta.model_name}-int8.onnx` "
        + (
            f"(same metadata, except precision and the int8 file's own threshold "
            f"{own['value']:.4f}), this card."
            if own
            else "(same metadata, precision differs), this card."
        ),
        "",
        "## Intended use",
        "",
        "Decide at the camera whether a skin photograph is good enough for remote "
        "(teledermatology) assessment, so that an unusable photo is retaken while the patient is "
        "still there. The score is the probability that a rater would call the photo at least "
        f'"{acceptable}" (level {meta.ordinal.acceptable_level} of {meta.ordinal.k}); **Submit** '
        f"is enabled when `score >= {meta.decision.threshold:.4f}` (Youden threshold chosen on "
        "the validation split"
        + (
            f"; the int8 file, which the app runs on a CPU, uses its own, {own['value']:.4f}"
            if own
            else ""
        )
        + "). It judges *capture quality* (focus, motion, exposure, colour, "
        "framing, distance, obstruction), **not** the disease: it is not a diagnostic device and "
        "must not be used to triage patients.",
        "",
        "## Data",
        "",
        f"{summary['images']} rated images: {summary['good']} good, {summary['poor']} poor "
        f"(label: majority of raters with rating >= {config.acceptable_level}; a tie goes by the "
        f"mean rating >= {config.acceptable_level}); cohorts {summary['cohorts']}; splits "
        f"{summary['splits']}; {summary['raters_per_image_mean']:.1f} raters per image on "
        f"average. Sources: {', '.join(summary['sources'])}. Reasons: "
        f"{', '.join(meta.reason_names) or 'none'}.",
        "",
        "Licences of the images (not redistributed with the model):",
        *licence_lines,
        "- VGG16 ImageNet weights: Keras Applications conversion of the Oxford VGG release "
        "(CC BY 4.0).",
        "",
        "A model trained on research-only images inherits their terms; a clinic deploying it "
        "should retrain or at least validate it on its own photos (CSV format in "
        "`model_export/README.md`).",
        "",
        "## Method",
        "",
        "- Tiling (outside the graph, shared with the app: `desktop_app/core/tiling.py`): the "
        f"image is scaled down (never up) to a long side of {tiling.capture.max_long_side} px "
        f"(capture) or {tiling.live.max_long_side} px (live preview) and covered edge to edge by "
        f"overlapping {tiling.patch_size}x{tiling.patch_size} patches (no padding, stretching or "
        "cropping); each patch's centre (x, y) in [-1, 1] is a second input.",
        f"- Trunk: VGG16 configuration D convolutions, {weights_text}; {trunk_text}. Patch "
        "descriptor: mean and standard deviation over space of each block's last ReLU output "
        "(2944 values).",
        f"- Head: MLP patch embedding ({config.hidden_dim} -> {config.embed_dim}), "
        f"{config.pooling} multiple-instance pooling, CORAL ordinal output over "
        f"{meta.ordinal.k} levels trained on the raters' empirical P(rating > k), per-patch "
        "scores (the same head on each patch), reason heads (BCE) on "
        + (
            "the MIL bag with the plain mean and maximum of the patch embeddings."
            if config.reason_pooling == "bag_mean_max"
            else "the MIL bag."
        ),
        f"- Training: epoch {payload['epoch']} of {config.epochs} selected by validation AUC; "
        f"AdamW lr {config.lr}, batch {config.batch_size}, seed {config.seed}.",
        "",
        "## Metrics",
        "",
        f"Threshold {t['value']:.4f} ({t['method']}, chosen on {t['chosen_on']}"
        + (
            f"; {interval}: where the threshold could land with another validation sample "
            "of the same size"
            if interval
            else ""
        )
        + "). Positive class "
        "= good photo. AUC: percentile bootstrap 95 % CI; other rates: Wilson 95 % CI. "
        "n = images (good/poor). Validation metrics are optimistic (epoch and threshold were "
        "chosen there).",
        "",
        "| split | cohort | n | AUC | sensitivity | specificity | PPV | NPV |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Export checks:",
        "- ONNX fp32 vs PyTorch, max abs difference over all outputs: "
        f"{checks['onnx_vs_torch_max_abs_diff']:.2e}.",
        int8_line,
        streaming_line,
        reason_line,
        "",
        "## Limits",
        "",
        "- Photos from other cameras, skin tones, body sites or lighting than the training data "
        "may score differently: validate on local photos before relying on the threshold.",
        "- The threshold balances sensitivity and specificity on the validation split; a clinic "
        "may prefer another operating point (fewer poor photos through, more retakes).",
        "- Patch scores and MIL weights show where the model looked, not a validated defect map.",
        "- Reason probabilities come from few labels; they are guidance, not measurements.",
        "",
    ]
    return "\n".join(lines)


def quantize_trunk_int8_for_speed(fp32_path: Path, int8_path: Path, patches: np.ndarray) -> None:
    """int8 QDQ copy of a trunk-only ONNX (input ``patches``), for speed measurements: the same
    recipe as the shipped int8 model."""
    _quantize_convs_qdq(fp32_path, int8_path, [{"patches": patches}])
