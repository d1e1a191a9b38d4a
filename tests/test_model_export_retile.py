"""``skin-capture-model retile``: a grid change is written only when the check photos keep their
patches, and the rewritten file then scores them exactly as before."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_factory import make_meta, write_model

from desktop_app.core.inference import QualityEngine
from desktop_app.core.model_meta import GridSpec, TilingSpec
from model_export.cli import main as model_cli
from model_export.export.retile import (
    GridChange,
    RetileError,
    retile_existing_file,
    unchanged_bags,
)

# the handmade model: 32-px patches, live grid 96 px, capture grid 128 px (onnx_factory.make_meta)


def _photo(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(image, (0, 0), 1.0 + seed % 3))
    return path


def test_a_photo_under_both_long_sides_keeps_its_bag_a_larger_one_does_not() -> None:
    old = TilingSpec(patch_size=32, live=GridSpec(96), capture=GridSpec(128))
    new = TilingSpec(patch_size=32, live=GridSpec(96), capture=GridSpec(96))
    same, changed = unchanged_bags(old, new, {"small": (60, 90), "wide": (50, 120)})
    assert same == ["small"] and changed == ["wide"]


def test_retile_writes_the_new_capture_grid_and_keeps_every_output(tmp_path: Path) -> None:
    source = write_model(tmp_path / "m.onnx", make_meta())
    photos = [_photo(tmp_path / f"p{k}.png", 60 + 7 * k, 90 - 5 * k, k) for k in range(4)]
    target = tmp_path / "out" / "m.onnx"

    report = retile_existing_file(
        source, target, "0.0.2-test", photos, GridChange(capture_long_side=96)
    )

    assert (report.photos_checked, report.photos_unchanged, report.photos_scored) == (4, 4, 4)
    assert report.max_abs_output_diff == 0.0
    before, after = QualityEngine(source, providers="cpu"), QualityEngine(target, providers="cpu")
    assert after.meta.model_version == "0.0.2-test"
    assert after.meta.tiling.capture.max_long_side == 96
    assert after.meta.tiling.live == before.meta.tiling.live
    assert after.meta.validation_metrics["retiled"]["capture_max_long_side_was"] == 128
    # a large frame now gets the smaller capture bag: 3 x 2 patches instead of 4 x 3
    frame = np.full((300, 400, 3), 128, np.uint8)
    assert before.score(frame, "capture").patch_scores.shape == (3, 4)
    assert after.score(frame, "capture").patch_scores.shape == (3, 3)


def test_a_short_side_cap_lifts_the_record_to_schema_3_and_trims_a_4_3_frame(
    tmp_path: Path,
) -> None:
    source = write_model(tmp_path / "m.onnx", make_meta())
    photos = [_photo(tmp_path / f"p{k}.png", 60, 90 + 10 * k, k) for k in range(3)]
    target = tmp_path / "m-capped.onnx"

    report = retile_existing_file(
        source, target, "0.0.3-test", photos, GridChange(capture_short_side=64)
    )

    assert report.photos_unchanged == 3 and report.max_abs_output_diff == 0.0
    before, after = QualityEngine(source, providers="cpu"), QualityEngine(target, providers="cpu")
    assert after.meta.schema_version == 3 and before.meta.schema_version == 2
    assert after.meta.tiling.capture == GridSpec(max_long_side=128, max_short_side=64)
    assert after.meta.validation_metrics["retiled"]["capture_max_short_side_was"] is None
    frame = np.full((300, 400, 3), 128, np.uint8)  # 4:3: 96 x 128 at 128 px, 64 x 85 capped
    assert before.score(frame, "capture").patch_scores.shape == (3, 4)
    assert after.score(frame, "capture").patch_scores.shape == (2, 3)
    # a check photo whose short side is over the cap would be cut differently: refused
    with pytest.raises(RetileError, match="1 of 4 check photos"):
        retile_existing_file(
            source,
            tmp_path / "no.onnx",
            "0.0.3-test",
            [*photos, _photo(tmp_path / "tall.png", 80, 100, 5)],
            GridChange(capture_short_side=64),
        )


def test_retile_refuses_when_a_check_photo_would_be_cut_differently(tmp_path: Path) -> None:
    source = write_model(tmp_path / "m.onnx", make_meta())
    photos = [
        _photo(tmp_path / "small.png", 60, 90, 0),
        _photo(tmp_path / "large.png", 90, 120, 1),  # under 128 px but over 96 px
    ]
    target = tmp_path / "m-retiled.onnx"
    with pytest.raises(RetileError, match="1 of 2 check photos"):
        retile_existing_file(source, target, "0.0.2-test", photos, GridChange(capture_long_side=96))
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".onnx"] == ["m.onnx"]


def test_retile_needs_the_photos_the_numbers_came_from(tmp_path: Path) -> None:
    source = write_model(tmp_path / "m.onnx", make_meta())
    with pytest.raises(RetileError, match="check-images"):
        retile_existing_file(
            source, tmp_path / "o.onnx", "0.0.2", [], GridChange(capture_long_side=96)
        )


def test_the_retile_command_reports_and_a_refusal_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_model(tmp_path / "m.onnx", make_meta())
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "a.png", 60, 90, 0)
    args = ["retile", "--model", str(source), "--version", "0.0.2-test", "--check-images"]
    assert (
        model_cli(
            [*args, str(folder), "--out", str(tmp_path / "ok.onnx"), "--capture-long-side", "96"]
        )
        == 0
    )
    assert "1 of 1 check photos keep their patches" in capsys.readouterr().out
    _photo(folder / "b.png", 90, 120, 1)
    assert (
        model_cli(
            [*args, str(folder), "--out", str(tmp_path / "no.onnx"), "--capture-long-side", "96"]
        )
        != 0
    )
    assert not (tmp_path / "no.onnx").exists()
