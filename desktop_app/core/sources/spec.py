"""Choosing a source from the command line or settings, and naming it in a capture's record."""

from __future__ import annotations

from pathlib import Path

from desktop_app.core.sources.base import FrameSource, FrameSourceError
from desktop_app.core.sources.camera import OpenCVCamera
from desktop_app.core.sources.demo import DemoSource
from desktop_app.core.sources.hotfolder import HotFolderSource
from desktop_app.core.sources.replay import ReplaySource


def source_label(source: FrameSource) -> str:
    """What a capture's record says about where it came from: ``demo``, ``camera:0``,
    ``replay:/path`` or ``hotfolder:/path`` (wrappers such as :class:`ResilientSource` are looked
    through)."""
    inner = getattr(source, "source", source)
    if isinstance(inner, OpenCVCamera):
        return f"camera:{inner.index}"
    if isinstance(inner, ReplaySource):
        return f"replay:{inner.path}"
    if isinstance(inner, HotFolderSource):
        return f"hotfolder:{inner.folder}"
    return str(inner.kind)


# ---- choosing a source from the command line / settings -------------------------------------


def source_from_spec(
    spec: str,
    camera_resolution: tuple[int, int] | None = None,
    camera_names: dict[int, str] | None = None,
) -> FrameSource:
    """``demo`` | camera index | ``hotfolder:PATH`` | video file | image folder or file.

    Raises :class:`FrameSourceError` for a spec that names nothing usable.
    """
    text = spec.strip()
    if text.lower() == "demo":
        return DemoSource()
    if text.isdigit():
        index = int(text)
        name = (camera_names or {}).get(index)
        return OpenCVCamera(index, camera_resolution, name=name)
    if text.lower().startswith("hotfolder:"):
        return HotFolderSource(Path(text.split(":", 1)[1]).expanduser())
    path = Path(text).expanduser()
    if path.exists():
        return ReplaySource(path)
    raise FrameSourceError(
        f"Unknown source '{spec}': use 'demo', a camera number, a video file, an image folder "
        "or 'hotfolder:/path/to/folder'."
    )
