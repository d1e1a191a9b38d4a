"""Open the seam between the trunk and the MIL head of an exported graph (metadata schema 2).

The head then also takes the descriptors of earlier patches of the same bag (input
``descriptors_in`` ``[M, D]``, empty by default) and the graph also gives its own patches'
descriptors (output ``descriptors`` ``[N, D]``), so the app can run a bag's patches through the
trunk in two halves at the same time and pool them once (``desktop_app.core.inference``). With
only ``patches`` and ``positions`` fed, every output is what it was: the seam is a ``Concat``
with an empty tensor in front of the head and an ``Identity`` out.

Only the onnx package is needed (no torch), so the tests' handmade graphs use it too.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from desktop_app.core.model_meta import METADATA_KEY, SEAM_GRAPH_IO, ModelMeta
from model_export.model.onnx_files import add_rewrite_arguments, checked_replacement

logger = logging.getLogger(__name__)

SEAM_PREFIX = "seam/"
BAG_LENGTH = "M_plus_N"  # symbolic length of ``positions`` and the per-patch outputs


class SeamError(ValueError):
    """The graph cannot take a seam (it has one, or the descriptor tensor is not there)."""


def has_seam(model: onnx.ModelProto) -> bool:
    return any(node.name.startswith(SEAM_PREFIX) for node in model.graph.node)


def open_seam(model: onnx.ModelProto, descriptor: str, width: int) -> onnx.ModelProto:
    """A copy of ``model`` whose head reads ``Concat(descriptors_in, descriptor)`` instead of
    ``descriptor`` (the trunk's ``[N, width]`` output), with ``descriptor`` also given out as
    ``descriptors``."""
    if has_seam(model):
        raise SeamError("the graph already has a trunk/head seam")
    io = SEAM_GRAPH_IO
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    reader_at = [k for k, node in enumerate(graph.node) if descriptor in node.input]
    readers = [graph.node[k] for k in reader_at]
    if not readers:
        raise SeamError(f"no node reads the descriptor tensor {descriptor!r}")
    if descriptor in {o.name for o in graph.output}:
        raise SeamError(f"the descriptor tensor {descriptor!r} is already a graph output")
    pooled = f"{SEAM_PREFIX}bag_descriptors"
    first_reader = reader_at[0]
    for node in readers:
        for k, name in enumerate(node.input):
            if name == descriptor:
                node.input[k] = pooled
    seam_nodes = [
        helper.make_node(
            "Concat",
            [io.input_prior_descriptors, descriptor],
            [pooled],
            axis=0,
            name=f"{SEAM_PREFIX}concat",
        ),
        helper.make_node(
            "Identity", [descriptor], [io.output_descriptors], name=f"{SEAM_PREFIX}out"
        ),
    ]
    # in front of the first reader: the descriptor is made before it, so the order stays valid
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes[:first_reader] + seam_nodes + nodes[first_reader:])
    graph.input.append(
        helper.make_tensor_value_info(io.input_prior_descriptors, TensorProto.FLOAT, ["M", width])
    )
    graph.initializer.append(
        helper.make_tensor(io.input_prior_descriptors, TensorProto.FLOAT, [0, width], [])
    )
    graph.output.append(
        helper.make_tensor_value_info(io.output_descriptors, TensorProto.FLOAT, ["N", width])
    )
    _separate_bag_length(graph)
    return out


def _separate_bag_length(graph: onnx.GraphProto) -> None:
    """After the seam, the head sees M + N patches while ``patches`` has N: give ``positions``
    and the per-patch outputs their own symbolic length, and drop the intermediate shapes that
    name N (onnxruntime plans buffer reuse from equal symbols and fails when the lengths differ;
    it infers the shapes again at load)."""
    io = SEAM_GRAPH_IO
    patches = next(i for i in graph.input if i.name == io.input_patches)
    n_symbol = patches.type.tensor_type.shape.dim[0].dim_param
    per_patch = {io.input_positions, io.output_patch_scores, io.output_mil_weights}
    for value in [*graph.input, *graph.output]:
        if value.name in per_patch:
            value.type.tensor_type.shape.dim[0].dim_param = BAG_LENGTH
    if not n_symbol:
        return
    kept = [
        v
        for v in graph.value_info
        if all(d.dim_param != n_symbol for d in v.type.tensor_type.shape.dim)
    ]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def with_seam_metadata(model: onnx.ModelProto) -> ModelMeta:
    """Rewrite ``model``'s metadata record (in place) to schema 2 (or the record's own, if
    newer) with the seam named; returns the new record."""
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_json(props.get(METADATA_KEY))
    new_meta = dataclasses.replace(
        meta,
        schema_version=max(meta.schema_version, 2),
        graph_io=dataclasses.replace(
            meta.graph_io,
            input_prior_descriptors=SEAM_GRAPH_IO.input_prior_descriptors,
            output_descriptors=SEAM_GRAPH_IO.output_descriptors,
        ),
    )
    new_meta.validate()
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = new_meta.to_json()
    return new_meta


def seam_model_file(source: Path, target: Path, descriptor: str, width: int) -> ModelMeta:
    """``source`` with the seam opened and its metadata at schema 2, saved to ``target`` (may be
    ``source``)."""
    model = open_seam(onnx.load(str(source)), descriptor, width)
    meta = with_seam_metadata(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    logger.info("trunk/head seam opened at %s (width %d): %s", descriptor, width, target.name)
    return meta


def find_descriptor(model: onnx.ModelProto) -> str:
    """The trunk's descriptor tensor ``[N, D]``: the output of the streamed trunk's ``Loop``.

    Only a streamed trunk (``skin-capture-model stream``) takes a seam: the head's run gets no
    patches of its own, and the loop runs zero times on them, while a one-pass VGG trunk cannot
    reshape an empty batch."""
    from model_export.model.streaming import STREAM_PREFIX

    for node in model.graph.node:
        if node.op_type == "Loop" and node.name.startswith(STREAM_PREFIX):
            return str(node.output[0])
    raise SeamError("only a streamed trunk takes a seam: run 'skin-capture-model stream' first")


def seam_existing_file(
    source: Path, target: Path, check_images: list[Path] | None = None
) -> dict[str, float]:
    """Open the seam of an exported file (metadata rewritten to schema 2, weights and every
    other tensor unchanged) and save it to ``target`` (may be ``source``), after checking on each
    check image, at both grids, that the app's engine splitting the bag gives every output of the
    original file run in one piece (to 1e-5). Nothing is written when a check fails. Returns the
    largest difference seen and the number of split bags checked."""
    from desktop_app.core.inference import QualityEngine
    from model_export.model.streaming import compare_engines, descriptor_width

    model = onnx.load(str(source))
    descriptor = find_descriptor(model)
    width = descriptor_width(model, descriptor, SEAM_GRAPH_IO.input_patches)
    with checked_replacement(source, target) as tmp:
        seam_model_file(source, tmp, descriptor, width)
        original = QualityEngine(source, providers="cpu", intra_op_threads=1)
        split = QualityEngine(tmp, providers="cpu", intra_op_threads=2)
        if not split.splits_bags:
            raise SeamError(f"the engine does not split bags of {source.name} with the seam")
        _, worst, checked = compare_engines(original, split, check_images or [])
        if not worst <= 1e-5:
            raise SeamError(f"split bags differ from {source.name} by {worst:.3g}; not written")
        del original, split
    return {"max_abs_output_diff": worst, "split_bags_checked": float(checked)}


def add_parser(subparsers: Any) -> None:
    """The ``seam`` subcommand."""
    parser = subparsers.add_parser(
        "seam",
        help="open the trunk/head seam of an exported model (schema 2: the app splits bags over "
        "two cores), checked",
    )
    add_rewrite_arguments(parser)
    parser.add_argument("--check-images", type=Path, help="folder of photos to check it on")
    parser.add_argument("--max-check-images", type=int, default=16)
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from desktop_app.core.image_io import iter_image_files

    images = []
    if args.check_images is not None:
        images = sorted(iter_image_files([args.check_images]))[: args.max_check_images]
    result = seam_existing_file(args.model, args.out, images)
    print(
        f"{args.out}: trunk/head seam opened (metadata schema 2); {len(images)} images, "
        f"{int(result['split_bags_checked'])} split bags checked: max |output diff| "
        f"{result['max_abs_output_diff']:.2e}"
    )
    return 0
