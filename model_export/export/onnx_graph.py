"""The exported graphs themselves: the fp32 ONNX export of the contract, its metadata, the
float16-exact weight storage, onnxruntime sessions and scores, and the check against PyTorch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from desktop_app.core.model_meta import METADATA_KEY, GraphIO, ModelMeta
from model_export.model.network import PatchMILQualityNet
from model_export.model.streaming import descriptor_session

OPSET = 17


class ExportCheckError(RuntimeError):
    """An exported model failed a check and was not written."""


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


def session_for(path: Path, threads: int = 0) -> Any:
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
    session = session_for(onnx_path)
    names = output_names(model.head.n_reasons)
    worst = 0.0
    with torch.inference_mode():
        for patches, positions in bags:
            expected = model(torch.from_numpy(patches), torch.from_numpy(positions))
            got = session.run(names, {"patches": patches, "positions": positions})
            for e, g in zip(expected, got, strict=True):
                worst = max(worst, float(np.max(np.abs(e.numpy() - g))))
    return worst


def onnx_scores(path: Path, bags: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The ``score`` output for each (patches, positions) bag."""
    session = session_for(path)
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
