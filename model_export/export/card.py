"""The model card (Markdown) written beside the exported files."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from desktop_app.core.model_meta import ModelMeta
from model_export.config import REPO_ROOT, TrainConfig
from model_export.evaluation.evaluate import threshold_interval_text


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


def _int8_lines(meta: ModelMeta, checks: dict[str, Any]) -> str:
    """The export checks' int8 bullet points."""
    if "val_auc_onnx_int8" in checks:
        int8_line = (
            f"- int8 vs fp32 validation AUC: {checks['val_auc_onnx_int8']:.4f} vs "
            f"{checks['val_auc_onnx_fp32']:.4f} (largest drop allowed "
            f"{checks['int8_max_auc_drop']}); max |score difference| "
            f"{checks['int8_max_abs_score_diff']:.4f}; calibrated on "
            f"{checks['int8_calibration_images']} training images; settings "
            f"{checks['int8_settings']}."
            "\n- the int8 file's metadata carries validation metrics measured on the int8 file "
            "itself (its `val` entry); the table above is the PyTorch fp32 model's."
        )
    else:
        int8_line = "- no int8 model was exported."
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
    return int8_line


def _reason_and_streaming_lines(checks: dict[str, Any]) -> tuple[str, str]:
    per_pass = int(checks.get("trunk_patches_per_pass", 0))
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
    return reason_line, streaming_line


def _intended_use(meta: ModelMeta, file_stem: str | None, own: dict[str, Any] | None) -> list[str]:
    """Title, files and intended use."""
    acceptable = meta.ordinal.levels[meta.ordinal.acceptable_level - 1]
    return [
        f"# Model card: {meta.model_name} {meta.model_version}",
        "",
        f"Created {meta.created_utc} by `skin-capture-model export`. Files: "
        f"`{file_stem or meta.model_name}-fp32.onnx`, `{file_stem or meta.model_name}-int8.onnx` "
        + (
            f"(same metadata, except precision, the int8 file's own threshold "
            f"{own['value']:.4f} and its validation metrics, measured on it), this card."
            if own
            else "(same metadata, except precision and the int8 file's validation metrics, "
            "measured on it), this card."
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
    ]


def _data_section(meta: ModelMeta, config: TrainConfig, summary: dict[str, Any]) -> list[str]:
    """Data and licences (paths relative to the repository)."""
    sources = ", ".join(portable_path(source) for source in summary["sources"])
    licence_lines = [f"- {line}" for line in data_licences(config, summary)]
    return [
        "## Data",
        "",
        f"{summary['images']} rated images: {summary['good']} good, {summary['poor']} poor "
        f"(label: majority of raters with rating >= {config.acceptable_level}; a tie goes by the "
        f"mean rating >= {config.acceptable_level}); cohorts {summary['cohorts']}; splits "
        f"{summary['splits']}; {summary['raters_per_image_mean']:.1f} raters per image on "
        f"average. Sources: {sources}. Reasons: "
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
    ]


def _method_section(meta: ModelMeta, config: TrainConfig, payload: dict[str, Any]) -> list[str]:
    """Tiling, trunk, head and training."""
    tiling = meta.tiling
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
    return [
        "## Method",
        "",
        "- Tiling (outside the graph, shared with the app: `desktop_app/core/tiling.py`): the "
        f"image is scaled down (never up) to a long side of {tiling.capture.max_long_side} px "
        f"(capture) or {tiling.live.max_long_side} px (live preview)"
        + (
            f", and its short side to at most {tiling.capture.max_short_side} px,"
            if tiling.capture.max_short_side is not None
            else ""
        )
        + " and covered edge to edge by "
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
    ]


def _metrics_section(report: dict[str, Any], checks: dict[str, Any], meta: ModelMeta) -> list[str]:
    """The metrics table and the export checks."""
    t = report["threshold"]
    interval = threshold_interval_text(t)
    rows = []
    for split, entry in report["splits"].items():
        for cohort, m in [("all", entry["all"]), *entry["cohorts"].items()]:
            cells = [split, cohort, f"{m['n']} ({m['n_good']}/{m['n_poor']})"]
            cells += [_ci(m[k]) for k in ("auc", "sensitivity", "specificity", "ppv", "npv")]
            rows.append("| " + " | ".join(cells) + " |")
    int8_line = _int8_lines(meta, checks)
    reason_line, streaming_line = _reason_and_streaming_lines(checks)
    return [
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
    ]


def _limits_section() -> list[str]:
    """What the model cannot be trusted for."""
    return [
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
    lines = [
        *_intended_use(meta, file_stem, checks.get("int8_threshold")),
        *_data_section(meta, config, summary),
        *_method_section(meta, config, payload),
        *_metrics_section(report, checks, meta),
        *_limits_section(),
    ]
    return "\n".join(lines)


def portable_path(path: str | Path) -> str:
    """``path`` as the card shows it: relative to the repository when inside it, ``../NAME/...``
    when beside it (the shared data and the data builds live next to the repository), else
    only its last folder and file name: never a build machine's absolute path."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    p = Path(os.path.normpath(p))
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent, "../")):
        try:
            return prefix + p.relative_to(base).as_posix()
        except ValueError:
            continue
    return ".../" + "/".join(p.parts[-2:])
