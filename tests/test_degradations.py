"""Capture faults: right direction, same size/dtype, no constant borders, canonical reasons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from desktop_app.core.demo_scene import render_skin
from desktop_app.core.model_meta import REASON_NAMES_V1
from model_export.data import degradations as deg
from model_export.data import fault_kit, scene_faults, v4_faults

H, W = 120, 200


def make_skin_photo(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small textured skin-like photo ``[H, W, 3]`` with a darker red lesion and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.array([200, 150, 125], np.float32)
    shading = 0.8 + 0.2 * np.cos((xx - W / 2) / W * np.pi)
    texture = cv2.GaussianBlur(rng.normal(0, 12, (H, W)).astype(np.float32), (0, 0), 1.0)
    image = base[None, None, :] * shading[:, :, None] + texture[:, :, None]
    lesion = ((xx - 0.55 * W) ** 2 / 22**2 + (yy - 0.5 * H) ** 2 / 15**2) <= 1
    image[lesion] = image[lesion] * np.array([0.75, 0.4, 0.4], np.float32)
    # fine structure (hair/pores) so that blur has something to remove
    for i in range(0, W, 9):
        cv2.line(image, (i, 0), (i + 15, H - 1), (120, 90, 80), 1)
    return np.clip(image, 0, 255).astype(np.uint8), lesion.astype(np.uint8) * 255


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    return make_skin_photo()


def has_constant_border(image: np.ndarray, width: int = 3) -> bool:
    """True when any edge strip of ``width`` pixels is (nearly) a single flat colour."""
    strips = [image[:width], image[-width:], image[:, :width], image[:, -width:]]
    return any(float(strip.reshape(-1, 3).std(axis=0).max()) < 0.5 for strip in strips)


def test_reason_names_match_the_contract() -> None:
    assert deg.REASONS == REASON_NAMES_V1
    assert set(deg.RATED_REASON_MAP.values()) <= set(deg.REASONS)
    assert len(deg.RATED_REASON_MAP) == 12
    for reason in deg.FAMILY_REASON.values():
        assert reason is None or reason in deg.REASONS


def test_rated_reason_mapping() -> None:
    row = {c: "0" for c in deg.RATED_REASON_MAP}
    row.update(glare="1", resolution="1", obstruction="1")
    mapped = deg.map_rated_reasons(row)
    assert mapped == {
        "blur": 0, "motion": 0, "dark": 0, "bright": 1,
        "colour": 0, "framing": 1, "distance": 0, "noise": 1,
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(deg.FAULTS))
@pytest.mark.parametrize("severity", [0.0, 0.5, 1.0])
def test_every_fault_keeps_size_dtype_and_has_no_flat_border(
    photo: tuple[np.ndarray, np.ndarray], name: str, severity: float
) -> None:
    image, mask = photo
    assert not has_constant_border(image)
    for m in (mask, None):
        result = deg.FAULTS[name](image, severity, np.random.default_rng(1), m)
        assert result.image.shape == image.shape
        assert result.image.dtype == np.uint8
        assert result.reasons and set(result.reasons) <= set(deg.REASONS)
        assert all(np.isfinite(x) for _, x in result.components)
        # a blown-out image may be flat white; JPEG at quality 3 is made of flat 8x8 blocks
        if name not in ("over_exposure", "jpeg"):
            assert not has_constant_border(result.image), name


def _lap_var(img: np.ndarray) -> float:
    """Variance of the grey image's Laplacian (raw, not the log the baseline reports)."""
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def _apply(name: str, image: np.ndarray, s: float, mask: np.ndarray | None = None) -> np.ndarray:
    return deg.FAULTS[name](image, s, np.random.default_rng(3), mask).image


