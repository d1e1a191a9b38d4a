"""The ``generalisation`` and ``evaluate-file`` subcommands around
:mod:`model_export.evaluation.generalisation`: the report as the model card's tables, its
headline numbers in the tuned file's metadata, writing and checking the tuned model file, and a
model file through the app's engine on a rated CSV."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from model_export.data.rated import RatedPhoto, load_rated_photos
from model_export.evaluation.generalisation import (
    MIN_SENSITIVITY,
    rates_at,
    run_generalisation,
)
from model_export.training.rated_finetune import FineTuneConfig, predict, rated_bags

logger = logging.getLogger(__name__)


def format_generalisation(report: dict[str, Any]) -> str:
    """The report as the Markdown tables the model card prints."""

    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"| {name} | {r['n']} ({r['good']}/{r['poor']}) | {r['auc']:.3f} | "
            f"{r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['npv']:.3f} |"
        )

    head = (
        "| set | n (good/poor) | AUC | sensitivity | specificity | NPV |\n|---|---|---|---|---|---|"
    )
    oof = report["out_of_family"]
    lines = [
        "Out-of-family (head tuned and threshold chosen without the tested set):",
        "",
        head,
        row("rated2, tuned on rated/", oof["rated2_tuned_on_rated"]),
        row("rated/, tuned on rated2", oof["rated_tuned_on_rated2"]),
        "",
        f"The same two models at the shipped threshold ({report['shipped_threshold']:.4f}):",
        "",
        head,
        row("rated2, tuned on rated/", oof["rated2_tuned_on_rated"]["at_shipped"]),
        row("rated/, tuned on rated2", oof["rated_tuned_on_rated2"]["at_shipped"]),
    ]
    lofo = report.get("leave_one_family_out")
    if lofo:
        lines += [
            "",
            f"Leave-one-fault-family-out over the rated sets: mean AUC {lofo['mean_auc']:.3f}, "
            f"worst {lofo['worst_auc']:.3f} ({lofo['worst_family']}); "
            f"{lofo['families_in_mean']} families with >= 3 poor photos of their own.",
            "",
            "| family (set) | family good/poor | AUC with clean photos | good rejected | "
            "poor accepted |",
            "|---|---|---|---|---|",
        ]
        for family, r in lofo["families"].items():
            lines.append(
                f"| {family} ({r['rated_set']}) | {r['family_good']}/{r['family_poor']} | "
                f"{r['auc']:.3f} | {r['family_good_rejected']} | {r['family_poor_accepted']} |"
            )
    inf = report["in_family_cv"]
    lines += [
        "",
        f"In-family (5-fold grouped CV over both rated sets; shipped threshold "
        f"{inf['threshold']:.4f}):",
        "",
        head,
    ]
    for key in ("all", "rated", "rated2", *(k for k in inf if k.startswith("cohort "))):
        lines.append(row(key, inf[key]))
    start = report["starting_model"]
    lines += [
        "",
        f"The starting model, untuned, at its own threshold {start['threshold']:.4f}:",
        "",
        head,
        row("rated", start["rated"]),
        row("rated2", start["rated2"]),
    ]
    return "\n".join(lines)


def headline_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the model file carries in its metadata record (out-of-family first)."""
    keys = ("n", "auc", "sensitivity", "specificity", "npv")
    oof = report["out_of_family"]
    out: dict[str, Any] = {
        "kind": "photos rated by people; see the model card",
        "out_of_family_rated2": {k: oof["rated2_tuned_on_rated"][k] for k in keys},
        "out_of_family_rated": {k: oof["rated_tuned_on_rated2"][k] for k in keys},
        "in_family_cv": {k: report["in_family_cv"]["all"][k] for k in keys},
    }
    lofo = report.get("leave_one_family_out")
    if lofo:
        out["leave_one_family_out_mean_auc"] = lofo["mean_auc"]
        out["leave_one_family_out_worst_auc"] = lofo["worst_auc"]
    return out


def write_tuned_model(
    model_path: Path,
    head: Any,
    out_path: Path,
    model_version: str,
    threshold: float,
    report: dict[str, Any],
) -> Any:
    """``out_path``: ``model_path`` with ``head``'s weights and an updated metadata record."""
    import dataclasses
    from datetime import UTC, datetime

    import onnx

    from desktop_app.core.model_meta import METADATA_KEY, ModelMeta
    from model_export.training.rated_finetune import write_head

    model = onnx.load(str(model_path))
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_json(props.get(METADATA_KEY))
    tuned = write_head(model, head)
    n = report["photos"]
    new_meta = dataclasses.replace(
        meta,
        model_version=model_version,
        created_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        training_data=(
            f"{meta.training_data.rstrip('.')}. Head then fine-tuned on {n} photos rated by four "
            "people each (../shared/data rated/ and rated2/)."
        ),
        decision=dataclasses.replace(
            meta.decision,
            threshold=float(threshold),
            method=(
                f"youden with sensitivity >= {MIN_SENSITIVITY} on 5-fold grouped cross-validation "
                "of the rated photos"
            ),
        ),
        validation_metrics=headline_metrics(report),
    )
    del tuned.metadata_props[:]
    for key, value in props.items():
        entry = tuned.metadata_props.add()
        entry.key = key
        entry.value = new_meta.to_json() if key == METADATA_KEY else value
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(tuned, str(out_path))
    return new_meta


