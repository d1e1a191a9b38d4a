"""onnxruntime's raw text never reaches the screen: model load and run failures get plain
messages (core.inference.describe_model_error), the detail goes to the log."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from desktop_app.core.capture import CaptureContext, process_capture
from desktop_app.core.inference import QualityEngine, describe_model_error
from desktop_app.core.model_meta import ModelContractError

RAW = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running"


def _ort_error(name: str, text: str = RAW) -> Exception:
    """An exception named like one of onnxruntime's own classes."""
    return type(name, (Exception,), {})(text)


@pytest.mark.parametrize(
    ("error", "stage", "expected"),
    [
        (_ort_error("InvalidProtobuf", "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF"), "load",
         "damaged or truncated"),
        (_ort_error("NoSuchFile"), "load", "cannot be found"),
        (_ort_error("Fail", "ONNX Runtime only *guarantees* support for models stamped with "
                    "official released onnx opset versions. Opset 99 is under development"),
         "load", "newer model runtime"),
        (_ort_error("InvalidGraph"), "load", "not a valid quality model"),
        (_ort_error("EPFail", "CUDA failure 100: no CUDA-capable device"), "load", "'CPU'"),
        (_ort_error("RuntimeException", "std::bad_alloc"), "run", "not enough memory"),
        (_ort_error("RuntimeException"), "run", "could not be checked"),
        (RuntimeError("something else entirely"), "load", "details are in the app's log"),
    ],
)  # fmt: skip
def test_plain_messages_for_onnxruntime_errors(
    error: Exception, stage: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        message = describe_model_error(error, stage, "m.onnx")
    assert expected in message
    assert "ONNXRuntimeError" not in message and "RUNTIME_EXCEPTION" not in message
    assert type(error).__name__ in caplog.text  # the detail is logged


def test_a_damaged_model_file_gives_a_plain_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07not an onnx model at all" * 10)
    with pytest.raises(ModelContractError) as failure:
        QualityEngine(broken, providers="cpu")
    assert "damaged or truncated" in str(failure.value)
    assert "ONNXRuntimeError" not in str(failure.value) and "INVALID_PROTOBUF" not in str(
        failure.value
    )


class _FailingEngine:
    def score(self, image: np.ndarray, grid: str = "capture") -> object:
        raise _ort_error("RuntimeException")


def test_a_model_failing_on_a_capture_keeps_the_photo_with_a_plain_reason() -> None:
    context = CaptureContext("staff", "nurse-a", "P-1", "Chest", "")
    image = np.zeros((40, 40, 3), np.uint8)
    outcome = process_capture(_FailingEngine(), None, image, "RGB", context, "camera:0")  # type: ignore[arg-type]
    assert "could not be checked" in outcome.judgement.message
    assert "ONNXRuntimeError" not in outcome.judgement.message
