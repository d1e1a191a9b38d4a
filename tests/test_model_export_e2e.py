"""The whole chain on generated images: train, evaluate, export (fp32 + int8), load in the app's
engine, and compare its scores with PyTorch; plus resume, refusal, pooling comparison, bench."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from model_export_helpers import write_config, write_dataset  # noqa: E402

from desktop_app.core.image_io import load_rgb  # noqa: E402
from desktop_app.core.inference import QualityEngine  # noqa: E402
from desktop_app.core.model_meta import SCHEMA_VERSION  # noqa: E402
from desktop_app.core.tiling import (  # noqa: E402
    image_to_patches,
    normalise_patches,
    patch_positions,
)
from model_export.cli import main  # noqa: E402
from model_export.config import load_config  # noqa: E402
from model_export.model.streaming import is_streamed  # noqa: E402
from model_export.training.train import load_checkpoint, model_from_checkpoint, train  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chain")
    write_config(folder, write_dataset(folder))
    return folder


@pytest.fixture(scope="module")
def exported(workdir: Path) -> Path:
    """Train, evaluate and export through the CLI; returns the run folder."""
    config = workdir / "config.toml"
    run = workdir / "run"
    assert main(["--no-progress", "train", "--config", str(config)]) == 0
    assert main(["--no-progress", "evaluate", "--run", str(run), "--bootstrap", "200"]) == 0
    assert main(["--no-progress", "export", "--run", str(run)]) == 0
    return run


def test_training_writes_logs_and_checkpoints(exported: Path) -> None:
    history = json.loads((exported / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_auc"} <= set(history[0])
    assert (exported / "metrics.csv").read_text().count("\n") == 5
    assert (exported / "checkpoints" / "best.pt").is_file()
    summary = json.loads((exported / "train_summary.json").read_text())
    assert summary["descriptor_extraction"]["patches_per_s"] > 0
    assert summary["head_training"]["patches_per_s"] > 0
    splits = (exported / "splits.csv").read_text()
    assert splits.count(",val,") == 5 and splits.count(",train,") == 8


def test_evaluation_report(exported: Path) -> None:
    report = json.loads((exported / "eval" / "report.json").read_text())
    assert report["threshold"]["method"] == "youden" and report["threshold"]["chosen_on"] == "val"
    assert len(report["threshold"]["ci95"]) == 2
    test = report["splits"]["test"]
    for key in ("auc", "sensitivity", "specificity", "ppv", "npv"):
        assert len(test["all"][key]["ci95"]) == 2
    assert set(test["cohorts"]) <= {"patient", "pcp"}
    for name in ("roc_val.png", "roc_test.png", "calibration_test.png", "scores.csv"):
        assert (exported / "eval" / name).stat().st_size > 0
    # the generated good and poor images are easy to tell apart even with a random trunk
    assert report["splits"]["val"]["all"]["auc"]["value"] >= 0.8


def test_engine_score_equals_pytorch(exported: Path, workdir: Path) -> None:
    payload = load_checkpoint(exported / "checkpoints" / "best.pt")
    model = model_from_checkpoint(payload)
    # two threads: the engine splits each bag over two sessions at the files' trunk/head seam
    engine = QualityEngine(exported / "export" / "tiny-fp32.onnx", "cpu", intra_op_threads=2)
    report = json.loads((exported / "eval" / "report.json").read_text())
    assert engine.meta.precision == "fp32"
    assert engine.splits_bags and engine.meta.schema_version == SCHEMA_VERSION
    assert engine.threshold == pytest.approx(report["threshold"]["value"])
    assert engine.meta.reason_names == ("blur", "dark")
    assert engine.meta.tiling.patch_size == 32
    images = sorted((workdir / "images").glob("*.png"))[:4]
    wide = np.ascontiguousarray(np.concatenate([load_rgb(images[0])] * 3, axis=1))
    for image in [load_rgb(p) for p in images] + [wide]:
        for grid in ("capture", "live"):
            result = engine.score(image, grid=grid)
            spec = engine.meta.tiling.capture if grid == "capture" else engine.meta.tiling.live
            patches, layout = image_to_patches(image, 32, spec)
            with torch.inference_mode():
                out = model(
                    torch.from_numpy(normalise_patches(patches, engine.meta.input)),
                    torch.from_numpy(patch_positions(layout)),
                )
            assert abs(result.score - float(out[0][0])) <= 1e-4
            np.testing.assert_allclose(result.level_probs, out[1][0].numpy(), atol=1e-4)
            np.testing.assert_allclose(result.patch_scores.ravel(), out[2].numpy(), atol=1e-4)
            np.testing.assert_allclose(result.mil_weights.ravel(), out[3].numpy(), atol=1e-4)
            assert result.accepted == (result.score >= engine.threshold)
    int8 = QualityEngine(exported / "export" / "tiny-int8.onnx", "cpu", intra_op_threads=2)
    assert int8.meta.precision == "int8" and int8.threshold == engine.threshold
    assert int8.splits_bags
    # the int8 file's validation metrics are its own; other splits say they are fp32's
    val8 = int8.meta.validation_metrics["val"]
    assert val8["measured_on"].startswith("this int8 file") and val8["n"] > 0
    assert 0.0 <= val8["auc"]["value"] <= 1.0
    assert engine.meta.validation_metrics["val"]["measured_on"].startswith("the trained PyTorch")
    assert "not re-measured" in int8.meta.validation_metrics["test"]["measured_on"]
    for name in ("tiny-fp32.onnx", "tiny-int8.onnx"):  # both shipped graphs stream the trunk
        assert is_streamed(onnx.load(str(exported / "export" / name)))
    assert abs(int8.score(wide).score - engine.score(wide).score) < 0.05


def test_model_card(exported: Path, workdir: Path) -> None:
    card = (exported / "export" / "tiny-model-card.md").read_text()
    assert str(workdir) not in card  # no build machine's absolute paths
    for heading in ("## Intended use", "## Data", "## Method", "## Metrics", "## Limits"):
        assert heading in card
    assert "RANDOM initialisation" in card and "Licences" in card
    assert "| test | all |" in card


def test_bench_torch_prints_one_json_line(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_export.bench import bench_torch

    model = exported / "export" / "tiny-int8.onnx"
    assert bench_torch.sidecar_checkpoint(model).is_file()
    assert (
        bench_torch.main(["--model", str(model), "--grid", "live", "--runs", "2", "--warmup", "0"])
        == 0
    )
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    result = json.loads(line)
    assert {"grid", "patches", "median_ms", "p90_ms", "runs"} <= set(result)
    from desktop_app.core.bench import LIVE_FRAME_HW, synthetic_frame

    engine = QualityEngine(model, providers="cpu")
    assert (
        result["patches"] == engine.score(synthetic_frame(*LIVE_FRAME_HW, seed=1), "live").layout.n
    )


def test_export_refuses_a_failing_model(exported: Path, tmp_path: Path) -> None:
    from model_export.export.onnx_graph import ExportCheckError
    from model_export.export.run import export_run

    with pytest.raises(ExportCheckError, match="int8"):
        export_run(exported, tmp_path / "refused", max_auc_drop=-1.0, progress=False)
    assert not list((tmp_path / "refused").glob("*.onnx"))
    assert main(["--no-progress", "export", "--run", str(exported), "--out",
                 str(tmp_path / "refused"), "--tolerance", "-1"]) == 2  # fmt: skip
    assert not list((tmp_path / "refused").glob("*.onnx"))


def test_int8_file_can_take_its_own_youden_threshold(exported: Path, tmp_path: Path) -> None:
    from model_export.export.run import export_run

    default_int8 = QualityEngine(exported / "export" / "tiny-int8.onnx", "cpu")
    default_fp32 = QualityEngine(exported / "export" / "tiny-fp32.onnx", "cpu")
    assert default_int8.threshold == default_fp32.threshold  # the default: one threshold

    result = export_run(exported, tmp_path / "own", int8_threshold="youden", progress=False)
    assert result.int8_path is not None
    fp32, int8 = QualityEngine(result.fp32_path, "cpu"), QualityEngine(result.int8_path, "cpu")
    own = int8.meta.validation_metrics["int8_threshold"]
    assert int8.threshold == pytest.approx(own["value"])
    assert int8.meta.decision.method.startswith("youden on the int8")
    assert fp32.threshold == pytest.approx(default_fp32.threshold)
    assert 0.0 <= own["specificity"] <= 1.0 and 0.0 <= own["sensitivity"] <= 1.0
    card = result.card_path.read_text(encoding="utf-8")
    assert "the int8 file's own threshold" in card
    agreement = int8.meta.validation_metrics["int8_decision_agreement"]
    flips = agreement["int8_only_accepts"] + agreement["int8_only_rejects"]
    assert agreement["same"] + flips == agreement["n"] == own["n"]
    assert f"on {agreement['same']} of {agreement['n']} validation images" in card
    assert f"uses its own, {own['value']:.4f}" in card  # the intended-use line names both
    with pytest.raises(ValueError, match="int8_threshold"):
        export_run(exported, tmp_path / "bad", int8_threshold="median", progress=False)


def test_resume_continues_identically(exported: Path, workdir: Path) -> None:
    config = load_config(workdir / "config.toml", {"out_dir": str(workdir / "resumed")})
    train(config, progress=False, stop_after_epoch=2)
    assert load_checkpoint(workdir / "resumed" / "checkpoints" / "last.pt")["epoch"] == 2
    train(config, progress=False)
    resumed = load_checkpoint(workdir / "resumed" / "checkpoints" / "last.pt")
    straight = load_checkpoint(exported / "checkpoints" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 4
    for key, value in straight["head_state"].items():
        torch.testing.assert_close(resumed["head_state"][key], value, rtol=0, atol=0)
    changed = load_config(workdir / "config.toml", {"out_dir": str(workdir / "resumed"), "lr": 0.1})
    from model_export.training.train import TrainingError

    with pytest.raises(TrainingError, match="different config"):
        train(changed, progress=False)


def test_compare_pooling(workdir: Path) -> None:
    out = workdir / "pooling"
    assert main(["--no-progress", "compare-pooling", "--config", str(workdir / "config.toml"),
                 "--out-dir", str(out), "--epochs", "2"]) == 0  # fmt: skip
    results = json.loads((out / "pooling_comparison.json").read_text())
    assert set(results["summary"]) == {"mean", "max", "attention"}
    for metrics in results["summary"].values():
        assert 0.0 <= metrics["val_auc"]["mean"] <= 1.0
    assert "| attention |" in (out / "pooling_comparison.md").read_text()


def test_fine_tuning_last_block(workdir: Path, tmp_path: Path) -> None:
    """trainable_blocks > 0 trains through the trunk (no cache) and exports its weights."""
    config = load_config(
        workdir / "config.toml",
        {"out_dir": str(tmp_path / "ft"), "trainable_blocks": 1, "epochs": 1, "trunk_lr": 1e-3},
    )
    before = {k: v.clone() for k, v in model_from_checkpoint_trunk(config).items()}
    train(config, progress=False)
    payload = load_checkpoint(tmp_path / "ft" / "checkpoints" / "best.pt")
    after = payload["trunk_state"]
    assert not torch.equal(after["features.28.weight"], before["features.28.weight"])
    assert torch.equal(after["features.0.weight"], before["features.0.weight"])
    from model_export.export.run import export_run

    result = export_run(tmp_path / "ft", progress=False, int8=False)
    assert result.max_abs_diff <= 1e-4


def model_from_checkpoint_trunk(config: object) -> dict[str, torch.Tensor]:
    from model_export.model.features import build_trunk

    return build_trunk(config.weights, seed=config.seed).state_dict()  # type: ignore[attr-defined]


def test_int8_head_distillation(exported: Path, tmp_path: Path) -> None:
    """The distilled int8 file: recorded in metadata and card, kept only when validation agrees
    better with fp32, over a quantized trunk identical to the plain int8 file's."""
    from model_export.export.onnx_graph import onnx_scores
    from model_export.export.run import export_run

    result = export_run(
        exported, tmp_path / "distil", int8_distil_images=6, model_version="9.9.9", progress=False
    )
    assert result.int8_path is not None
    int8 = QualityEngine(result.int8_path, "cpu")
    assert int8.meta.model_version == QualityEngine(result.fp32_path, "cpu").meta.model_version
    assert int8.meta.model_version == "9.9.9"
    info = int8.meta.validation_metrics["int8_head_distillation"]
    assert info["images"] == 6 and len(info["epoch_losses"]) == info["epochs"]
    assert info["trunk_max_abs_diff"] == 0.0  # same calibration -> the same quantized trunk
    before, after = info["validation_before"], info["validation_after"]
    assert info["adopted"] == (after["rms"] < before["rms"])
    assert info["train_gap_after"]["score_rms"] <= info["train_gap_before"]["score_rms"]
    card = result.card_path.read_text(encoding="utf-8")
    assert "int8 head distillation" in card and f"rms {before['rms']:.4f} ->" in card

    # The shipped int8 file is the distilled one exactly when adopted: its validation scores
    # differ from the plain int8 file's then, and are the same otherwise.
    from model_export.config import TrainConfig
    from model_export.evaluation.evaluate import load_eval_dataset
    from model_export.model.features import tile_image

    payload = load_checkpoint(exported / "checkpoints" / "best.pt")
    config = TrainConfig.from_dict(payload["config"])
    dataset = load_eval_dataset(exported, config, payload["reason_names"], [])
    bags = [
        tile_image(dataset.images[i].path, config.patch_size, config.train_grid)[:2]
        for i in dataset.split_indices("val")
    ]
    plain = onnx_scores(exported / "export" / "tiny-int8.onnx", bags)
    shipped = onnx_scores(result.int8_path, bags)
    assert np.array_equal(plain, shipped) != info["adopted"]


