from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from desktop_app.core.inference import QualityEngine
from desktop_app.core.model_meta import GridSpec, InputSpec
from desktop_app.core.tiling import image_to_patches, normalise_patches, plan_layout


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def engine(test_model_path: Path) -> QualityEngine:
    return QualityEngine(test_model_path, providers="cpu")


def test_layout_covers_image_without_padding() -> None:
    layout = plan_layout(320, 640, 224, GridSpec(max_long_side=672))
    assert (layout.rows, layout.cols) == (2, 3)
    assert layout.resized_hw == (320, 640)
    assert layout.boxes[0].tolist() == [0, 0, 224, 224]
    assert layout.boxes[-1].tolist() == [640 - 224, 320 - 224, 640, 320]


def test_layout_downscales_large_frames_and_never_enlarges_beyond_patch() -> None:
    big = plan_layout(3000, 4000, 224, GridSpec(max_long_side=896))
    assert big.resized_hw == (672, 896) and (big.rows, big.cols) == (3, 4)
    small = plan_layout(100, 150, 224, GridSpec(max_long_side=896))
    assert small.resized_hw == (224, 336)


def test_a_short_side_cap_keeps_a_4_3_still_to_two_rows_and_leaves_training_photos_alone() -> None:
    capped = GridSpec(max_long_side=672, max_short_side=448)
    still = plan_layout(3000, 4000, 224, capped)
    assert still.resized_hw == (448, 597) and (still.rows, still.cols) == (2, 3)
    assert plan_layout(3000, 4000, 224, GridSpec(max_long_side=672)).n == 9
    # a 640x320 DermNet photo, a 512x384 FUSeg photo and a 16:9 webcam frame: as without the cap
    for height, width in ((320, 640), (384, 512), (720, 1280)):
        a = plan_layout(height, width, 224, capped)
        b = plan_layout(height, width, 224, GridSpec(max_long_side=672))
        assert (a.resized_hw, a.ys, a.xs) == (b.resized_hw, b.ys, b.xs)


def test_layout_respects_patch_budget() -> None:
    layout = plan_layout(300, 30000, 32, GridSpec(max_long_side=30000, max_patches=20))
    assert layout.n <= 20


def test_normalisation_follows_input_spec() -> None:
    patch = np.zeros((1, 2, 2, 3), np.uint8)
    patch[..., 0] = 255
    rgb = normalise_patches(patch, InputSpec())
    assert rgb.shape == (1, 3, 2, 2) and rgb[0, 0].max() == 1.0 and rgb[0, 2].max() == 0.0
    spec = InputSpec(colour_order="BGR", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    bgr = normalise_patches(patch, spec)
    assert bgr[0, 2, 0, 0] == pytest.approx(1.0) and bgr[0, 0, 0, 0] == pytest.approx(-1.0)


def test_grid_maps_patches_to_image_regions(engine: QualityEngine) -> None:
    # left half flat grey, right half textured: 4 columns of 32-pixel patches over 128 pixels
    image = np.full((64, 128, 3), 128, np.uint8)
    image[:, 64:] = textured(64, 64)
    patches, layout = engine.prepare(image, grid="capture")
    assert patches.shape == (layout.n, 3, 32, 32) and (layout.rows, layout.cols) == (2, 4)
    per_patch_std = patches.reshape(layout.rows, layout.cols, -1).std(axis=2)
    assert np.all(per_patch_std[:, :2] == 0.0)
    assert np.all(per_patch_std[:, 2:] > 0.1)
    result = engine.score(image)
    assert result.patch_scores.shape == (2, 4)
    assert np.all(result.patch_scores[:, 2:] > result.patch_scores[:, :2])
    assert result.mil_weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.mil_weights[:, 2:].sum() > 0.9


def test_engine_output_is_complete_and_deterministic(engine: QualityEngine) -> None:
    image = textured(200, 300, seed=3)
    first = engine.score(image)
    second = engine.score(image.copy())
    assert first.score == second.score
    np.testing.assert_array_equal(first.patch_scores, second.patch_scores)
    assert 0.0 <= first.score <= 1.0
    assert first.level_probs.shape == (5,)
    assert first.level_probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert 1.0 <= first.expected_level <= 5.0
    assert set(first.reasons) == {"blur", "dark"}
    assert first.accepted == (first.score >= first.threshold)
    assert set(first.timings_ms) == {"preprocess", "inference", "total"}


def test_blur_lowers_score_and_raises_blur_reason(engine: QualityEngine) -> None:
    sharp = textured(96, 128, seed=5)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4.0)
    good, bad = engine.score(sharp), engine.score(blurred)
    assert good.accepted and not bad.accepted
    assert bad.reasons["blur"] > 0.5 > good.reasons["blur"]


