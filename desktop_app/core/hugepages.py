"""Let the C allocator back large buffers with transparent huge pages (Linux, glibc).

The quality model's activations and weights are tens of megabytes that every layer streams
through; with 4 KiB pages the convolutions spend much of their time on TLB misses. Measured on
the 2-core CPU we target, one capture check took 570-590 ms with huge pages and 590 or 760-790 ms
without, depending on how a process's memory happened to be laid out. onnxruntime allocates with
``malloc``, and glibc only asks the kernel for huge pages (``madvise``) when the tunable
``glibc.malloc.hugetlb=1`` is set, which glibc reads once at process start; so the ``skin-capture``
entry point re-executes itself once with it set. Nothing changes where the kernel has transparent
huge pages off, on other C libraries or systems, or when ``SKIN_CAPTURE_NO_HUGEPAGES`` is set.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
OPT_OUT = "SKIN_CAPTURE_NO_HUGEPAGES"


def hugepage_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when no re-execution is wanted."""
    if not sys.platform.startswith("linux") or environ.get(OPT_OUT):
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None  # already set (by us or by the user)
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        if "[never]" in THP_SETTING.read_text():
            return None
    except OSError:
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return env


def reexec_with_hugepages() -> None:
    """Replace this process by itself with the tunable set (returns only when not needed or not
    possible). Call it first thing in an entry point, before threads or heavy imports."""
    env = hugepage_environment(os.environ)
    if env is None:
        return
    if getattr(sys, "frozen", False):  # a PyInstaller bundle: the executable is the app
        argv = [sys.executable, *sys.argv[1:]]
    else:
        argv = [sys.executable, *sys.orig_argv[1:]]
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:  # go on without huge pages rather than not start
        logger.debug("could not re-execute with huge pages: %s", exc)
