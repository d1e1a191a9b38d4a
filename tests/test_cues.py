"""Cheap per-frame cues (core/cues.py) on the demo feed's moments and on a few real photos."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from desktop_app.core.bench import synthetic_frame
from desktop_app.core.cues import (
    BLOB_WIDTH,
    CueAnalyzer,
    _small,
    find_lesion_blob,
    view_difference,
)
from desktop_app.core.sources import DemoSource

EXPECTED = {
    "good": None,
    "motion": "motion",
    "defocus": "blur",
    "dark": "dark",
    "glare": "glare",
    "off_centre": "framing",
    "far": "distance",
}


@pytest.fixture(scope="module")
def demo_frames() -> dict[str, list[np.ndarray]]:
    """Two frames of each demo moment at the feed's own 1280x720 (uint8 RGB)."""
    demo = DemoSource(resolution=(1280, 720))
    demo.open()
    try:
        assert demo.wait_until_rendered(120.0)
        return {m: [demo.render_moment(m, t) for t in (1.0, 2.3)] for m in EXPECTED}  # type: ignore[arg-type]
    finally:
        demo.close()


@pytest.mark.parametrize("moment", list(EXPECTED))
def test_cues_name_each_demo_moment(demo_frames: dict[str, list[np.ndarray]], moment: str) -> None:
    analyser = CueAnalyzer()
    analyser.analyse(demo_frames["good"][0], "RGB", 0.0)  # a sharp view seen first
    for i, frame in enumerate(demo_frames[moment]):
        cues = analyser.analyse(frame, "RGB", 0.5 + i * 0.5)
        assert cues.raw_problem == EXPECTED[moment]
    assert cues.problem == EXPECTED[moment]  # two frames: the verdict counts
    assert cues.framing_ok is (moment in ("good", "motion", "defocus", "glare"))


def test_colour_order_does_not_change_the_verdict(demo_frames: dict[str, list[np.ndarray]]) -> None:
    rgb = demo_frames["off_centre"][0]
    a = CueAnalyzer().analyse(rgb, "RGB", 0.0)
    b = CueAnalyzer().analyse(np.ascontiguousarray(rgb[:, :, ::-1]), "BGR", 0.0)
    assert a.raw_problem == b.raw_problem == "framing"
    assert a.blob is not None and b.blob is not None
    assert a.blob.centre == pytest.approx(b.blob.centre, abs=0.01)


def test_blur_is_relative_to_a_sharp_view_seen_before(
    demo_frames: dict[str, list[np.ndarray]],
) -> None:
    # with no sharp reference yet, a blurred view is not called blurred (the model judges it)
    analyser = CueAnalyzer()
    assert analyser.analyse(demo_frames["defocus"][0], "RGB", 0.0).raw_problem is None
    analyser.analyse(demo_frames["good"][0], "RGB", 0.1)
    assert analyser.analyse(demo_frames["defocus"][1], "RGB", 0.2).raw_problem == "blur"
    # the reference fades: long after the last sharp view, this blur is the new normal
    assert analyser.analyse(demo_frames["defocus"][1], "RGB", 120.0).raw_problem is None


def test_view_difference_tells_a_steady_hand_from_a_new_view(
    demo_frames: dict[str, list[np.ndarray]],
) -> None:
    analyser = CueAnalyzer()
    thumbs = {
        m: [analyser.analyse(f, "RGB", 0.0).thumb for f in fs] for m, fs in demo_frames.items()
    }
    limits = analyser.thresholds
    # the same close-up a moment later (hand shake of a couple of pixels): unchanged
    assert view_difference(thumbs["good"][0], thumbs["good"][1]) < limits.unchanged_difference
    for other in ("dark", "glare", "off_centre", "far"):
        assert view_difference(thumbs["good"][0], thumbs[other][0]) > limits.changed_difference
    assert view_difference(thumbs["good"][0], np.zeros((3, 3), np.float32)) == float("inf")


def test_skin_without_a_visible_lesion_gives_no_finding() -> None:
    plain = synthetic_frame(360, 640, seed=5)  # textured skin tone, nothing on it
    assert find_lesion_blob(_small(plain, BLOB_WIDTH)) is None
    cues = CueAnalyzer().analyse(plain, "RGB", 0.0)
    assert cues.blob is None and not cues.framing_ok and cues.problem is None


def _fuseg_with_visible_wounds(shared_dir: Path, count: int) -> list[tuple[Path, Path]]:
    data = shared_dir / "data"
    rows = []
    with (data / "manifest.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["source"] == "fuseg" and row["mask"]:
                rows.append((data / row["path"], data / row["mask"]))
    return rows[:count]


def test_blob_finds_real_wounds_often_but_not_always(shared_dir: Path) -> None:
    """Real FUSeg foot-ulcer photos with their masks: where the blob cue finds something, its
    centre is near the wound's in at least half of the photos whose wound is visible (>= 1 % of
    the frame). It is a guide for framing, not a segmenter: a dark sheet or a second wound can
    win (see the module docstring)."""
    checked = hits = 0
    for image_path, mask_path in _fuseg_with_visible_wounds(shared_dir, 60):
        bgr = cv2.imread(str(image_path))
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if bgr is None or mask is None or (mask > 127).mean() < 0.01:
            continue
        ys, xs = np.nonzero(mask > 127)
        centre = (xs.mean() / mask.shape[1], ys.mean() / mask.shape[0])
        blob = find_lesion_blob(_small(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), BLOB_WIDTH))
        checked += 1
        if (
            blob is not None
            and max(abs(blob.centre[0] - centre[0]), abs(blob.centre[1] - centre[1])) < 0.15
        ):
            hits += 1
    assert checked >= 10
    assert hits / checked >= 0.5, f"{hits} of {checked}"


def test_one_odd_frame_does_not_flip_the_verdict_and_a_change_dates_from_its_first_frame(
    demo_frames: dict[str, list[np.ndarray]],
) -> None:
    analyser = CueAnalyzer()
    good, dark = demo_frames["good"][0], demo_frames["dark"][0]
    for i in range(3):
        assert analyser.analyse(good, "RGB", i * 0.033).problem is None
    odd = analyser.analyse(dark, "RGB", 0.100)
    assert odd.raw_problem == "dark" and odd.problem is None  # one frame: not yet
    assert analyser.analyse(good, "RGB", 0.133).problem is None
    first = analyser.analyse(dark, "RGB", 0.166)
    second = analyser.analyse(dark, "RGB", 0.200)
    assert first.problem is None and second.problem == "dark"
    # a model result on the first dark frame is about the dark view
    assert second.changed_at == pytest.approx(0.166)
    # the same view a moment later: no new change
    assert analyser.analyse(dark, "RGB", 0.233).changed_at == pytest.approx(0.166)
