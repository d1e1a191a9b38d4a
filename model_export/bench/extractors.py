"""Speed of the descriptor extractors (``skin-capture-model bench-extractors``): PyTorch eager
(also channels-last), onnxruntime fp32 and, optionally, an int8 QDQ trunk.

Lives here, above the export stage, because the int8 trunk is quantised by the export code:
inside :mod:`model_export.model.features` it closed the import cycle
``features -> export -> evaluate -> train -> features``."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model_export.config import DEFAULT_WEIGHTS
from model_export.export.int8 import quantize_trunk_int8_for_speed
from model_export.model.features import OrtExtractor, TorchExtractor, build_trunk


def bench_extractors(
    weights: str = "",
    patch_size: int = 224,
    batch: int = 6,
    runs: int = 5,
    threads: int = 0,
    with_int8: bool = False,
) -> dict[str, object]:
    """Milliseconds per patch (best of ``runs`` calls on ``batch`` patches) and patches/s of each
    extractor. The int8 trunk is calibrated on random patches: its speed is real, its
    descriptors are not meant to be used."""
    if threads > 0:
        torch.set_num_threads(threads)
    source = weights or (str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else "random")
    trunk = build_trunk(source)
    rng = np.random.default_rng(0)
    patches = rng.random((batch, 3, patch_size, patch_size), dtype=np.float32)

    def best_ms(fn: Callable[[np.ndarray], np.ndarray]) -> float:
        fn(patches)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(patches)
            times.append(time.perf_counter() - t0)
        return min(times) * 1000.0 / batch

    results: dict[str, float] = {}
    results["torch_eager_fp32"] = best_ms(TorchExtractor(trunk))
    cl_trunk = build_trunk(source).to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def channels_last(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return np.asarray(cl_trunk(t).numpy())

    results["torch_eager_fp32_channels_last"] = best_ms(channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "trunk.onnx"
        ort_extractor = OrtExtractor(trunk, patch_size, onnx_path, threads)
        results["onnxruntime_fp32"] = best_ms(ort_extractor)
        reference = TorchExtractor(trunk)(patches)
        max_rel = float(
            np.max(np.abs(ort_extractor(patches) - reference)) / np.max(np.abs(reference))
        )
        if with_int8:
            int8_path = Path(tmp) / "trunk-int8.onnx"
            quantize_trunk_int8_for_speed(onnx_path, int8_path, patches)
            results["onnxruntime_int8"] = best_ms(
                OrtExtractor(trunk, patch_size, int8_path, threads)
            )
    return {
        "weights": source,
        "patch_size": patch_size,
        "batch": batch,
        "threads": threads or torch.get_num_threads(),
        "ms_per_patch": results,
        "patches_per_s": {k: 1000.0 / v for k, v in results.items()},
        "onnxruntime_vs_torch_max_rel_diff": max_rel,
    }
