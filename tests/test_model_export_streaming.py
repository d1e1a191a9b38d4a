"""The trunk-streaming rewrite: same outputs as the one-pass graph for every bag size and chunk,
the contract untouched, and a bounded activation peak."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from desktop_app.core.model_meta import SCHEMA_VERSION, ModelMeta  # noqa: E402
from model_export.export.onnx_graph import export_onnx, output_names  # noqa: E402
from model_export.model.features import build_trunk  # noqa: E402
from model_export.model.network import DESCRIPTOR_DIM, PatchMILQualityNet, QualityHead  # noqa: E402
from model_export.model.streaming import (  # noqa: E402
    StreamingError,
    find_trunk_output,
    is_streamed,
    stream_trunk,
)

pytestmark = [pytest.mark.torch]

PATCH = 32


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    head = QualityHead(n_reasons=2, embed_dim=16, hidden_dim=32)
    head.set_feature_normalisation(torch.rand(DESCRIPTOR_DIM), torch.rand(DESCRIPTOR_DIM) + 0.5)
    model = PatchMILQualityNet(head, build_trunk("random", seed=0)).eval()
    meta = ModelMeta(model_name="t", model_version="0", created_utc="2026-01-01T00:00:00Z")
    path = tmp_path_factory.mktemp("stream") / "plain.onnx"
    export_onnx(model, PATCH, path, meta)
    return path


def _run(model: onnx.ModelProto, patches: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(output_names(2), {"patches": patches, "positions": positions}))


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_streamed_graph_gives_the_same_outputs(plain_model: Path, chunk: int) -> None:
    plain = onnx.load(str(plain_model))
    streamed = stream_trunk(plain, chunk)
    onnx.checker.check_model(streamed)
    assert is_streamed(streamed) and not is_streamed(plain)
    assert [i.name for i in streamed.graph.input] == ["patches", "positions"]
    assert [o.name for o in streamed.graph.output] == output_names(2)
    assert {p.key: p.value for p in streamed.metadata_props} == {
        p.key: p.value for p in plain.metadata_props
    }
    rng = np.random.default_rng(chunk)
    for n in (1, 2, 5, 7):  # bag sizes below, at and not a multiple of the chunk
        patches = rng.random((n, 3, PATCH, PATCH), dtype=np.float32)
        positions = rng.random((n, 2), dtype=np.float32) * 2 - 1
        expected = _run(plain, patches, positions)
        got = _run(streamed, patches, positions)
        for e, g in zip(expected, got, strict=True):
            assert e.shape == g.shape
            np.testing.assert_allclose(g, e, atol=1e-5)


def test_the_trunk_moves_into_the_loop(plain_model: Path) -> None:
    plain = onnx.load(str(plain_model))
    descriptor = find_trunk_output(plain)
    assert descriptor.startswith("/trunk/")
    streamed = stream_trunk(plain, 1)
    outer_ops = [n.op_type for n in streamed.graph.node]
    assert "Conv" not in outer_ops and outer_ops.count("Loop") == 1
    loop = next(n for n in streamed.graph.node if n.op_type == "Loop")
    body_ops = [n.op_type for n in loop.attribute[0].g.node]
    assert body_ops.count("Conv") == 13  # VGG16-D
    with pytest.raises(StreamingError, match="already streamed"):
        stream_trunk(streamed, 1)
    with pytest.raises(StreamingError):
        stream_trunk(plain, 0)


_PEAK_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
session = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
patches = np.random.default_rng(0).random((96, 3, 32, 32), dtype=np.float32)
positions = np.zeros((96, 2), np.float32)
before = hwm()
session.run(None, {'patches': patches, 'positions': positions})
print(hwm() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_streaming_lowers_the_activation_peak(plain_model: Path, tmp_path: Path) -> None:
    """Peak resident memory added by one run over a 96-patch bag, each model in a fresh
    process: the one-pass trunk holds the whole bag's activations, the streamed one a patch's."""
    import subprocess
    import sys

    streamed_path = tmp_path / "streamed.onnx"
    onnx.save(stream_trunk(onnx.load(str(plain_model)), 1), str(streamed_path))

    def peak_growth(path: Path) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return int(out.stdout.strip().splitlines()[-1])

    plain_growth = peak_growth(plain_model)
    streamed_growth = peak_growth(streamed_path)
    assert plain_growth > 40e6  # 96 x 64 x 32 x 32 float32 = 25 MB per first-block value
    assert streamed_growth < plain_growth / 3


def test_float16_exact_weights_are_stored_as_float16_with_identical_results(
    tmp_path: Path,
) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from model_export.export.onnx_graph import store_exact_fp16_weights

    rng = np.random.default_rng(0)
    exact = rng.standard_normal((64, 32)).astype(np.float16).astype(np.float32)
    inexact = rng.standard_normal((32, 16)).astype(np.float32)  # not representable in fp16
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w_exact"], ["h"]),
            helper.make_node("MatMul", ["h", "w_inexact"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
        [numpy_helper.from_array(exact, "w_exact"), numpy_helper.from_array(inexact, "w_inexact")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.standard_normal((5, 64)).astype(np.float32)
    before = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    size_before = path.stat().st_size

    saved = store_exact_fp16_weights(path)

    assert saved == exact.nbytes // 2
    assert path.stat().st_size < size_before - exact.nbytes // 4
    kinds = {t.name: t.data_type for t in onnx.load(str(path)).graph.initializer}
    assert kinds == {"w_exact__fp16": TensorProto.FLOAT16, "w_inexact": TensorProto.FLOAT}
    after = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)


def test_the_seam_splits_bags_with_the_same_outputs(plain_model: Path, tmp_path: Path) -> None:
    """``skin-capture-model seam`` on a streamed export: metadata schema 2 with the seam named,
    the app's engine splits bags, and every output is the original's; a second seam, and a seam
    on a one-pass trunk (which cannot take an empty batch), are refused."""
    import cv2

    from desktop_app.core.inference import QualityEngine
    from desktop_app.core.model_meta import GridSpec, TilingSpec
    from model_export.export.onnx_graph import set_metadata
    from model_export.export.seam import SeamError, open_seam, seam_existing_file

    source = tmp_path / "source.onnx"
    model = onnx.load(str(plain_model))
    with pytest.raises(SeamError, match="streamed"):
        seam_existing_file(plain_model, tmp_path / "refused.onnx")
    assert not (tmp_path / "refused.onnx").exists()
    onnx.save(stream_trunk(model, 1), str(source))
    tiling = TilingSpec(PATCH, GridSpec(max_long_side=96), GridSpec(max_long_side=128))
    set_metadata(source, ModelMeta("t", "0", "2026-01-01T00:00:00Z", tiling=tiling))
    images = []
    rng = np.random.default_rng(1)
    for k in range(2):
        images.append(tmp_path / f"photo{k}.png")
        cv2.imwrite(str(images[-1]), rng.integers(0, 256, (90, 150, 3), dtype=np.uint8))
    target = tmp_path / "seam.onnx"
    result = seam_existing_file(source, target, images)
    assert result["max_abs_output_diff"] <= 1e-5 and result["split_bags_checked"] >= 1
    engine = QualityEngine(target, providers="cpu", intra_op_threads=2)
    assert engine.splits_bags and engine.meta.schema_version == SCHEMA_VERSION
    assert engine.meta.graph_io.has_seam
    with pytest.raises(SeamError, match="already"):
        open_seam(onnx.load(str(target)), "anything", 4)
