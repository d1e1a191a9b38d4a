"""``skin-capture-model``: train, evaluate, export and compare quality models.

Subcommands (``--help`` on each for options):

* ``train --config FILE.toml``          train (resumes ``out_dir`` when it holds a run)
* ``extract --config FILE.toml``        only compute the descriptor cache (all CSV images)
* ``evaluate --run DIR``                metrics, threshold, plots, JSON report
* ``export --run DIR``                  ONNX fp32 + int8 with metadata, checks, model card
* ``stream --model F --out F``          rewrite an export so its trunk runs patch by patch
* ``compare-pooling --config FILE``     mean vs max vs attention on the same features
* ``bench-extractor``                   descriptor extraction speed per patch (torch vs onnxruntime)
* ``build-data --shared DIR --out DIR``  rated training set from real photos + capture faults
* ``baselines --csv FILE``              Laplacian / exposure / BRISQUE baselines with their AUC
* ``generalisation --model F --out DIR`` out-of-family numbers on the rated photos; tunes the head
* ``evaluate-file --model F --csv FILE``  a model file through the app's engine on a rated CSV
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("skin_capture_model")


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "out_dir", None):
        overrides["out_dir"] = str(Path(args.out_dir).resolve())
    if getattr(args, "epochs", None):
        overrides["epochs"] = args.epochs
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "extractor", None):
        overrides["extractor"] = args.extractor
    if getattr(args, "cache_dir", None):
        overrides["cache_dir"] = str(Path(args.cache_dir).resolve())
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skin-capture-model",
        description="Train, evaluate and export the patch-VGG16 MIL ordinal quality model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model")
    _config_args(train)
    train.add_argument("--restart", action="store_true", help="discard a run in out_dir")
    train.add_argument("--stop-after", type=int, help="stop (resumably) after this epoch")

    extract = sub.add_parser("extract", help="fill the descriptor cache for the config's CSVs")
    _config_args(extract)
    _add_evaluate_parser(sub)
    _add_stream_parser(sub)
    _add_export_parser(sub)

    compare = sub.add_parser("compare-pooling", help="mean vs max vs attention MIL pooling")
    _config_args(compare)
    compare.add_argument("--seeds", type=int, nargs="+", default=[0])
    compare.add_argument("--poolings", nargs="+", default=["mean", "max", "attention"])
    compare.add_argument("--restart", action="store_true")
    _add_bench_parser(sub)

    from model_export.data import build_data
    from model_export.evaluation import baselines, ceiling, generalisation_cli, reason_eval

    build_data.add_parser(sub)
    build_data.add_sample_parser(sub)
    baselines.add_parser(sub)
    reason_eval.add_parser(sub)
    ceiling.add_parser(sub)
    generalisation_cli.add_parser(sub)
    generalisation_cli.add_evaluate_file_parser(sub)
    from model_export.export import retile, seam

    seam.add_parser(sub)
    retile.add_parser(sub)
    return parser


def _config_args(p: argparse.ArgumentParser) -> None:
    """The options of the subcommands that read a training config."""
    p.add_argument("--config", type=Path, required=True, help="TOML (or YAML) config")
    p.add_argument("--out-dir", help="override out_dir")
    p.add_argument("--epochs", type=int, help="override epochs")
    p.add_argument("--device", help="override device (auto, cpu, cuda)")
    p.add_argument("--extractor", choices=("auto", "torch", "onnxruntime"))
    p.add_argument("--cache-dir", help="override the descriptor cache folder")


def _add_evaluate_parser(sub: Any) -> None:
    """``evaluate``."""
    evaluate = sub.add_parser("evaluate", help="evaluate a training run")
    evaluate.add_argument("--run", type=Path, required=True, help="the run's out_dir")
    evaluate.add_argument("--checkpoint", default="best", choices=("best", "last"))
    evaluate.add_argument(
        "--external",
        type=Path,
        nargs="*",
        default=[],
        help="extra dataset CSVs evaluated as external sets",
    )
    evaluate.add_argument("--out", type=Path, help="report folder (default RUN/eval)")
    evaluate.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    evaluate.add_argument("--threshold", type=float, help="use this threshold, not Youden")
    evaluate.add_argument("--json", action="store_true", help="print the JSON report")


def _add_stream_parser(sub: Any) -> None:
    """``stream``."""
    from model_export.model.onnx_files import add_rewrite_arguments

    stream = sub.add_parser(
        "stream",
        help="rewrite an exported model so its trunk runs patch by patch (less memory), checked",
    )
    add_rewrite_arguments(stream)
    stream.add_argument("--chunk", type=int, default=1, help="patches per trunk pass")
    stream.add_argument(
        "--check-images", type=Path, help="folder of photos to compare the two models on"
    )
    stream.add_argument("--max-check-images", type=int, default=16)
    stream.add_argument(
        "--tolerance", type=float, help="allowed difference (fp32 outputs 1e-4, int8 score 0.01)"
    )


def _add_export_parser(sub: Any) -> None:
    """``export``."""
    export = sub.add_parser("export", help="export ONNX fp32 + int8 with checks and model card")
    export.add_argument("--run", type=Path, required=True, help="the run's out_dir")
    export.add_argument("--checkpoint", default="best", choices=("best", "last"))
    export.add_argument("--out", type=Path, help="output folder (default RUN/export)")
    export.add_argument("--name", help="file name stem (default: the config's model_name)")
    export.add_argument("--tolerance", type=float, default=1e-4, help="ONNX vs PyTorch max diff")
    export.add_argument("--max-auc-drop", type=float, default=0.005, help="int8 vs fp32")
    export.add_argument("--calibration-images", type=int, default=64)
    export.add_argument(
        "--max-check-images",
        type=int,
        default=0,
        help="limit validation images for the int8 AUC check (0: all)",
    )
    export.add_argument("--no-int8", action="store_true", help="export fp32 only")
    export.add_argument(
        "--reason-thresholds",
        type=Path,
        help="JSON {reason: threshold} from 'reason-f1 --tune-on val --save-thresholds'",
    )
    export.add_argument(
        "--int8-threshold",
        choices=("fp32", "youden"),
        default="fp32",
        help="the int8 file's accept threshold: the fp32 model's, or its own Youden threshold on "
        "its validation scores (the check images; use with --max-check-images 0)",
    )
    export.add_argument(
        "--int8-distil-images",
        type=int,
        default=0,
        help="distil the int8 file's head on this many training images' int8 descriptors so its "
        "scores follow the fp32 model's (0: off; kept only if validation agrees better)",
    )
    export.add_argument(
        "--model-version",
        help="version written into the files (default: the run config's model_version)",
    )
    export.add_argument(
        "--stream-chunk",
        type=int,
        default=1,
        help="patches per trunk pass inside the graph (0: the whole bag at once; more memory)",
    )
    export.add_argument(
        "--full-range",
        action="store_true",
        help="8-bit weights (default 7-bit reduce_range: safe without VNNI)",
    )

    export.add_argument(
        "--fp32-first-convs", type=int, default=0, help="keep the first K convolutions in fp32"
    )


def _add_bench_parser(sub: Any) -> None:
    """``bench-extractor``."""
    bench = sub.add_parser("bench-extractor", help="descriptor extraction speed per patch")
    bench.add_argument("--weights", default="", help="VGG16 weights (default: ../shared npz)")
    bench.add_argument("--patch-size", type=int, default=224)
    bench.add_argument("--batch", type=int, default=6, help="patches per call")
    bench.add_argument("--runs", type=int, default=5)
    bench.add_argument("--threads", type=int, default=0)
    bench.add_argument("--int8", action="store_true", help="also an int8 QDQ trunk (speed only)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from desktop_app.core.resources import configure_logging

    configure_logging(args.verbose)
    from model_export.config import ConfigError
    from model_export.data.dataset import DatasetError
    from model_export.export.onnx_graph import ExportCheckError
    from model_export.export.retile import RetileError
    from model_export.export.seam import SeamError
    from model_export.model.streaming import StreamingError
    from model_export.training.train import TrainingError

    try:
        return _dispatch(args)
    except (
        ConfigError,
        DatasetError,
        TrainingError,
        ExportCheckError,
        StreamingError,
        SeamError,
        RetileError,
        FileNotFoundError,
    ) as exc:
        logger.error("%s", exc)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    if getattr(args, "func", None) is not None:
        return int(args.func(args))
    if args.command in ("train", "extract", "compare-pooling"):
        from model_export.config import load_config

        config = load_config(args.config, _config_overrides(args))
        if args.command == "train":
            return _train(args, config, progress)
        if args.command == "extract":
            return _extract(config, progress)
        return _compare_pooling(args, config, progress)
    handlers = {
        "evaluate": _evaluate,
        "export": _export,
        "stream": _stream,
        "bench-extractor": _bench_extractor,
    }
    if args.command not in handlers:
        raise AssertionError(args.command)
    return handlers[args.command](args, progress)


def _train(args: argparse.Namespace, config: Any, progress: bool) -> int:
    from model_export.training.train import train

    result = train(
        config, progress=progress, restart=args.restart, stop_after_epoch=args.stop_after
    )
    print(
        f"best epoch {result.best_epoch}, validation AUC {result.best_val_auc:.4f}; "
        f"run in {result.out_dir}"
    )
    return 0


def _compare_pooling(args: argparse.Namespace, config: Any, progress: bool) -> int:
    from model_export.evaluation.compare import compare_pooling, format_comparison

    results = compare_pooling(
        config, args.poolings, args.seeds, progress=progress, restart=args.restart
    )
    print(format_comparison(results, len(args.seeds)))
    return 0


def _evaluate(args: argparse.Namespace, progress: bool) -> int:
    from model_export.evaluation.evaluate import evaluate_run, format_report

    report = evaluate_run(
        args.run,
        args.checkpoint,
        args.external,
        args.out,
        n_boot=args.bootstrap,
        threshold=args.threshold,
        progress=progress,
    )
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return 0


def _export(args: argparse.Namespace, progress: bool) -> int:
    from model_export.export.run import export_run

    result = export_run(
        args.run,
        args.out,
        args.name,
        args.checkpoint,
        tol=args.tolerance,
        max_auc_drop=args.max_auc_drop,
        calibration_images=args.calibration_images,
        max_check_images=args.max_check_images,
        int8=not args.no_int8,
        reduce_range=not args.full_range,
        fp32_first_convs=args.fp32_first_convs,
        stream_chunk=args.stream_chunk,
        reason_thresholds=(
            json.loads(args.reason_thresholds.read_text(encoding="utf-8"))
            if args.reason_thresholds
            else None
        ),
        int8_threshold=args.int8_threshold,
        int8_distil_images=args.int8_distil_images,
        model_version=args.model_version,
        progress=progress,
    )
    print(f"fp32: {result.fp32_path} (max |ONNX - PyTorch| {result.max_abs_diff:.2e})")
    if result.int8_path is not None and result.auc_int8 is not None:
        print(
            f"int8: {result.int8_path} (validation AUC {result.auc_int8:.4f} vs fp32 "
            f"{result.auc_fp32:.4f})"
        )
    print(f"model card: {result.card_path}")
    return 0


def _stream(args: argparse.Namespace, progress: bool) -> int:
    from desktop_app.core.image_io import iter_image_files
    from model_export.model.streaming import stream_model_file

    images = []
    if args.check_images is not None:
        images = sorted(iter_image_files([args.check_images]))[: args.max_check_images]
    diffs = stream_model_file(args.model, args.out, args.chunk, images, args.tolerance)
    print(
        f"{args.out}: trunk streamed {args.chunk} patch(es) per pass; checked on "
        f"{len(images)} images at both grids: max |output diff| "
        f"{diffs['max_abs_output_diff']:.2e}, max |score diff| "
        f"{diffs['max_abs_score_diff']:.2e}"
    )
    return 0


def _bench_extractor(args: argparse.Namespace, progress: bool) -> int:
    from model_export.bench.extractors import bench_extractors

    result = bench_extractors(
        args.weights, args.patch_size, args.batch, args.runs, args.threads, args.int8
    )
    print(json.dumps(result, indent=2))
    return 0


def _extract(config: Any, progress: bool) -> int:
    from model_export.data.dataset import load_datasets
    from model_export.model.features import build_trunk
    from model_export.training.train import make_cache, pick_device

    dataset = load_datasets(config.csv, config.k_levels, config.acceptable_level, config.reasons)
    device = pick_device(config.device)
    cache = make_cache(config, build_trunk(config.weights, config.seed), device)
    cache.get_many([im.path for im in dataset.images], progress=progress)
    s = cache.stats
    rate = s["patches"] / s["extract_s"] if s["extract_s"] else float("nan")
    print(
        f"{len(dataset)} images: {s['computed']} computed ({s['patches']} patches, "
        f"{rate:.2f} patches/s with {cache.extractor_name}), {s['hits']} already cached; "
        f"cache {cache.dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
