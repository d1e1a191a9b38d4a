"""The entry point's huge-page re-execution: when it happens, what it sets, and that it runs."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.core import hugepages
from desktop_app.core.hugepages import OPT_OUT, TUNABLE, hugepage_environment


def _thp_usable() -> bool:
    try:
        return "[never]" not in hugepages.THP_SETTING.read_text()
    except OSError:
        return False


linux_glibc_thp = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc" and _thp_usable()),
    reason="needs Linux, glibc and transparent huge pages not 'never'",
)


@linux_glibc_thp
def test_sets_the_tunable_and_keeps_others() -> None:
    env = hugepage_environment({"PATH": "/bin"})
    assert env is not None and env["GLIBC_TUNABLES"] == TUNABLE and env["PATH"] == "/bin"
    env = hugepage_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env is not None
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"


def test_no_reexecution_when_set_opted_out_or_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hugepage_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None
    assert hugepage_environment({OPT_OUT: "1"}) is None
    monkeypatch.setattr(hugepages.sys, "platform", "win32")
    assert hugepage_environment({}) is None


def test_no_reexecution_when_the_kernel_has_them_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    setting = tmp_path / "enabled"
    setting.write_text("always madvise [never]\n")
    monkeypatch.setattr(hugepages, "THP_SETTING", setting)
    monkeypatch.setattr(hugepages.sys, "platform", "linux")
    assert hugepage_environment({}) is None


@linux_glibc_thp
def test_a_process_reexecutes_itself_once_with_the_tunable() -> None:
    code = (
        "import os\n"
        "from desktop_app.core.hugepages import reexec_with_hugepages\n"
        "print('start', flush=True)\n"
        "reexec_with_hugepages()\n"
        "print('tunables=' + os.environ.get('GLIBC_TUNABLES', ''))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", OPT_OUT)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out == ["start", "start", f"tunables={TUNABLE}"]