def test_bgr_frames_are_converted(engine: QualityEngine) -> None:
    image = textured(64, 64, seed=9)
    as_rgb, _ = engine.prepare(image, colour_order="RGB")
    as_bgr, _ = engine.prepare(np.ascontiguousarray(image[:, :, ::-1]), colour_order="BGR")
    np.testing.assert_array_equal(as_rgb, as_bgr)


def test_live_grid_uses_fewer_or_equal_patches(engine: QualityEngine) -> None:
    frame = textured(720, 1280, seed=1)
    live, capture = engine.score(frame, grid="live"), engine.score(frame, grid="capture")
    assert live.layout.n <= capture.layout.n
    assert (live.layout.rows, live.layout.cols) == (2, 3)


def test_grey_and_rgba_frames_are_accepted(engine: QualityEngine) -> None:
    image_to_patches(textured(40, 40), 32, GridSpec(max_long_side=64))
    grey = textured(64, 64)[:, :, 0]
    rgba = np.dstack([textured(64, 64), np.full((64, 64), 255, np.uint8)])
    assert engine.score(grey).layout.n == engine.score(rgba).layout.n


def test_positions_are_patch_centres_in_unit_square() -> None:
    from desktop_app.core.tiling import patch_positions

    layout = plan_layout(320, 640, 224, GridSpec(max_long_side=672))
    pos = patch_positions(layout)
    assert pos.shape == (6, 2)
    assert pos[0, 0] == pytest.approx(224 / 640 - 1) and pos[0, 1] == pytest.approx(224 / 320 - 1)
    assert pos[-1, 0] == pytest.approx(1 - 224 / 640) and pos[1, 0] == pytest.approx(0.0)


def test_a_sliver_image_is_scored_in_bounded_memory(engine: QualityEngine) -> None:
    """A 1 x 40,000 px strip used to be enlarged to 224 x 8.96 M px (6.4 GB) before tiling."""
    layout = plan_layout(1, 40_000, 224, GridSpec(max_long_side=896, max_patches=64))
    height, width = layout.resized_hw
    assert height * width * 3 <= 224 * 224 * 64 * 3  # at most what 64 patches can cover
    sliver = np.full((1, 40_000, 3), 128, np.uint8)
    result = engine.score(sliver)  # the test model: patch 32, at most 64 patches
    assert np.isfinite(result.score)
    assert result.layout.resized_hw[1] <= 32 * 64


def test_split_bags_give_the_same_result_as_one_piece(tmp_path: Path) -> None:
    """The trunk/head seam (schema 2): a bag split over two sessions, each half's trunk run at
    the same time and the head run once on both halves, gives every output of the same graph
    run in one piece (a schema 1 file without the seam), for every bag size."""
    from onnx_factory import make_meta, write_model

    split = QualityEngine(write_model(tmp_path / "seam.onnx"), "cpu", intra_op_threads=2)
    whole = QualityEngine(
        write_model(tmp_path / "v1.onnx", meta=make_meta(seam=False)), "cpu", intra_op_threads=2
    )
    assert split.splits_bags and split.meta.schema_version == 2
    assert not whole.splits_bags and whole.meta.schema_version == 1
    rng = np.random.default_rng(3)
    for n in range(1, 10):
        patches = rng.random((n, 3, 32, 32), dtype=np.float32)
        patches[: n // 2] = 0.5 + 0.02 * (patches[: n // 2] - 0.5)  # soft ones beside sharp
        positions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        for a, b in zip(
            split.run_patches(patches, positions),
            whole.run_patches(patches, positions),
            strict=True,
        ):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_one_thread_runs_bags_in_one_piece(test_model_path: Path) -> None:
    assert not QualityEngine(test_model_path, "cpu", intra_op_threads=1).splits_bags
    assert QualityEngine(test_model_path, "cpu", intra_op_threads=2).splits_bags


def test_cancelled_split_run_raises_and_leaves_no_thread(test_model_path: Path) -> None:
    """A run cancelled through its RunOptions (the app's "stop this check") raises in the
    calling thread from either half, and the helper thread of the split has ended."""
    import threading

    import onnxruntime as ort

    engine = QualityEngine(test_model_path, "cpu", intra_op_threads=2)
    cancelled = ort.RunOptions()
    cancelled.terminate = True
    before = threading.active_count()
    with pytest.raises(Exception, match=r"(?i)terminat"):
        engine.score(textured(128, 128), "capture", run_options=cancelled)
    assert threading.active_count() == before
    assert engine.score(textured(128, 128), "capture").layout.n >= 4  # usable afterwards
