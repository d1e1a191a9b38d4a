from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.cli import main


def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    sub = folder / "nested"
    sub.mkdir(parents=True)
    pixels = rng.integers(0, 256, size=(80, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "sharp.jpg", quality=95)
    Image.fromarray(pixels).save(sub / "sharp.png")
    Image.fromarray(pixels).save(sub / "sharp.webp")
    Image.fromarray(pixels).save(sub / "sharp.tiff")
    Image.fromarray(pixels).save(sub / "sharp.bmp")
    (folder / "zero.jpg").write_bytes(b"")
    good = (folder / "sharp.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    (folder / "not-an-image.png").write_text("this is text, not a PNG")
    (folder / "notes.txt").write_text("ignored: not an image suffix")


def test_score_folder_reports_bad_files_and_scores_the_rest(
    tmp_path: Path, test_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_images(tmp_path / "photos")
    code = main(["score", "--model", str(test_model_path), "--json", str(tmp_path / "photos")])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scored = {Path(r["path"]).name: r for r in records if "score" in r}
    errors = {Path(r["path"]).name: r["error"] for r in records if "error" in r}
    assert set(scored) == {"sharp.jpg", "sharp.png", "sharp.webp", "sharp.tiff", "sharp.bmp"}
    assert set(errors) == {"zero.jpg", "corrupt.jpg", "not-an-image.png"}
    assert "empty" in errors["zero.jpg"]
    for record in scored.values():
        assert record["decision"] in ("accept", "retake")
        assert 0.0 <= record["score"] <= 1.0 and record["ms"] > 0
        assert set(record) >= {"path", "score", "level", "decision", "reasons", "ms"}


def test_score_exit_code_nonzero_only_when_nothing_scored(
    tmp_path: Path, test_model_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    assert main(["score", "--model", str(test_model_path), str(bad)]) == 1


def test_score_honours_exif_orientation(tmp_path: Path) -> None:
    from desktop_app.core.image_io import load_rgb

    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").shape[:2] == (40, 20)


def test_score_without_model_explains_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SKIN_CAPTURE_RESOURCES", str(tmp_path / "empty"))
    assert main(["score", str(tmp_path)]) == 2
    assert "No quality model is installed" in capsys.readouterr().err


def test_score_with_broken_model_gives_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    assert main(["score", "--model", str(model), str(tmp_path)]) == 2
    assert "damaged or truncated" in capsys.readouterr().err


def _nan_model(path: Path) -> Path:
    """The handmade test model with its pooled score multiplied by NaN."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx_factory import build_graph, write_model

    graph = build_graph(32, n_reasons=2)
    for node in graph.graph.node:
        node.output[:] = ["score_raw" if o == "score" else o for o in node.output]
        node.input[:] = ["score_raw" if i == "score" else i for i in node.input]
    graph.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    graph.graph.node.append(helper.make_node("Mul", ["score_raw", "nan"], ["score"]))
    onnx.checker.check_model(graph)
    return write_model(path, graph=graph)


def test_a_model_that_returns_nan_is_reported_not_printed_as_invalid_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_images(tmp_path / "photos")
    model = _nan_model(tmp_path / "nan.onnx")
    code = main(["score", "--model", str(model), "--json", str(tmp_path / "photos" / "sharp.jpg")])
    assert code == 1  # nothing could be scored
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]  # every line is valid JSON
    assert len(records) == 1 and "no valid score" in records[0]["error"]


def test_a_model_failing_at_run_time_gives_a_message_not_a_traceback(
    tmp_path: Path, test_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx
    from onnx_factory import build_graph, write_model

    graph = build_graph(32, n_reasons=2)
    # a graph that fails when it runs: a Reshape to an impossible shape on the bag's scores
    from onnx import helper, numpy_helper

    for node in graph.graph.node:
        node.output[:] = ["ps_raw" if o == "patch_scores" else o for o in node.output]
        node.input[:] = ["ps_raw" if i == "patch_scores" else i for i in node.input]
    graph.graph.initializer.append(numpy_helper.from_array(np.array([7, 5], np.int64), "bad"))
    graph.graph.node.append(helper.make_node("Reshape", ["ps_raw", "bad"], ["ps_2d"]))
    graph.graph.node.append(helper.make_node("Flatten", ["ps_2d"], ["ps_flat"], axis=0))
    graph.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    graph.graph.node.append(helper.make_node("Reshape", ["ps_flat", "flat"], ["patch_scores"]))
    onnx.checker.check_model(graph)
    model = write_model(tmp_path / "broken.onnx", graph=graph)
    _write_images(tmp_path / "photos")
    code = main(["score", "--model", str(model), str(tmp_path / "photos" / "sharp.jpg")])
    err = capsys.readouterr().err
    assert code == 1
    assert "could not score it" in err and "Traceback" not in err


def test_every_entry_point_resolves_the_model_the_same_way(
    tmp_path: Path, test_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`skin-capture --model X score` used the bundled model; `score` ignored Settings' model."""
    from onnx_factory import make_meta, write_model

    from desktop_app.core.settings import AppSettings, save_settings

    _write_images(tmp_path / "photos")
    image = str(tmp_path / "photos" / "sharp.jpg")
    other = write_model(tmp_path / "other.onnx", meta=make_meta(threshold=0.123))

    def threshold_used(argv: list[str]) -> float:
        assert main(argv) == 0
        return float(json.loads(capsys.readouterr().out.splitlines()[0])["threshold"])

    assert threshold_used(["--model", str(other), "score", "--json", image]) == 0.123
    assert threshold_used(["score", "--model", str(other), "--json", image]) == 0.123
    save_settings(AppSettings(model_path=str(other)))  # chosen in Settings, as the GUI does
    assert threshold_used(["score", "--json", image]) == 0.123
    assert threshold_used(["score", "--model", str(test_model_path), "--json", image]) == 0.5


def test_bench_reports_whether_bags_are_split(
    test_model_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``skin-capture bench`` says how each bag ran; ``--one-piece`` runs them unsplit (the
    A/B comparison of the trunk/head seam), for this process's engines."""
    monkeypatch.setenv("SKIN_CAPTURE_SPLIT_BAGS", "1")  # undone after the test: --one-piece sets 0
    common = ["bench", "--model", str(test_model_path), "--threads", "2", "--json", "--no-torch"]
    assert main([*common, "--runs", "20", "--warmup", "1"]) == 0
    split = json.loads(capsys.readouterr().out)
    assert [c["split_bags"] for c in split["cases"]] == [True, True]
    assert main([*common, "--runs", "20", "--warmup", "1", "--one-piece"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert [c["split_bags"] for c in whole["cases"]] == [False, False]
