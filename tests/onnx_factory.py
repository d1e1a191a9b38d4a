"""Build small contract-conforming ONNX models with the onnx package alone (no torch needed).

The handmade graph is a real, if simple, quality model: per-patch sharpness is the mean absolute
Laplacian of the grey image, mapped through a logistic to a patch score; MIL weights are a softmax
over sharpness; the bag score is the weighted mean of patch scores. It follows the exact graph
interface of the metadata contract, so the engine and app exercise the real code path: its
"trunk" gives each patch a descriptor ``[N, 2]`` (sharpness, mean grey) and its "head" reads only
that, so by default (as the bundled models) it has the trunk/head seam of schema 2
(``model_export.export.seam``), and the engine splits its bags.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from desktop_app.core.model_meta import (
    METADATA_KEY,
    SEAM_GRAPH_IO,
    DecisionSpec,
    GraphIO,
    GridSpec,
    ModelMeta,
    TilingSpec,
)
from model_export.export.seam import open_seam

SHARPNESS_CENTRE = 0.02
SHARPNESS_GAIN = 150.0
DESCRIPTOR = "trunk_descriptors"


def make_meta(
    patch_size: int = 32, threshold: float = 0.5, seam: bool = True, **overrides: object
) -> ModelMeta:
    """The test model's record; ``seam=False``: a schema 1 record (no trunk/head seam)."""
    meta = ModelMeta(
        model_name="test-sharpness",
        model_version="0.0.1-test",
        created_utc="2026-01-01T00:00:00Z",
        training_data="none: handmade test graph",
        tiling=TilingSpec(
            patch_size=patch_size,
            live=GridSpec(max_long_side=patch_size * 3),
            capture=GridSpec(max_long_side=patch_size * 4),
        ),
        reason_names=("blur", "dark"),
        decision=DecisionSpec(threshold=threshold),
        schema_version=2 if seam else 1,
        graph_io=SEAM_GRAPH_IO if seam else GraphIO(),
    )
    return dataclasses.replace(meta, **overrides)  # type: ignore[arg-type]


