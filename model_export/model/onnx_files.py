"""Rewriting an ONNX model file only once its checks have passed."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def checked_replacement(source: Path, target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write and check a rewritten ``source`` at.

    When the block ends without an exception the temporary file replaces ``target`` (which may
    be ``source``) with ``source``'s permissions; when a check raises, it is removed and
    ``target`` is left as it was. The block must close what it opened on the temporary file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, source.stat().st_mode & 0o777)  # mkstemp's 0600 would hide it from others
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def add_rewrite_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--out`` of the commands that rewrite an exported file."""
    parser.add_argument("--model", type=Path, required=True, help="exported ONNX model")
    parser.add_argument("--out", type=Path, required=True, help="where to write (may be --model)")
