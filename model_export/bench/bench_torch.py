"""PyTorch eager fp32 latency of the network an ONNX model describes (``skin-capture bench``).

``python -m model_export.bench.bench_torch --model M.onnx --grid live|capture --runs N --warmup W``
prints one JSON line ``{"grid", "patches", "median_ms", "p90_ms", "runs"}``. The network is
:class:`PatchMILQualityNet` built from ``M-torch.pt`` next to the ONNX file when present (written
by ``skin-capture-model export``), else from the metadata alone with random weights (latency does
not depend on weight values). Each timed run tiles the same synthetic frame as
``desktop_app.core.bench`` with the shared tiling and runs the model, like ``engine.score``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from desktop_app.core.bench import CAPTURE_FRAME_HW, LIVE_FRAME_HW, percentile, synthetic_frame
from desktop_app.core.model_meta import METADATA_KEY, ModelMeta
from desktop_app.core.tiling import image_to_patches, normalise_patches, patch_positions
from model_export.model.network import PatchMILQualityNet, QualityHead, VGG16Trunk


def sidecar_checkpoint(model_path: Path) -> Path:
    """``NAME-torch.pt`` for ``NAME-fp32.onnx`` / ``NAME-int8.onnx`` / ``NAME.onnx``."""
    stem = model_path.stem
    for tag in ("-fp32", "-int8"):
        if stem.endswith(tag):
            stem = stem[: -len(tag)]
    return model_path.with_name(f"{stem}-torch.pt")


def read_meta(model_path: Path) -> ModelMeta:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return ModelMeta.from_json(props.get(METADATA_KEY))


def build_model(model_path: Path, meta: ModelMeta) -> PatchMILQualityNet:
    sidecar = sidecar_checkpoint(model_path)
    trunk = VGG16Trunk()
    if sidecar.is_file():
        payload: dict[str, Any] = torch.load(sidecar, map_location="cpu", weights_only=False)
        head = QualityHead(**payload["head_kwargs"])
        head.load_state_dict(payload["head_state"])
        if payload.get("trunk_state") is not None:
            trunk.load_state_dict(payload["trunk_state"])
    else:
        arch = meta.validation_metrics.get("architecture", {})
        head = QualityHead(
            k_levels=meta.ordinal.k,
            n_reasons=len(meta.reason_names),
            acceptable_level=meta.ordinal.acceptable_level,
            embed_dim=int(arch.get("embed_dim", 128)),
            hidden_dim=int(arch.get("hidden_dim", 256)),
            pooling=arch.get("pooling", "attention"),
            reason_pooling=arch.get("reason_pooling", "bag"),
        )
    return PatchMILQualityNet(head, trunk).eval()


def bench(model_path: Path, grid: str, runs: int, warmup: int) -> dict[str, Any]:
    meta = read_meta(model_path)
    model = build_model(model_path, meta)
    if grid == "live":
        frame, spec = synthetic_frame(*LIVE_FRAME_HW, seed=1), meta.tiling.live
    else:
        frame, spec = synthetic_frame(*CAPTURE_FRAME_HW, seed=2), meta.tiling.capture

    def once() -> int:
        patches, layout = image_to_patches(frame, meta.tiling.patch_size, spec)
        x = torch.from_numpy(normalise_patches(patches, meta.input))
        pos = torch.from_numpy(patch_positions(layout))
        out = model(x, pos)
        float(out[0][0])
        return layout.n

    samples: list[float] = []
    n = 0
    with torch.inference_mode():
        for _ in range(warmup):
            once()
        for _ in range(runs):
            t0 = time.perf_counter()
            n = once()
            samples.append((time.perf_counter() - t0) * 1000.0)
    return {
        "grid": grid,
        "patches": n,
        "median_ms": statistics.median(samples),
        "p90_ms": percentile(samples, 90),
        "runs": runs,
        "threads": torch.get_num_threads(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export.bench.bench_torch")
    parser.add_argument("--model", type=Path, required=True, help="exported ONNX model")
    parser.add_argument("--grid", choices=("live", "capture"), default="live")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    result = bench(args.model, args.grid, max(1, args.runs), max(0, args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