def add_parser(subparsers: Any) -> None:
    """The ``generalisation`` subcommand."""
    parser = subparsers.add_parser(
        "generalisation",
        help="out-of-family numbers on the rated photos; tunes the head on them",
    )
    parser.add_argument("--model", type=Path, required=True, help="starting ONNX export")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--write", type=Path, help="also write the tuned model here")
    parser.add_argument("--model-version", default="", help="version of the written model")
    parser.add_argument("--epochs", type=int, default=FineTuneConfig.epochs)
    parser.add_argument("--lr", type=float, default=FineTuneConfig.lr)
    parser.add_argument("--l2sp", type=float, default=FineTuneConfig.l2sp)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-families", action="store_true", help="skip leave-one-family-out (faster)"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    config = FineTuneConfig(epochs=args.epochs, lr=args.lr, l2sp=args.l2sp, seed=args.seed)
    report, head = run_generalisation(
        args.shared, args.model, args.out, config, leave_out_families=not args.no_families
    )
    print(
        json.dumps(report, indent=1, default=float) if args.json else format_generalisation(report)
    )
    if args.write:
        if not args.model_version:
            logger.error("--write needs --model-version")
            return 2
        meta = write_tuned_model(
            args.model, head, args.write, args.model_version, report["shipped_threshold"], report
        )
        check = _check_written(args.write, head, args.shared)
        print(
            f"wrote {args.write} (model {meta.model_version}, {meta.precision}, threshold "
            f"{meta.decision.threshold:.4f}); app engine vs tuned head on {check[0]} rated "
            f"photos: max score difference {check[1]:.2e}"
        )
        if check[1] > 1e-4:
            logger.error("the written model does not reproduce the tuned head")
            return 1
    return 0


def _check_written(path: Path, head: Any, shared: Path, n: int = 30) -> tuple[int, float]:
    """Score ``n`` rated photos through the app's engine on the written file and compare with
    the tuned head on the same file's descriptors."""
    from desktop_app.core.image_io import load_rgb
    from desktop_app.core.inference import QualityEngine

    photos = load_rated_photos(shared)[:: max(1, 440 // n)][:n]
    engine = QualityEngine(path, providers="cpu")
    expected, _ = predict(head, rated_bags(photos, path))
    got = np.asarray([engine.score(load_rgb(p.path)).score for p in photos])
    return len(photos), float(np.abs(got - expected).max()) if photos else 0.0


def evaluate_model_file(model_path: Path, csv_path: Path) -> dict[str, Any]:
    """A model file as the app runs it (its engine, capture grid, its own threshold) on a rated
    CSV in the training format: AUC and rates overall and per cohort."""
    from desktop_app.core.image_io import load_rgb
    from desktop_app.core.inference import QualityEngine

    photos = load_rated_set_csv(csv_path)
    engine = QualityEngine(model_path, providers="cpu")
    scores = np.asarray([engine.score(load_rgb(p.path)).score for p in photos])
    labels = np.asarray([p.label for p in photos])
    report: dict[str, Any] = {
        "model": f"{engine.meta.model_name} {engine.meta.model_version} ({engine.meta.precision})",
        "csv": csv_path.name,
        "threshold": engine.threshold,
        "all": rates_at(labels, scores, engine.threshold),
    }
    for cohort in sorted({p.cohort for p in photos}):
        idx = np.asarray([i for i, p in enumerate(photos) if p.cohort == cohort])
        report[f"cohort {cohort}"] = rates_at(labels[idx], scores[idx], engine.threshold)
    return report


def load_rated_set_csv(csv_path: Path) -> list[RatedPhoto]:
    """A training-format CSV read as rated photos (faults from its ``fault`` column if any)."""
    from model_export.data.rated import load_rated_set

    return load_rated_set(csv_path.parent, csv_path.parent.name, csv_path.name)


def add_evaluate_file_parser(subparsers: Any) -> None:
    """The ``evaluate-file`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate-file",
        help="a model file through the app's engine on a rated CSV (AUC, rates per cohort)",
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True, help="training-format rated CSV")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_run_evaluate_file)


def _run_evaluate_file(args: Any) -> int:
    report = evaluate_model_file(args.model, args.csv)
    if args.json:
        print(json.dumps(report, indent=1, default=float))
        return 0
    print(f"{report['model']} on {report['csv']}, threshold {report['threshold']:.4f}:")
    print("| set | n (good/poor) | AUC | sensitivity | specificity | NPV |")
    print("|---|---|---|---|---|---|")
    for key, r in report.items():
        if isinstance(r, dict):
            print(
                f"| {key} | {r['n']} ({r['good']}/{r['poor']}) | {r['auc']:.3f} | "
                f"{r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['npv']:.3f} |"
            )
    return 0
