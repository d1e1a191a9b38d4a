"""A throwaway Orthanc DICOMweb server for tests and the crash script (no pytest import here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

ORTHANC_BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
DICOMWEB_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
TEST_USER = ("scatester", "not-a-real-secret")


def find_orthanc() -> tuple[str, str] | str:
    """(binary, dicomweb plugin) or a reason string saying what is missing."""
    binary = next((b for b in ORTHANC_BINARY_CANDIDATES if os.access(b, os.X_OK)), None)
    binary = binary or shutil.which("Orthanc")
    if binary is None:
        return "Orthanc is not installed (Debian package 'orthanc')"
    plugin = next((p for p in DICOMWEB_PLUGIN_CANDIDATES if Path(p).exists()), None)
    if plugin is None:
        return "the Orthanc DICOMweb plugin is not installed (Debian package 'orthanc-dicomweb')"
    return binary, plugin


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrthancServer:
    """Orthanc on 127.0.0.1:<free port>, storage in ``workdir``, HTTP basic auth (TEST_USER)."""

    def __init__(self, workdir: Path, binary: str, plugin: str) -> None:
        self.workdir = Path(workdir)
        self.binary = binary
        self.plugin = plugin
        self.port = free_loopback_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "orthanc.json"
        storage = self.workdir / "storage"
        config = {
            "Name": "skin-capture-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "DicomPort": free_loopback_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {TEST_USER[0]: TEST_USER[1]},
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "OverwriteInstances": False,
            "SaveJobs": False,
            "HttpThreadsCount": 4,
            "ConcurrentJobs": 1,
            "StorageCompression": False,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = self.workdir / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self, timeout_s: float = 30.0) -> None:
        import requests

        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.binary, str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.process.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                r = requests.get(f"{self.url}/system", auth=TEST_USER, timeout=1)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system within {timeout_s} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def get_json(self, path: str, **params: Any) -> Any:
        import requests

        r = requests.get(f"{self.url}{path}", params=params, auth=TEST_USER, timeout=10)
        r.raise_for_status()
        return r.json()

    def get_bytes(self, path: str) -> bytes:
        import requests

        r = requests.get(f"{self.url}{path}", auth=TEST_USER, timeout=30)
        r.raise_for_status()
        return r.content

    def instance_ids(self) -> list[str]:
        """Orthanc's internal ids of all stored instances."""
        return list(self.get_json("/instances"))

    def sop_instance_uids(self) -> list[str]:
        """SOP Instance UIDs of all stored instances (one entry per stored instance)."""
        rows = self.get_json("/instances", expand="")
        return [row["MainDicomTags"]["SOPInstanceUID"] for row in rows]

    def delete_all(self) -> None:
        import requests

        for pid in self.get_json("/patients"):
            requests.delete(f"{self.url}/patients/{pid}", auth=TEST_USER, timeout=10)
