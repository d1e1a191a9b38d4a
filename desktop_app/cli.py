"""``skin-capture``: the app (default) and its command-line tools (``score``, ``bench``)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from desktop_app import __version__

logger = logging.getLogger("skin_capture")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="ONNX model (default: the bundled model)")
    parser.add_argument(
        "--provider", choices=("auto", "cpu", "cuda"), default="auto", help="onnxruntime provider"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: onnxruntime's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skin-capture",
        description="Skin Capture Assist: live quality check for teledermatology photos.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--kiosk", action="store_true", help="start the patient kiosk (full screen)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        dest="global_model",
        help="ONNX model (default: the one chosen in Settings, else the bundled model)",
    )
    parser.add_argument(
        "--source",
        help="frame source: 'demo', a camera index, a video file, an image folder or "
        "'hotfolder:PATH' (default: the configured camera, else the demo feed)",
    )
    sub = parser.add_subparsers(dest="command")

    score = sub.add_parser("score", help="score image files and folders")
    _add_model_args(score)
    score.add_argument("paths", nargs="+", type=Path, help="images and/or folders (recursive)")
    score.add_argument("--json", action="store_true", help="one JSON object per line")
    score.add_argument(
        "--grid", choices=("capture", "live"), default="capture", help="patch grid to use"
    )

    bench = sub.add_parser("bench", help="measure model and app speed")
    _add_model_args(bench)
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--runs", type=int, default=30, help="timed runs per case (>= 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs")
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    bench.add_argument("--gui", action="store_true", help="also measure the GUI (preview fps...)")
    bench.add_argument(
        "--one-piece",
        action="store_true",
        help="run each bag in one session, not split over two at the model's trunk/head seam "
        "(to compare the two)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from desktop_app.core.resources import configure_logging

    configure_logging(args.verbose)
    # `skin-capture --model X score` and `skin-capture score --model X` mean the same
    if args.command in ("score", "bench"):
        args.model = resolve_model(args.model or args.global_model)
    else:
        args.model = args.global_model
    if args.command == "score":
        return cmd_score(args)
    if args.command == "bench":
        from desktop_app.core.bench import run_bench_cli

        if args.one_piece:  # read by every QualityEngine of this process, the GUI bench's too
            os.environ["SKIN_CAPTURE_SPLIT_BAGS"] = "0"

        gui_bench = None
        if args.gui:  # the Qt GUI bench: chosen here, so that core imports no Qt
            from desktop_app.qt.gui_bench import run_gui_bench

            gui_bench = run_gui_bench
        return run_bench_cli(args, gui_bench)
    from desktop_app.app.run import run_app

    return run_app(args)


def resolve_model(path: Path | None) -> Path | None:
    """The model the GUI would use: ``path``, else Settings' model, else the bundled one."""
    from desktop_app.core.inference import resolve_model_path
    from desktop_app.core.settings import load_settings

    return resolve_model_path(path, load_settings().model_path)


class ModelRunError(RuntimeError):
    """The model ran but gave no usable result for one image."""


def _report_skip(path: Path, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"path": str(path), "error": message}), flush=True)
    else:
        print(f"skipped: {message}", file=sys.stderr)


def cmd_score(args: argparse.Namespace) -> int:
    """Score every image; unreadable files are reported and skipped.

    Exit status: 0 when at least one image was scored, 1 when none could be, 2 when no model.
    """
    from desktop_app.core.image_io import ImageLoadError, iter_image_files, load_rgb
    from desktop_app.core.inference import NO_MODEL_MESSAGE, QualityEngine
    from desktop_app.core.model_meta import ModelContractError

    model_path = args.model
    if model_path is None:
        print(f"error: {NO_MODEL_MESSAGE}", file=sys.stderr)
        return 2
    try:
        engine = QualityEngine(model_path, providers=args.provider, intra_op_threads=args.threads)
    except ModelContractError as exc:
        print(f"error: cannot use model {model_path}: {exc}", file=sys.stderr)
        return 2
    scored = failed = 0
    for path in iter_image_files(args.paths):
        t0 = time.perf_counter()
        try:
            image = load_rgb(path)
            result = engine.score(image, grid=args.grid)
            if not math.isfinite(result.score):
                raise ModelRunError(f"{path.name}: the model returned no valid score (NaN)")
        except (ImageLoadError, ModelRunError) as exc:
            failed += 1
            _report_skip(path, str(exc), args.json)
            continue
        except Exception as exc:  # onnxruntime fails at run time: say so, no traceback
            failed += 1
            first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            logger.debug("model run failed on %s", path, exc_info=True)
            _report_skip(
                path, f"{path.name}: the model could not score it ({first_line})", args.json
            )
            continue
        ms = (time.perf_counter() - t0) * 1000.0
        scored += 1
        reasons = result.top_reasons()
        if args.json:
            record = {
                "path": str(path),
                "score": round(result.score, 6),
                "level": round(result.expected_level, 4)
                if math.isfinite(result.expected_level)
                else None,
                "decision": "accept" if result.accepted else "retake",
                "threshold": round(result.threshold, 6),
                "reasons": reasons,
                "reason_probabilities": {
                    k: round(v, 4) if math.isfinite(v) else None for k, v in result.reasons.items()
                },
                "grid": f"{result.layout.rows}x{result.layout.cols}",
                "ms": round(ms, 1),
            }
            print(json.dumps(record, allow_nan=False), flush=True)
        else:
            decision = "ACCEPT" if result.accepted else "RETAKE"
            print(
                f"{path}\tscore={result.score:.3f}\tlevel={result.expected_level:.2f}\t"
                f"{decision}\treasons={','.join(reasons) or '-'}\t{ms:.0f} ms",
                flush=True,
            )
    print(f"scored {scored}, skipped {failed}", file=sys.stderr)
    return 0 if scored > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
