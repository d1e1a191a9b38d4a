"""Stream the VGG16 trunk over a bag's patches inside the exported graph.

The exported graph takes a whole bag, ``patches`` [N, 3, P, P], because MIL pooling needs every
patch. Run as one batch, the trunk's first block alone holds N x 64 x P x P float activations
(12 capture patches at 224: about 150 MB per tensor, several alive at once), and onnxruntime's
arena keeps that peak for the life of the app. This rewrite moves every node that computes the
per-patch descriptor [N, D] into an ONNX ``Loop`` that runs the trunk on ``chunk`` patches at a
time and concatenates their descriptors; the head (pooling, ordinal and reason outputs) is left as
it was. Inputs, outputs and results are unchanged (the same arithmetic per patch), so the model
contract and the app are untouched; the activation peak shrinks by about N / chunk.

Quantization nodes (QDQ) that belong to the trunk move into the loop body with it, so
onnxruntime still fuses them into integer convolutions there.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from onnx import TensorProto, helper

if TYPE_CHECKING:
    from desktop_app.core.inference import GridName, QualityEngine

logger = logging.getLogger(__name__)

STREAM_PREFIX = "stream_trunk/"
TRUNK_NODE_PREFIX = "/trunk/"


class StreamingError(ValueError):
    """The graph cannot be streamed (no trunk output found, or trunk values used elsewhere)."""


def is_streamed(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "Loop" and n.name.startswith(STREAM_PREFIX) for n in model.graph.node)


def find_trunk_output(model: onnx.ModelProto) -> str:
    """The descriptor tensor [N, D]: the one value made by a ``/trunk/`` node (PyTorch's export
    names nodes by module path; shared constants aside) and read by a node outside the trunk."""
    graph = model.graph
    made_by_trunk = {
        out: node.name
        for node in graph.node
        if node.name.startswith(TRUNK_NODE_PREFIX) and node.op_type != "Constant"
        for out in node.output
    }
    crossing = {
        name
        for node in graph.node
        if not node.name.startswith(TRUNK_NODE_PREFIX)
        for name in node.input
        if name in made_by_trunk
    }
    crossing |= {o.name for o in graph.output if o.name in made_by_trunk}
    if len(crossing) != 1:
        raise StreamingError(
            f"expected exactly one trunk output read outside the trunk, found {sorted(crossing)}"
        )
    return str(crossing.pop())


def descriptor_session(model: onnx.ModelProto, descriptor: str) -> Any:
    """A CPU onnxruntime session of a copy of ``model`` with its inner tensor ``descriptor`` (the
    trunk's output [N, D]) added as a graph output; ``model`` is left unchanged."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_empty_tensor_value_info(descriptor))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def descriptor_width(model: onnx.ModelProto, descriptor: str, input_name: str) -> int:
    """D of the descriptor [N, D]: from shape inference, else by running one blank patch."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for info in [*inferred.graph.value_info, *inferred.graph.output]:
            if info.name == descriptor:
                dims = info.type.tensor_type.shape.dim
                if len(dims) == 2 and dims[1].dim_value > 0:
                    return int(dims[1].dim_value)
    except (onnx.shape_inference.InferenceError, ValueError) as exc:
        logger.debug("shape inference failed: %s", exc)
    import numpy as np

    feeds = {}
    for graph_input in model.graph.input:
        dims = [d.dim_value or 1 for d in graph_input.type.tensor_type.shape.dim]
        feeds[graph_input.name] = np.zeros(dims, np.float32)
    if input_name not in feeds:
        raise StreamingError(f"the graph has no input {input_name!r}")
    value = descriptor_session(model, descriptor).run([descriptor], feeds)[0]
    if value.ndim != 2:
        raise StreamingError(f"{descriptor!r} is not [N, D] but has shape {value.shape}")
    return int(value.shape[1])


def stream_trunk(
    model: onnx.ModelProto,
    chunk: int = 1,
    input_name: str = "patches",
    descriptor: str | None = None,
) -> onnx.ModelProto:
    """A copy of ``model`` whose trunk runs ``chunk`` patches at a time inside a ``Loop``.

    ``descriptor``: the trunk's output tensor (found by :func:`find_trunk_output` when None).
    Raises :class:`StreamingError` when the graph is already streamed or cannot be cut cleanly.
    """
    if chunk < 1:
        raise StreamingError("chunk must be >= 1")
    if is_streamed(model):
        raise StreamingError("the graph is already streamed")
    out_model = onnx.ModelProto()
    out_model.CopyFrom(model)
    graph = out_model.graph
    descriptor = descriptor or find_trunk_output(out_model)
    width = descriptor_width(out_model, descriptor, input_name)
    producer, consumers = _graph_links(graph)
    if descriptor not in producer:
        raise StreamingError(f"no node makes {descriptor!r}")
    body_ids, body_nodes = _trunk_nodes(graph, producer, consumers, descriptor, input_name)
    body, n_moved = _loop_body(body_nodes, input_name, descriptor, chunk)
    _install_loop(graph, body, body_ids, body_nodes, input_name, descriptor, chunk, width)
    logger.info(
        "trunk streamed: %d nodes run %d patch(es) at a time (descriptor %s, width %d)",
        n_moved,
        chunk,
        descriptor,
        width,
    )
    return out_model


def _graph_links(
    graph: onnx.GraphProto,
) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """The node making each tensor, and the nodes reading it."""
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    return producer, consumers


def _trunk_nodes(
    graph: onnx.GraphProto,
    producer: dict[str, onnx.NodeProto],
    consumers: dict[str, list[onnx.NodeProto]],
    descriptor: str,
    input_name: str,
) -> tuple[set[int], list[onnx.NodeProto]]:
    """The nodes that go into the loop body (ids and nodes, in graph order); refuses a trunk
    whose intermediate values are also read outside it."""
    ancestors: set[int] = set()
    stack = [producer[descriptor]]
    while stack:
        node = stack.pop()
        if id(node) in ancestors:
            continue
        ancestors.add(id(node))
        stack.extend(producer[name] for name in node.input if name in producer)
    on_input: set[int] = set()
    stack = list(consumers[input_name])
    while stack:
        node = stack.pop()
        if id(node) in on_input:
            continue
        on_input.add(id(node))
        for out in node.output:
            stack.extend(consumers[out])

    # The body: what the descriptor needs from the patches, plus the constant-only nodes (weight
    # dequantization, shape constants) that nothing but the body reads, so that the body holds
    # whole QDQ groups for onnxruntime to fuse.
    body_ids = ancestors & on_input
    graph_outputs = {o.name for o in graph.output}
    grown = True
    while grown:
        grown = False
        for node in graph.node:
            if id(node) not in ancestors or id(node) in body_ids:
                continue
            readers = [c for out in node.output for c in consumers[out]]
            only_body_reads = readers and all(id(c) in body_ids for c in readers)
            if only_body_reads and not set(node.output) & graph_outputs:
                body_ids.add(id(node))
                grown = True
    body_nodes = [node for node in graph.node if id(node) in body_ids]
    leaking = [
        node.name or node.op_type
        for node in body_nodes
        if descriptor not in node.output
        and any(id(c) not in body_ids for out in node.output for c in consumers[out])
    ]
    if leaking:
        raise StreamingError(f"trunk values are also used outside the trunk: {leaking}")

    return body_ids, body_nodes


def _loop_body(
    body_nodes: list[onnx.NodeProto], input_name: str, descriptor: str, chunk: int
) -> tuple[onnx.GraphProto, int]:
    """The ``Loop`` body: slice chunk ``i`` of the patches, run the trunk on it, append its
    descriptors. Returns the body and the number of trunk nodes moved into it."""
    p = STREAM_PREFIX
    chunk_name = f"{p}chunk"
    moved = []
    for node in body_nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for k, name in enumerate(copy.input):
            if name == input_name:
                copy.input[k] = chunk_name
        for k, name in enumerate(copy.output):
            if name == descriptor:
                copy.output[k] = f"{p}chunk_descriptor"
        moved.append(copy)
    chunk_const = helper.make_tensor(f"{p}chunk_size_value", TensorProto.INT64, [1], [chunk])
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], [f"{p}chunk_size"], value=chunk_const),
            helper.make_node("Unsqueeze", [f"{p}i", f"{p}axis0"], [f"{p}i1"]),
            helper.make_node("Mul", [f"{p}i1", f"{p}chunk_size"], [f"{p}start"]),
            helper.make_node("Add", [f"{p}start", f"{p}chunk_size"], [f"{p}end"]),
            helper.make_node(
                "Slice", [input_name, f"{p}start", f"{p}end", f"{p}axis0"], [chunk_name]
            ),
            *moved,
            helper.make_node(
                "Concat", [f"{p}acc_in", f"{p}chunk_descriptor"], [f"{p}acc_out"], axis=0
            ),
            helper.make_node("Identity", [f"{p}cond_in"], [f"{p}cond_out"]),
        ],
        "stream_trunk_body",
        [
            helper.make_tensor_value_info(f"{p}i", TensorProto.INT64, []),
            helper.make_tensor_value_info(f"{p}cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info(f"{p}acc_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info(f"{p}cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(f"{p}acc_out", TensorProto.FLOAT, None),
        ],
    )
    return body, len(moved)


def _install_loop(
    graph: onnx.GraphProto,
    body: onnx.GraphProto,
    body_ids: set[int],
    body_nodes: list[onnx.NodeProto],
    input_name: str,
    descriptor: str,
    chunk: int,
    width: int,
) -> None:
    """Replace the trunk nodes of ``graph`` by the ``Loop`` over ``body`` (in place)."""
    p = STREAM_PREFIX
    # Trip count ceil(N / chunk); the descriptors start as an empty [0, D] tensor.
    outer = [
        helper.make_node("Shape", [input_name], [f"{p}n"], start=0, end=1),
        helper.make_node("Add", [f"{p}n", f"{p}chunk_minus_1"], [f"{p}n_up"]),
        helper.make_node("Div", [f"{p}n_up", f"{p}chunk_outer"], [f"{p}trips_1"]),
        helper.make_node("Squeeze", [f"{p}trips_1", f"{p}axis0"], [f"{p}trips"]),
        helper.make_node(
            "Loop",
            [f"{p}trips", f"{p}true", f"{p}empty"],
            [descriptor],
            name=f"{p}loop",
            body=body,
        ),
    ]
    kept = [node for node in graph.node if id(node) not in body_ids]
    del graph.node[:]
    graph.node.extend(outer + kept)
    graph.initializer.extend(
        [
            helper.make_tensor(f"{p}chunk_minus_1", TensorProto.INT64, [1], [chunk - 1]),
            helper.make_tensor(f"{p}chunk_outer", TensorProto.INT64, [1], [chunk]),
            helper.make_tensor(f"{p}axis0", TensorProto.INT64, [1], [0]),
            helper.make_tensor(f"{p}true", TensorProto.BOOL, [], [True]),
            helper.make_tensor(f"{p}empty", TensorProto.FLOAT, [0, width], []),
        ]
    )
    body_values = {out for node in body_nodes for out in node.output} - {descriptor}
    value_info = [v for v in graph.value_info if v.name not in body_values]
    del graph.value_info[:]
    graph.value_info.extend(value_info)


def write_streamed(source: Path, target: Path, chunk: int) -> None:
    """Rewrite the model file ``source`` with :func:`stream_trunk` and save it, metadata kept, to
    ``target`` (may be ``source``)."""
    streamed = stream_trunk(onnx.load(str(source)), chunk)
    onnx.checker.check_model(streamed)
    onnx.save(streamed, str(target))


def compare_engines(
    original: QualityEngine, candidate: QualityEngine, images: list[Path]
) -> tuple[float, float, int]:
    """Both engines on each image at both grids: (largest score difference, largest difference
    of any output, number of bags of ``MIN_PATCHES_TO_SPLIT`` or more patches)."""
    import numpy as np

    from desktop_app.core.image_io import load_rgb
    from desktop_app.core.inference import MIN_PATCHES_TO_SPLIT
    from desktop_app.core.tiling import patch_positions

    worst_score = worst_output = 0.0
    large_bags = 0
    for path in images:
        image = load_rgb(path)
        grids: tuple[GridName, ...] = ("live", "capture")
        for grid in grids:
            patches, layout = original.prepare(image, grid)
            positions = patch_positions(layout)
            a = original.run_patches(patches, positions)
            b = candidate.run_patches(patches, positions)
            large_bags += int(len(patches) >= MIN_PATCHES_TO_SPLIT)
            worst_score = max(worst_score, float(np.abs(a[0] - b[0]).max()))
            for x, y in zip(a, b, strict=True):
                worst_output = max(worst_output, float(np.abs(x - y).max()))
    return worst_score, worst_output, large_bags


def stream_model_file(
    source: Path,
    target: Path,
    chunk: int = 1,
    check_images: list[Path] | None = None,
    tolerance: float | None = None,
) -> dict[str, float]:
    """Stream an exported model file (metadata kept) and check it against the original.

    Each check image is scored by both files at the live and capture grids. fp32 must agree on
    every output within ``tolerance`` (default 1e-4); int8 graphs fuse their integer kernels a
    little differently inside the loop, so for them ``tolerance`` (default 0.01) bounds the score.
    Nothing is written when a check fails. Returns the largest differences seen.
    """
    from desktop_app.core.inference import QualityEngine
    from model_export.model.onnx_files import checked_replacement

    with checked_replacement(source, target) as tmp:
        write_streamed(source, tmp, chunk)
        original = QualityEngine(source, providers="cpu")
        candidate = QualityEngine(tmp, providers="cpu")
        int8 = original.meta.precision == "int8"
        limit = tolerance if tolerance is not None else (0.01 if int8 else 1e-4)
        worst_score, worst_output, _ = compare_engines(original, candidate, check_images or [])
        checked = worst_score if int8 else worst_output
        if not checked <= limit:
            raise StreamingError(
                f"the streamed model differs from {source.name} by {checked:.3g} "
                f"(> {limit:g}); not written"
            )
        del original, candidate
    return {"max_abs_output_diff": worst_output, "max_abs_score_diff": worst_score}