def build_graph(
    patch_size: int, n_reasons: int = 2, k_levels: int = 5, seam: bool = True
) -> onnx.ModelProto:
    p = patch_size
    inits = [
        numpy_helper.from_array(
            np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1), "grey_w"
        ),
        numpy_helper.from_array(
            np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32).reshape(1, 1, 3, 3), "lap_w"
        ),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes_chw"),
        numpy_helper.from_array(np.array([0], np.int64), "axes_0"),
        numpy_helper.from_array(np.array([1], np.int64), "axes_1"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "shape_flat"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape_row"),
        numpy_helper.from_array(np.array(SHARPNESS_CENTRE, np.float32), "sharp_c"),
        numpy_helper.from_array(np.array(SHARPNESS_GAIN, np.float32), "sharp_g"),
        numpy_helper.from_array(np.array(40.0, np.float32), "att_g"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
        numpy_helper.from_array(
            np.linspace(2.0, -3.0, k_levels - 1).astype(np.float32).reshape(1, -1), "cut"
        ),
        numpy_helper.from_array(np.array(0.25, np.float32), "dark_c"),
        numpy_helper.from_array(np.array(20.0, np.float32), "dark_g"),
        numpy_helper.from_array(np.array(0, np.int64), "column_0"),
        numpy_helper.from_array(np.array(1, np.int64), "column_1"),
    ]
    nodes = [
        # trunk: each patch's descriptor [N, 2] = (sharpness, mean grey)
        helper.make_node("Conv", ["patches", "grey_w"], ["grey"]),
        helper.make_node("Conv", ["grey", "lap_w"], ["lap"]),
        helper.make_node("Abs", ["lap"], ["lap_abs"]),
        helper.make_node("ReduceMean", ["lap_abs", "axes_chw"], ["sharp_n"], keepdims=0),
        helper.make_node("ReduceMean", ["grey", "axes_chw"], ["grey_n"], keepdims=0),
        helper.make_node("Unsqueeze", ["sharp_n", "axes_1"], ["sharp_col"]),
        helper.make_node("Unsqueeze", ["grey_n", "axes_1"], ["grey_col"]),
        helper.make_node("Concat", ["sharp_col", "grey_col"], [DESCRIPTOR], axis=1),
        # head: reads only the descriptors
        helper.make_node("Gather", [DESCRIPTOR, "column_0"], ["sharp"], axis=1),
        helper.make_node("Gather", [DESCRIPTOR, "column_1"], ["patch_grey"], axis=1),
        helper.make_node("Sub", ["sharp", "sharp_c"], ["sharp_d"]),
        helper.make_node("Mul", ["sharp_d", "sharp_g"], ["patch_logit"]),
        helper.make_node("Sigmoid", ["patch_logit"], ["patch_scores"]),
        helper.make_node("Mul", ["sharp", "att_g"], ["att_raw"]),
        # positions do not change this test model's output, but the input is consumed
        helper.make_node("ReduceSum", ["positions", "axes_1"], ["pos_sum"], keepdims=0),
        helper.make_node("Mul", ["pos_sum", "zero"], ["pos_zero"]),
        helper.make_node("Add", ["att_raw", "pos_zero"], ["att_logit"]),
        helper.make_node("Softmax", ["att_logit"], ["mil_weights"], axis=0),
        helper.make_node("Mul", ["mil_weights", "patch_scores"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axes_0"], ["score"], keepdims=1),
        # ordinal levels from the pooled score: cumulative P(y > k) = sigmoid(logit(s) + cut_k)
        helper.make_node("Sub", ["one", "score"], ["one_minus"]),
        helper.make_node("Add", ["one_minus", "eps"], ["one_minus_e"]),
        helper.make_node("Add", ["score", "eps"], ["score_e"]),
        helper.make_node("Div", ["score_e", "one_minus_e"], ["odds"]),
        helper.make_node("Log", ["odds"], ["logit"]),
        helper.make_node("Reshape", ["logit", "shape_row"], ["logit_row"]),
        helper.make_node("Add", ["logit_row", "cut"], ["cum_logit"]),
        helper.make_node("Sigmoid", ["cum_logit"], ["cum"]),
    ]
    # level_probs = [1 - c1, c1 - c2, ..., c_{K-1}]
    ones_row = numpy_helper.from_array(np.ones((1, 1), np.float32), "ones_row")
    zeros_row = numpy_helper.from_array(np.zeros((1, 1), np.float32), "zeros_row")
    inits += [ones_row, zeros_row]
    nodes += [
        helper.make_node("Concat", ["ones_row", "cum"], ["upper"], axis=1),
        helper.make_node("Concat", ["cum", "zeros_row"], ["lower"], axis=1),
        helper.make_node("Sub", ["upper", "lower"], ["level_probs"]),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("level_probs", TensorProto.FLOAT, [1, k_levels]),
        helper.make_tensor_value_info("patch_scores", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("mil_weights", TensorProto.FLOAT, ["N"]),
    ]
    if n_reasons:
        # reason 0 "blur": 1 - pooled score; reason 1 "dark": mean grey below 0.25
        nodes += [
            helper.make_node("Sub", ["one", "score"], ["blur_p"]),
            helper.make_node("ReduceMean", ["patch_grey", "axes_0"], ["bright"], keepdims=1),
            helper.make_node("Sub", ["dark_c", "bright"], ["dark_d"]),
            helper.make_node("Mul", ["dark_d", "dark_g"], ["dark_l"]),
            helper.make_node("Sigmoid", ["dark_l"], ["dark_p"]),
            helper.make_node("Concat", ["blur_p", "dark_p"], ["reasons_flat"], axis=0),
            helper.make_node("Reshape", ["reasons_flat", "shape_row"], ["reasons"]),
        ]
        outputs.append(helper.make_tensor_value_info("reasons", TensorProto.FLOAT, [1, n_reasons]))
    graph = helper.make_graph(
        nodes,
        "test_sharpness_mil",
        [
            helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["N", 3, p, p]),
            helper.make_tensor_value_info("positions", TensorProto.FLOAT, ["N", 2]),
        ],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if seam:
        model = open_seam(model, DESCRIPTOR, 2)
    onnx.checker.check_model(model)
    return model


def write_model(
    path: Path,
    meta: ModelMeta | None = None,
    metadata_json: str | None = None,
    graph: onnx.ModelProto | None = None,
) -> Path:
    """Write a test model; ``metadata_json`` overrides the serialised ``meta`` (for bad cases)."""
    meta = meta or make_meta()
    model = graph or build_graph(
        meta.tiling.patch_size, n_reasons=len(meta.reason_names), seam=meta.graph_io.has_seam
    )
    del model.metadata_props[:]
    text = meta.to_json() if metadata_json is None else metadata_json
    if text != "":
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, text
    onnx.save(model, str(path))
    return path