def write_rated_set(shared: Path, name: str, n: int, seed: int) -> None:
    """A rated set in ../shared/data's layout (ratings.csv, faults.csv, images, sources)."""
    import csv

    import cv2
    from model_export_helpers import make_image

    rng = np.random.default_rng(seed)
    folder = shared / name
    (folder / "images").mkdir(parents=True)
    (shared / "sources").mkdir(exist_ok=True)
    ratings_rows, fault_rows = [], []
    for i in range(n):
        good = i % 3 != 0
        fault = "none" if i % 2 else ("blurdark" if not good else "tint")
        image_name = f"images/{name}-{i:03d}.png"
        source = f"sources/{name}-{i:03d}.png"
        picture = make_image(good, rng)
        cv2.imwrite(str(folder / image_name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(shared / source), cv2.cvtColor(make_image(True, rng), cv2.COLOR_RGB2BGR))
        ratings = rng.integers(3, 6, 4) if good else rng.integers(1, 3, 4)
        ratings_rows.append(
            {
                "image": image_name,
                **{f"rater_{r + 1}": int(ratings[r]) for r in range(4)},
                "cohort": "pcp" if i % 4 < 2 else "patient",
                "split": name,
                "source_path": source,
                "blur": int(not good),
                "dark": int(not good),
            }
        )
        fault_rows.append({"image": image_name, "source_path": source, "fault": fault})
    for file_name, rows in (("ratings.csv", ratings_rows), ("faults.csv", fault_rows)):
        with (folder / file_name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def test_generalisation_tunes_the_head_on_rated_photos(exported: Path, tmp_path: Path) -> None:
    from model_export.evaluation.generalisation_cli import format_generalisation

    shared = tmp_path / "data"
    write_rated_set(shared, "rated", 30, seed=1)
    write_rated_set(shared, "rated2", 30, seed=2)
    start = exported / "export" / "tiny-int8.onnx"
    out = tmp_path / "gen"
    tuned_path = out / "tuned-int8.onnx"
    args = ["--no-progress", "generalisation", "--model", str(start), "--shared", str(shared)]
    args += ["--out", str(out), "--write", str(tuned_path), "--model-version", "9.9.9"]
    assert main([*args, "--epochs", "4", "--lr", "1e-3"]) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("rated2_tuned_on_rated", "rated_tuned_on_rated2"):
        result = report["out_of_family"][key]
        assert result["n"] == 30 and 0.0 <= result["auc"] <= 1.0
    families = report["leave_one_family_out"]["families"]
    assert set(families) == {"blurdark", "tint"}
    assert set(report["in_family_cv"]["by_skin_tone"]) and report["in_family_cv"]["all"]["n"] == 60
    assert "Out-of-family" in format_generalisation(report)
    tuned = QualityEngine(tuned_path, providers="cpu")
    original = QualityEngine(start, providers="cpu")
    assert tuned.meta.model_version == "9.9.9"
    assert tuned.threshold == pytest.approx(report["shipped_threshold"])
    assert tuned.meta.validation_metrics["out_of_family_rated2"]["n"] == 30
    image = load_rgb(sorted((shared / "rated" / "images").glob("*.png"))[0])
    assert tuned.score(image).score != pytest.approx(original.score(image).score, abs=1e-6)
    # the tuned file is the same graph: tiling, reasons and inputs are the starting model's
    assert tuned.meta.reason_names == original.meta.reason_names
    assert tuned.meta.tiling == original.meta.tiling