def test_blur_and_motion_lower_laplacian_variance(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = photo
    for name in ("defocus", "motion", "resolution"):
        mild, strong = _lap_var(_apply(name, image, 0.3)), _lap_var(_apply(name, image, 0.9))
        assert strong < mild < _lap_var(image), name


def test_defocus_psf_is_a_normalised_disc() -> None:
    kernel = fault_kit.disc_kernel(5.0)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    centre = kernel.shape[0] // 2
    assert kernel[centre, centre] > 0 and kernel[0, 0] == 0


def test_shake_trajectory_has_the_requested_length() -> None:
    points = fault_kit.shake_trajectory(20.0, np.random.default_rng(0))
    assert np.linalg.norm(np.diff(points, axis=0), axis=1).sum() == pytest.approx(20.0, rel=1e-6)
    assert fault_kit.trajectory_kernel(points).sum() == pytest.approx(1.0, abs=1e-5)


def test_exposure_faults_move_mean_luminance(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = photo
    lum = float(fault_kit.luminance(image).mean())
    dark = [float(fault_kit.luminance(_apply("low_light", image, s)).mean()) for s in (0.2, 0.9)]
    bright = [
        float(fault_kit.luminance(_apply("over_exposure", image, s)).mean()) for s in (0.2, 0.9)
    ]
    assert dark[1] < dark[0] < lum
    assert lum < bright[0] < bright[1]
    assert fault_kit.clipped_fraction(_apply("over_exposure", image, 1.0)) > 0.3


def test_glare_adds_saturated_hot_spots(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = photo
    out = _apply("flash_glare", image, 0.8, mask)
    assert fault_kit.clipped_fraction(out) > fault_kit.clipped_fraction(image)
    assert fault_kit.highlight_fraction(image, out) > 0.01


def test_noise_adds_high_frequency_energy(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = photo
    weak = deg.FAULTS["sensor_noise"](image, 0.2, np.random.default_rng(0), None)
    strong = deg.FAULTS["sensor_noise"](image, 1.0, np.random.default_rng(0), None)
    assert strong.components[0][1] > weak.components[0][1] > 0


def test_colour_cast_shifts_chromaticity_but_keeps_luminance(
    photo: tuple[np.ndarray, np.ndarray],
) -> None:
    image, _ = photo
    out = _apply("colour_cast", image, 0.8)
    assert fault_kit.colour_shift(image, out) > 10
    lum_in, lum_out = (
        float(fault_kit.luminance(image).mean()),
        float(fault_kit.luminance(out).mean()),
    )
    assert lum_out == pytest.approx(lum_in, rel=0.1)


def test_jpeg_strength_grows_with_severity(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = photo
    strengths = [
        deg.FAULTS["jpeg"](image, s, np.random.default_rng(0), None).components[0][1]
        for s in (0.1, 0.6, 1.0)
    ]
    assert strengths[0] < strengths[1] < strengths[2]


def test_off_centre_moves_or_cuts_the_lesion(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = photo
    strengths = [
        scene_faults.off_centre(image, s, np.random.default_rng(5), mask).components[0][1]
        for s in (0.0, 1.0)
    ]
    assert strengths[1] > strengths[0]
    good = scene_faults.reframe(image, 0.0, np.random.default_rng(5), mask)
    assert good.reasons == () and good.image.shape == image.shape


def test_zoom_out_shrinks_the_lesion_without_padding(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = photo
    out = scene_faults.zoom_out(image, 1.0, np.random.default_rng(2), mask)
    assert out.params["zoom"] < 0.6
    assert out.components[0][1] > scene_faults.lesion_distance(mask)  # type: ignore[operator]
    # no row or column of the result is constant (no padding strip anywhere)
    grey = cv2.cvtColor(out.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert grey.std(axis=1).min() > 0.5 and grey.std(axis=0).min() > 0.5


def test_obstruction_covers_more_with_severity(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = photo
    covered = [
        scene_faults.obstruction(image, s, np.random.default_rng(11), mask).params["covered"]
        for s in (0.1, 1.0)
    ]
    assert covered[1] > covered[0]


def test_faults_are_deterministic_given_the_seed(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = photo
    for name, fn in deg.FAULTS.items():
        a = fn(image, 0.6, np.random.default_rng(9), mask).image
        b = fn(image, 0.6, np.random.default_rng(9), mask).image
        assert np.array_equal(a, b), name


def test_srgb_linear_roundtrip() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2)
    assert np.array_equal(fault_kit.linear_to_srgb(fault_kit.srgb_to_linear(values)), values)


def test_pixelation_is_blocky_where_resolution_loss_is_smooth(
    photo: tuple[np.ndarray, np.ndarray],
) -> None:
    image, _ = photo
    blocky = deg.FAULTS["pixelation"](image, 0.8, np.random.default_rng(0), None)
    smooth = deg.FAULTS["resolution"](image, 0.8, np.random.default_rng(0), None)
    # same down-sampling, same measured strength: the raters judge both alike
    assert blocky.components == smooth.components
    assert blocky.params["scale"] == smooth.params["scale"]
    # the hard block edges keep far more high-frequency energy than a smooth enlargement
    assert _lap_var(blocky.image) > 3 * _lap_var(smooth.image)
    # constant runs: along a row, most neighbours inside a block are (nearly) equal
    row = blocky.image[H // 2, :, 1].astype(int)
    assert float(np.mean(np.abs(np.diff(row)) <= 4)) > 0.6


def test_tone_dark_lowers_mid_tones_and_keeps_highlights() -> None:
    ramp = np.linspace(0, 255, W).astype(np.uint8)
    image = np.repeat(np.repeat(ramp[None, :, None], H, axis=0), 3, axis=2)
    mild = deg.FAULTS["tone_dark"](image, 0.2, np.random.default_rng(0), None)
    strong = deg.FAULTS["tone_dark"](image, 0.9, np.random.default_rng(0), None)
    mid = W // 2
    assert strong.image[H // 2, mid, 0] < mild.image[H // 2, mid, 0] < image[H // 2, mid, 0]
    assert strong.image[H // 2, -1].min() >= 245  # white stays white: not an exposure drop
    assert strong.components[0][0] == "dark" and strong.components[0][1] > mild.components[0][1]
    # no sensor noise is added: a flat grey stays (nearly) flat
    flat = np.full((H, W, 3), 140, np.uint8)
    assert float(deg.FAULTS["tone_dark"](flat, 0.9, np.random.default_rng(0), None).image.std()) < 1


def test_levels_bright_washes_out_with_severity(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = photo
    strengths = [
        deg.FAULTS["levels_bright"](image, s, np.random.default_rng(0), None).components[0]
        for s in (0.1, 0.5, 1.0)
    ]
    assert [f for f, _ in strengths] == ["bright"] * 3
    assert 0 < strengths[0][1] < strengths[1][1] < strengths[2][1]
    out = deg.FAULTS["levels_bright"](image, 1.0, np.random.default_rng(0), None).image
    assert fault_kit.luminance(out).mean() > fault_kit.luminance(image).mean()
    assert fault_kit.clipped_fraction(out) > fault_kit.clipped_fraction(image)


def test_cast_shadow_darkens_the_lesion_behind_a_soft_edge(
    photo: tuple[np.ndarray, np.ndarray],
) -> None:
    image, mask = photo
    lesion = mask > 0
    found_covering = False
    for seed in range(8):
        result = deg.FAULTS["cast_shadow"](image, 0.8, np.random.default_rng(seed), mask)
        dark = dict(result.components)["dark"]
        measured = -fault_kit.exposure_stops(image, result.image, lesion)
        # the strength is the lesion's own exposure drop (never negative)
        assert dark == pytest.approx(max(0.0, measured), abs=1e-6)
        if dark > 1.0:
            found_covering = True
            # the penumbra: no jump between neighbouring pixels anywhere near a hard cut's size
            grey = cv2.cvtColor(result.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
            smooth = cv2.GaussianBlur(grey, (0, 0), 2.0)
            assert float(np.abs(np.diff(smooth, axis=1)).max()) < 40
    assert found_covering  # most shadows fall on the subject
    mild = deg.FAULTS["cast_shadow"](image, 0.1, np.random.default_rng(0), mask)
    strong = deg.FAULTS["cast_shadow"](image, 1.0, np.random.default_rng(0), mask)
    assert strong.params["stops"] > mild.params["stops"]
    assert dict(strong.components)["dark"] > dict(mild.components)["dark"]


def test_lens_haze_veils_and_softens_with_severity(photo: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = photo
    results = [
        deg.FAULTS["lens_haze"](image, s, np.random.default_rng(0), None) for s in (0.1, 0.5, 1.0)
    ]
    blurs = [dict(r.components)["blur"] for r in results]
    assert 0 < blurs[0] < blurs[1] < blurs[2]
    contrast = [float(cv2.cvtColor(r.image, cv2.COLOR_RGB2GRAY).std()) for r in results]
    assert contrast[2] < contrast[0] < float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).std())
    # the veil is light scattered from elsewhere: mean luminance barely moves
    assert fault_kit.luminance(results[2].image).mean() == pytest.approx(
        fault_kit.luminance(image).mean(), rel=0.15
    )


def test_equivalent_blur_sigma_recovers_a_gaussian_blur(
    photo: tuple[np.ndarray, np.ndarray],
) -> None:
    image, _ = photo
    assert scene_faults.equivalent_blur_sigma(image, image) == 0.0
    scale = max(image.shape[:2]) / 640.0
    for sigma in (1.0, 2.5):
        blurred = cv2.GaussianBlur(image, (0, 0), sigma * scale)
        assert scene_faults.equivalent_blur_sigma(image, blurred) == pytest.approx(sigma, rel=0.15)


def test_shadow_and_haze_accept_a_black_frame() -> None:
    black = np.zeros((H, W, 3), np.uint8)
    for name in ("cast_shadow", "lens_haze"):
        result = deg.FAULTS[name](black, 0.7, np.random.default_rng(0), None)
        assert result.image.shape == black.shape
        assert all(np.isfinite(x) for _, x in result.components)


# ---------------------------------------------------------------------------------------------
# recipe set v4: chat-app recompression, sheen, cut-off findings
# ---------------------------------------------------------------------------------------------
V4_FAULTS = ("recompression_chain", "sheen", "cut_off")


def _big_skin_photo() -> tuple[np.ndarray, np.ndarray]:
    """A 320x480 version of :func:`make_skin_photo` (chat apps shrink: room for several rounds)."""
    image, mask = make_skin_photo(4)
    return (
        cv2.resize(image, (480, 320), interpolation=cv2.INTER_CUBIC),
        cv2.resize(mask, (480, 320), interpolation=cv2.INTER_NEAREST),
    )


@pytest.mark.parametrize("name", V4_FAULTS)
@pytest.mark.parametrize("with_mask", [True, False])
def test_v4_faults_are_deterministic_and_keep_size_and_dtype(name: str, with_mask: bool) -> None:
    image, mask = _big_skin_photo()
    m = mask if with_mask else None
    a = deg.FAULTS[name](image, 0.7, np.random.default_rng(4), m)
    b = deg.FAULTS[name](image, 0.7, np.random.default_rng(4), m)
    assert np.array_equal(a.image, b.image) and a.params == b.params
    assert a.image.shape == image.shape and a.image.dtype == np.uint8
    assert a.reasons and set(a.reasons) <= {"noise", "bright", "framing"}
    assert not np.array_equal(a.image, image)


@pytest.mark.parametrize("name", V4_FAULTS)
@pytest.mark.parametrize("with_mask", [True, False])
def test_v4_strength_rises_with_severity(name: str, with_mask: bool) -> None:
    image, mask = _big_skin_photo()
    results = [
        deg.FAULTS[name](image, s, np.random.default_rng(6), mask if with_mask else None)
        for s in (0.2, 0.5, 0.9)
    ]
    own = [r.params["strength"] for r in results]
    assert own[0] < own[1] < own[2], own
    assert {r.params["strength_measure"] for r in results} == {
        results[0].params["strength_measure"]
    }
    # the calibrated components the raters see do not fall with severity either
    for family in {f for f, _ in results[0].components}:
        x = [dict(r.components)[family] for r in results]
        assert x[0] <= x[1] <= x[2], (family, x)


def test_v4_strength_rises_with_severity_on_a_rendered_skin_scene() -> None:
    image = render_skin(240, 360, seed=5)
    for name in ("recompression_chain", "sheen"):
        own = np.array(
            [
                [
                    deg.FAULTS[name](image, s, np.random.default_rng(seed), None).params["strength"]
                    for s in (0.2, 0.5, 0.9)
                ]
                for seed in range(4)
            ]
        )
        # per chain, a second save on the same grid after sharpening can out-block a third one
        # at lower quality: the mean over chains rises, and every strong chain beats its mild one
        mean = own.mean(axis=0)
        assert mean[0] < mean[1] < mean[2], (name, own)
        assert np.all(own[:, 2] > own[:, 0]), (name, own)


def test_strongest_recompression_chain_is_blocky_and_bleeds_colour() -> None:
    image, _ = _big_skin_photo()
    out = v4_faults.recompression_chain(image, 1.0, np.random.default_rng(0), None)
    assert out.params["strength"] > v4_faults.blockiness(image) + 0.3
    assert out.params["blockiness_output"] > out.params["blockiness_input"]
    assert 4 <= out.params["rounds"] <= 5 and max(out.params["qualities"]) <= 40
    assert min(out.params["qualities"]) >= 30
    # 4:2:0 chroma: colour detail (Lab a*) loses more fine energy than lightness does
    lab_in = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab_out = cv2.cvtColor(out.image, cv2.COLOR_RGB2Lab).astype(np.float32)

    def fine(channel: np.ndarray) -> float:
        return float(np.abs(channel - cv2.GaussianBlur(channel, (0, 0), 2.0)).mean())

    kept_l = fine(lab_out[..., 0]) / fine(lab_in[..., 0])
    kept_a = fine(lab_out[..., 1]) / fine(lab_in[..., 1])
    assert kept_a < kept_l
    mild = v4_faults.recompression_chain(image, 0.0, np.random.default_rng(0), None)
    assert mild.params["rounds"] == 2 and min(mild.params["qualities"]) >= 70


def test_blockiness_finds_an_8x8_grid() -> None:
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.normal(128, 30, (128, 128)).astype(np.float32), (0, 0), 3)
    grey = np.clip(smooth, 0, 255).astype(np.uint8)
    blocks = cv2.resize(cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA), (128, 128),
                        interpolation=cv2.INTER_NEAREST)  # fmt: skip
    smooth_rgb, block_rgb = (np.repeat(g[:, :, None], 3, axis=2) for g in (grey, blocks))
    assert abs(v4_faults.blockiness(smooth_rgb)) < 0.2
    assert v4_faults.blockiness(block_rgb) > 5


def test_sheen_is_a_broad_low_saturation_highlight_that_flattens_texture() -> None:
    image, mask = _big_skin_photo()
    out = v4_faults.sheen(image, 0.9, np.random.default_rng(1), mask)
    rise = fault_kit.luminance(out.image) - fault_kit.luminance(image)
    lesion = mask > 0
    assert out.params["covered"] > 0.5  # most of the lesion is under the film
    assert float(np.mean(rise > 0.03)) > 0.05  # broad, not a spot
    hsv_in = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv_out = cv2.cvtColor(out.image, cv2.COLOR_RGB2HSV).astype(np.float32)
    lit = lesion & (rise > 0.1)
    assert float(hsv_out[..., 1][lit].mean()) < float(hsv_in[..., 1][lit].mean())  # whiter
    grey_in = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_out = cv2.cvtColor(out.image, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def texture(g: np.ndarray) -> float:
        return float(np.abs(g - cv2.GaussianBlur(g, (0, 0), 3.0))[lit].mean())

    assert texture(grey_out) < texture(grey_in)


@pytest.mark.parametrize("with_mask", [True, False])
def test_cut_off_leaves_part_of_the_subject_outside(with_mask: bool) -> None:
    image, mask = _big_skin_photo()
    out = v4_faults.cut_off(image, 0.6, np.random.default_rng(3), mask if with_mask else None)
    assert out.params["subject"] == ("mask" if with_mask else "estimated")
    x0, y0, cw, ch = out.params["window"]
    lesion = mask > 0
    inside = float(np.count_nonzero(lesion[y0 : y0 + ch, x0 : x0 + cw])) / lesion.sum()
    assert 0.15 < 1.0 - inside < 0.9  # the frame's edge passes through the lesion
    assert out.params["strength"] == pytest.approx(1.0 - inside, abs=0.15)
    assert not has_constant_border(out.image)


def test_estimated_subject_is_the_lesion() -> None:
    image, mask = _big_skin_photo()
    subject = v4_faults.estimate_subject(image)
    assert subject is not None
    lesion = mask > 0
    iou = np.count_nonzero(subject & lesion) / np.count_nonzero(subject | lesion)
    assert iou > 0.5


def test_cut_off_without_a_subject_returns_the_image_unchanged_with_a_marker() -> None:
    flat = np.full((120, 200, 3), (90, 120, 160), np.uint8)  # no skin, no lesion
    out = v4_faults.cut_off(flat, 0.8, np.random.default_rng(0), None)
    assert np.array_equal(out.image, flat) and out.image is not flat
    assert out.params == {"skip": v4_faults.NO_SUBJECT} and out.components == []
