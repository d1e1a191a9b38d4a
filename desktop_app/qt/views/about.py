"""Help > About: the app and model versions, and where the licences are (HTML, no widgets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from desktop_app import __version__
from desktop_app.core.resources import resources_dir

if TYPE_CHECKING:
    from desktop_app.qt.workers.threads import ModelInfo


def about_html(info: ModelInfo | None, model_loading: bool) -> str:
    """The About box's text for the loaded model ``info`` (None: loading or none)."""
    if info is not None:
        model = f"{info.name} {info.version} ({info.precision}, threshold {info.threshold:.2f})"
    elif model_loading:
        model = "loading…"
    else:
        model = "none loaded"
    card = resources_dir() / "models" / "default-model-card.md"
    return (
        f"<h3>Skin Capture Assist {__version__}</h3>"
        f"<p>Quality model: {model}</p>"
        "<p>Checks the technical quality of skin photos before they are sent for remote "
        "assessment. It does not diagnose.</p>"
        "<p><b>Licences</b>: Skin Capture Assist is proprietary software. It is built on "
        "Qt for Python (PySide6, LGPL v3: see Help &gt; About Qt), ONNX Runtime (MIT), "
        "OpenCV (Apache 2.0), NumPy (BSD) and platformdirs (MIT). The quality model's "
        "training data and their licences are listed in its model card: "
        f"{card}</p>"
    )
