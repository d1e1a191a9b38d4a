"""build-data: splits never share a source or a DermNet condition; rated sources excluded;
output images keep their source's size. The end-to-end build needs ../shared."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_export.data import build_data, build_plan, raters
from model_export.data import degradations as deg


def fake_manifest() -> list[dict[str, str]]:
    rows = []
    for c in range(12):
        for i in range(5):
            rows.append(
                {"path": f"dermnet/cond{c}/{i}.jpg", "source": "dermnet", "condition": f"cond{c}",
                 "mask": ""}
            )  # fmt: skip
    for prefix in ("train", "validation"):
        for i in range(20):
            rows.append(
                {"path": f"fuseg/images/{prefix}-{i:04d}.jpg", "source": "fuseg",
                 "condition": "foot-ulcer", "mask": f"fuseg/masks/{prefix}-{i:04d}.png"}
            )  # fmt: skip
    return rows


def test_splits_share_no_source_or_condition_and_exclude_rated() -> None:
    rows = fake_manifest()
    excluded = {"dermnet/cond3/1.jpg", "fuseg/images/train-0003.jpg"}
    pools = build_plan.split_sources(rows, excluded, np.random.default_rng(0), 0.25)
    items = build_plan.plan(pools, {"train": 80, "val": 30}, np.random.default_rng(1))
    by_split: dict[str, set[str]] = {"train": set(), "val": set()}
    conditions: dict[str, set[str]] = {"train": set(), "val": set()}
    for item in items:
        by_split[item.split].add(item.source_path)
        if item.cohort == "dermnet":
            conditions[item.split].add(item.source_path.split("/")[1])
    assert by_split["train"] and by_split["val"]
    assert not by_split["train"] & by_split["val"]
    assert not conditions["train"] & conditions["val"]
    assert not excluded & (by_split["train"] | by_split["val"])
    assert all(
        Path(p).name.startswith("validation") for p in by_split["val"] if p.startswith("fuseg")
    )


def test_recipes_mix_clean_single_and_combined_faults() -> None:
    rng = np.random.default_rng(0)
    recipes = [build_plan.draw_recipe(rng, True) for _ in range(2000)]
    clean = sum(r == [] for r in recipes) / len(recipes)
    combos = sum(len(r) > 1 for r in recipes) / len(recipes)
    assert 0.13 < clean < 0.30 and 0.14 < combos < 0.26
    assert all(0 <= s <= 1 for r in recipes for _, s in r)


def test_non_photo_detector() -> None:
    xray = np.repeat(np.linspace(0, 255, 64 * 64).reshape(64, 64, 1), 3, axis=2).astype(np.uint8)
    assert build_plan.is_non_photo(build_plan.original_cues(xray))
    skin = np.full((64, 64, 3), (200, 150, 125), np.uint8)
    assert not build_plan.is_non_photo(build_plan.original_cues(skin))


@pytest.mark.shared
@pytest.mark.slow
def test_small_build_end_to_end(shared_dir: Path, tmp_path: Path) -> None:
    from desktop_app.core.image_io import load_rgb

    out = tmp_path / "build"
    summary = build_data.build(shared_dir / "data", out, n_train=24, n_val=12, seed=3, workers=1)
    with open(out / "dataset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0].keys()) == build_plan.CSV_FIELDS
    with open(shared_dir / "data" / "rated" / "ratings.csv", newline="") as fh:
        rated = {r["source_path"] for r in csv.DictReader(fh)}
    train = {r["source_path"] for r in rows if r["split"] == "train"}
    val = {r["source_path"] for r in rows if r["split"] == "val"}
    assert not train & val
    assert not rated & (train | val)
    for row in rows[:8]:
        image = load_rgb(out / row["image"])
        source = load_rgb(shared_dir / "data" / row["source_path"])
        assert image.shape == source.shape
        assert all(1 <= int(row[f"rater_{i}"]) <= 5 for i in range(1, 5))
    assert summary["n_images"] == len(rows)


@pytest.mark.shared
@pytest.mark.slow
def test_single_fault_build_as_a_separate_validation_set(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v2val"
    summary = build_data.build(
        shared_dir / "data",
        out,
        n_train=0,
        n_val=10,
        seed=3,
        workers=1,
        only_faults=["pixelation", "tone_dark"],
        val_split_name="val_v2",
    )
    with open(out / "dataset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["split"] for r in rows} == {"val_v2"}
    assert {r["fault"] for r in rows} <= {"none", "pixelation", "tone_dark"}
    assert summary["recipes"] == {"set": "v3", "only_faults": ["pixelation", "tone_dark"]}
    assert summary["val_split_name"] == "val_v2"


def test_extension_build_keeps_out_of_the_other_builds_validation(tmp_path: Path) -> None:
    other = tmp_path / "first"
    other.mkdir()
    (other / "build_summary.json").write_text('{"val_dermnet_conditions": ["psoriasis"]}')
    with open(other / "dataset.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "split", "source_path"])
        writer.writeheader()
        writer.writerow({"image": "a.jpg", "split": "val", "source_path": "fuseg/images/v1.png"})
        writer.writerow({"image": "b.jpg", "split": "train", "source_path": "fuseg/images/t1.png"})
    other_val = build_data.ValidationSources.of_build(other)
    assert "dermnet/psoriasis/p7.jpg" in other_val
    assert "fuseg/images/v1.png" in other_val
    assert "fuseg/images/t1.png" not in other_val
    assert "dermnet/eczema/e1.jpg" not in other_val
    # a condition name elsewhere in the path is not a DermNet condition folder
    assert "fuseg/psoriasis/x.png" not in other_val
    # a build that wrote its validation rows under another split name
    (other / "build_summary.json").write_text('{"val_split_name": "val_v2"}')
    with open(other / "dataset.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "split", "source_path"])
        writer.writeheader()
        writer.writerow({"image": "c.jpg", "split": "val_v2", "source_path": "fuseg/images/v2.png"})
    assert "fuseg/images/v2.png" in build_data.ValidationSources.of_build(other)


def test_recipe_set_v1_is_frozen_and_v2_adds_the_new_families() -> None:
    # v1 rebuilds the data of the models up to 1.2.0: its faults, order and weights must not
    # change (any change alters every later random draw of a seeded build)
    assert list(build_plan.RECIPE_SETS["v1"].items()) == [
        ("defocus", 1.2),
        ("motion", 1.2),
        ("low_light", 1.1),
        ("sensor_noise", 0.8),
        ("over_exposure", 1.0),
        ("flash_glare", 0.9),
        ("colour_cast", 1.0),
        ("jpeg", 0.7),
        ("resolution", 0.8),
        ("off_centre", 1.0),
        ("zoom_out", 0.8),
        ("obstruction", 1.0),
    ]
    added = set(build_plan.RECIPE_SETS["v2"]) - set(build_plan.RECIPE_SETS["v1"])
    assert added == {"pixelation", "tone_dark", "levels_bright"}
    assert all(name in deg.FAULTS for name in build_plan.RECIPE_SETS["v2"])
    rng = np.random.default_rng(0)
    v1 = {
        n
        for _ in range(3000)
        for n, _ in build_plan.draw_recipe(rng, True, build_plan.RECIPE_SETS["v1"])
    }
    assert not v1 & added


def test_singles_only_recipes_draw_clean_originals_and_the_chosen_faults() -> None:
    rng = np.random.default_rng(0)
    chosen = {"pixelation": 1.0, "tone_dark": 1.0}
    recipes = [build_plan.draw_recipe(rng, True, chosen, singles_only=True) for _ in range(1000)]
    assert all(len(r) <= 1 for r in recipes)
    assert {r[0][0] for r in recipes if r} == set(chosen)
    assert 0.12 < sum(r == [] for r in recipes) / len(recipes) < 0.22


def test_build_refuses_unknown_recipe_sets_and_faults(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="recipe set"):
        build_data.build(tmp_path, tmp_path / "out", recipes="v9")
    with pytest.raises(ValueError, match="not in recipe set v1"):
        build_data.build(tmp_path, tmp_path / "out", recipes="v1", only_faults=["pixelation"])


def test_recipe_set_v3_adds_shadow_and_haze_on_top_of_v2() -> None:
    v2, v3 = build_plan.RECIPE_SETS["v2"], build_plan.RECIPE_SETS["v3"]
    assert set(v3) - set(v2) == {"cast_shadow", "lens_haze"}
    assert all(v3[name] == weight for name, weight in v2.items())
    assert all(name in deg.FAULTS for name in v3)


def _fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


def test_recipe_set_v3_and_its_seeded_plan_are_unchanged() -> None:
    # builds with v3 (the default) must reproduce exactly: its faults, order and weights, the
    # recipes it draws for a seed and the plan of a seeded build stay as they were before v4
    assert list(build_plan.RECIPE_SETS["v3"].items()) == [
        *build_plan.RECIPE_SETS["v2"].items(),
        ("cast_shadow", 0.6),
        ("lens_haze", 0.6),
    ]
    assert list(build_plan.RECIPE_SETS["v2"].items())[-3:] == [
        ("pixelation", 0.6),
        ("tone_dark", 0.6),
        ("levels_bright", 0.6),
    ]
    assert build_plan.DEFAULT_RECIPES == "v3"
    rng = np.random.default_rng(0)
    recipes = [build_plan.draw_recipe(rng, True, build_plan.RECIPE_SETS["v3"]) for _ in range(500)]
    assert _fingerprint([[n, round(s, 6)] for r in recipes for n, s in r]) == "4a0c53d29ce7967b"
    pools = build_plan.split_sources(fake_manifest(), set(), np.random.default_rng(0), 0.25)
    items = build_plan.plan(pools, {"train": 60, "val": 20}, np.random.default_rng(1))
    planned = [
        [i.split, i.source_path, [[n, round(s, 6)] for n, s in i.recipe], i.seed] for i in items
    ]
    assert _fingerprint(planned) == PLAN_V3_FINGERPRINT


PLAN_V3_FINGERPRINT = "ce40b549fee99987"


def test_recipe_set_v4_adds_the_three_new_families_on_top_of_v3() -> None:
    v3, v4 = build_plan.RECIPE_SETS["v3"], build_plan.RECIPE_SETS["v4"]
    assert list(v4.items())[: len(v3)] == list(v3.items())
    assert {n: w for n, w in v4.items() if n not in v3} == {
        "recompression_chain": 0.6,
        "sheen": 0.6,
        "cut_off": 0.6,
    }
    assert all(name in deg.FAULTS for name in v4)
    rng = np.random.default_rng(0)
    drawn = {n for _ in range(3000) for n, _ in build_plan.draw_recipe(rng, True, v4)}
    assert {"recompression_chain", "sheen", "cut_off"} <= drawn


def test_cli_accepts_recipe_set_v4() -> None:
    parser = argparse.ArgumentParser()
    build_data.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["build-data", "--shared", "s", "--out", "o", "--recipes", "v4", "--only-faults", "sheen"]
    )
    assert args.recipes == "v4" and args.only_faults == ["sheen"]
    assert build_data._recipe_weights("v4", ["sheen", "cut_off"]) == {"sheen": 0.6, "cut_off": 0.6}


def test_a_cut_off_without_a_subject_is_skipped_not_written(tmp_path: Path) -> None:
    flat = np.full((64, 96, 3), (90, 120, 160), np.uint8)  # no skin, nothing to cut off
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "a.png"), flat)
    (tmp_path / "out" / "images" / "train").mkdir(parents=True)
    model = raters.RaterModel(
        curves={f: (100.0, 1.0) for f in set(raters.CURVE_OF_FAMILY.values())},  # no drop
        bias=[0.0] * 4,
        sigma=[0.5] * 4,
    )
    build_data._init_worker(str(tmp_path), str(tmp_path / "out"), model.to_json())
    item = build_plan.Item(0, "train", "dermnet", "src/a.png", "", [("cut_off", 0.8)], 3)
    record = build_data.process_item(item)
    assert record == {"skipped": "no subject found", "source_path": "src/a.png", "fault": "cut_off"}
    assert not list((tmp_path / "out" / "images" / "train").iterdir())


def test_every_rated_sets_sources_are_kept_out_of_builds(tmp_path: Path) -> None:
    """rated2/ is an out-of-family test set: a build that drew its sources would leak it."""
    for folder, source in (("rated", "dermnet/a/1.jpg"), ("rated2", "fuseg/images/train-0001.jpg")):
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "ratings.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", "source_path"])
            writer.writeheader()
            writer.writerow({"image": "images/x.jpg", "source_path": source})
    assert build_plan.rated_sources(tmp_path) == {"dermnet/a/1.jpg", "fuseg/images/train-0001.jpg"}
    (tmp_path / "rated2" / "ratings.csv").unlink()
    assert build_plan.rated_sources(tmp_path) == {"dermnet/a/1.jpg"}
