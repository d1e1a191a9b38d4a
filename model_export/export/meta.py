"""The metadata (model contract) record of the exported files, from the checkpoint and the
evaluation report; the int8 file's, with the validation metrics measured on the int8 file."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from desktop_app.core.model_meta import DecisionSpec, InputSpec, ModelMeta, OrdinalSpec
from model_export.config import TrainConfig
from model_export.metrics import binary_report, roc_auc

MEASURED_ON_FP32 = (
    "the trained PyTorch model (fp32), before export; the fp32 file reproduces it within the "
    "export tolerance"
)


NORMALISATION_NOTE = (
    "RGB in [0, 1]; the Caffe/Keras preprocessing of the ImageNet VGG16 weights (BGR, 0-255, "
    "minus the mean [103.939, 116.779, 123.68]) is folded into the first convolution"
)


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
            "measured_on": MEASURED_ON_FP32,
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


def int8_meta(
    meta: ModelMeta,
    extra: dict[str, Any],
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    cohorts: Sequence[str],
    n_boot: int = 2000,
) -> ModelMeta:
    """The int8 file's record: ``meta`` (the fp32 file's) with precision int8, the int8 file's
    own threshold when it has one, and its ``val`` metrics measured on its own scores of the
    check images (``labels``, ``scores``, ``cohorts`` ``[M]``) at ``threshold``. Any other split
    keeps fp32's numbers, labelled as such by its ``measured_on``."""
    metrics = copy.deepcopy(meta.validation_metrics)
    for entry in metrics.values():
        if isinstance(entry, dict) and entry.get("measured_on") == MEASURED_ON_FP32:
            entry["measured_on"] = MEASURED_ON_FP32 + " (not re-measured on the int8 file)"
    metrics["val"] = _int8_split_metrics(labels, scores, threshold, cohorts, n_boot)
    result = replace(meta, precision="int8", validation_metrics=_jsonable(metrics))
    if "int8_threshold" in extra:
        decision = replace(
            meta.decision,
            threshold=extra["int8_threshold"]["value"],
            method="youden on the int8 file's validation scores",
        )
        result = replace(result, decision=decision)
    return result


def _int8_split_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    cohorts: Sequence[str],
    n_boot: int,
) -> dict[str, Any]:
    """The ``val`` entry of :func:`build_meta`, from the int8 file's validation scores."""
    report = binary_report(labels, scores, threshold, n_boot=n_boot)
    names = np.asarray(cohorts)
    return {
        "n": report["n"],
        **{
            key: {"value": report[key]["value"], "ci95": report[key]["ci95"]}
            for key in ("auc", "sensitivity", "specificity", "ppv", "npv")
        },
        "cohorts": {
            c: {
                "n": int((names == c).sum()),
                "auc": roc_auc(labels[names == c], scores[names == c]),
            }
            for c in sorted(set(names.tolist()))
        },
        "threshold": float(threshold),
        "measured_on": f"this int8 file (onnxruntime), {report['n']} validation images",
    }
