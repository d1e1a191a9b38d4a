from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from onnx_factory import build_graph, make_meta, write_model

from desktop_app.core.inference import QualityEngine
from desktop_app.core.model_meta import (
    SEAM_GRAPH_IO,
    GridSpec,
    ModelContractError,
    ModelMeta,
    OrdinalSpec,
    check_graph_consistency,
)


def test_round_trip_preserves_every_field() -> None:
    meta = make_meta(threshold=0.37, validation_metrics={"auc": 0.91, "n": 120})
    again = ModelMeta.from_json(meta.to_json())
    assert again == meta
    assert again.tiling.capture.max_long_side == 128
    assert again.ordinal.k == 5


def test_round_trip_through_onnx_file(tmp_path: Path) -> None:
    meta = make_meta(threshold=0.42)
    engine = QualityEngine(write_model(tmp_path / "m.onnx", meta))
    assert engine.meta == meta
    assert engine.threshold == pytest.approx(0.42)


def test_truncated_file_is_refused(tmp_path: Path, test_model_path: Path) -> None:
    data = test_model_path.read_bytes()
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelContractError, match="damaged or truncated"):
        QualityEngine(broken)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="No model file"):
        QualityEngine(tmp_path / "absent.onnx")


def test_model_without_metadata_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "nometa.onnx", metadata_json="")
    with pytest.raises(ModelContractError, match="carries no Skin Capture Assist metadata"):
        QualityEngine(path)


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    raw = json.loads(make_meta().to_json())
    raw["schema_version"] = 99
    path = write_model(tmp_path / "v99.onnx", metadata_json=json.dumps(raw))
    with pytest.raises(ModelContractError, match="schema version 99"):
        QualityEngine(path)


def test_malformed_metadata_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "garbage.onnx", metadata_json="{not json")
    with pytest.raises(ModelContractError, match="not valid JSON"):
        QualityEngine(path)
    raw = json.loads(make_meta().to_json())
    del raw["decision"]
    with pytest.raises(ModelContractError, match="incomplete or malformed"):
        ModelMeta.from_json(json.dumps(raw))


def test_patch_size_mismatch_is_refused(tmp_path: Path) -> None:
    meta = make_meta(patch_size=32)
    path = write_model(tmp_path / "p.onnx", meta, graph=build_graph(48))
    with pytest.raises(ModelContractError, match="48x48 but the metadata says 32x32"):
        QualityEngine(path)


def test_wrong_input_rank_is_refused() -> None:
    meta = make_meta()
    with pytest.raises(ModelContractError, match="rank 3"):
        check_graph_consistency(
            meta,
            {"patches": ["N", 3, 32], "positions": ["N", 2]},
            {n: ["N"] for n in ("score", "level_probs", "patch_scores", "mil_weights", "reasons")},
        )


def test_missing_output_and_level_mismatch_are_refused() -> None:
    meta = make_meta()
    with pytest.raises(ModelContractError, match="output 'reasons' is missing"):
        check_graph_consistency(
            meta,
            {"patches": ["N", 3, 32, 32], "positions": ["N", 2]},
            {"score": [1], "level_probs": [1, 5], "patch_scores": ["N"], "mil_weights": ["N"]},
        )
    with pytest.raises(ModelContractError, match="3 ordinal levels"):
        check_graph_consistency(
            meta,
            {"patches": ["N", 3, 32, 32], "positions": ["N", 2]},
            {
                "score": [1],
                "level_probs": [1, 3],
                "patch_scores": ["N"],
                "mil_weights": ["N"],
                "reasons": [1, 2],
            },
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ordinal": OrdinalSpec(levels=("a", "b"), acceptable_level=5)}, "acceptable level"),
        ({"decision": dataclasses.replace(make_meta().decision, threshold=1.5)}, "threshold"),
        ({"reason_names": ("blur", "blur")}, "duplicate reason"),
    ],
)
def test_inconsistent_record_is_refused(change: dict[str, object], message: str) -> None:
    bad = dataclasses.replace(make_meta(), **change)  # type: ignore[arg-type]
    with pytest.raises(ModelContractError, match=message):
        ModelMeta.from_json(bad.to_json())


def test_a_declared_seam_must_be_in_the_graph(tmp_path: Path) -> None:
    """A schema 2 record naming the trunk/head seam on a graph without one is refused, and so
    are half a seam and a seam in a schema 1 record."""
    path = write_model(
        tmp_path / "no-seam.onnx", meta=make_meta(), graph=build_graph(32, seam=False)
    )
    with pytest.raises(ModelContractError, match="seam input 'descriptors_in'"):
        QualityEngine(path, providers="cpu")
    half = dataclasses.replace(SEAM_GRAPH_IO, output_descriptors="")
    with pytest.raises(ModelContractError, match="both its input and its output"):
        ModelMeta.from_json(make_meta(graph_io=half).to_json())
    with pytest.raises(ModelContractError, match="needs metadata schema version 2"):
        ModelMeta.from_json(make_meta(schema_version=1).to_json())


def test_a_short_side_cap_needs_schema_3_and_is_left_out_of_records_without_one() -> None:
    capped_tiling = dataclasses.replace(
        make_meta().tiling, capture=GridSpec(max_long_side=128, max_short_side=64)
    )
    capped = make_meta(tiling=capped_tiling, schema_version=3)
    assert ModelMeta.from_json(capped.to_json()) == capped
    with pytest.raises(ModelContractError, match="needs metadata schema version 3"):
        ModelMeta.from_json(make_meta(tiling=capped_tiling).to_json())
    too_small = dataclasses.replace(
        capped_tiling, capture=GridSpec(max_long_side=128, max_short_side=16)
    )
    with pytest.raises(ModelContractError, match="short side is smaller than one patch"):
        ModelMeta.from_json(make_meta(tiling=too_small, schema_version=3).to_json())
    # a schema 2 record stays readable by apps that do not know the field
    plain = json.loads(make_meta().to_json())
    assert "max_short_side" not in plain["tiling"]["capture"]
    assert ModelMeta.from_json(json.dumps(plain)).tiling.capture.max_short_side is None
