"""A real Orthanc (Debian's ``orthanc`` package) for the tests and benches: its own storage
folder, loopback ports, no plugins; read back through its REST API."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

AET = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc server under ``root``; :meth:`start` / :meth:`stop` as often as needed
    (the storage survives a stop)."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not Path(binary).exists():
            raise FileNotFoundError("Orthanc (Debian orthanc) is not installed")
        self.binary = binary
        self.root = root
        self.dicom_port, self.http_port = free_port(), free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "radiomicsd-test", "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"), "DicomAet": AET,
            "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "Plugins": [],
            "StorageCompression": False, "SaveJobs": False, "ConcurrentJobs": 1,
        }))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Orthanc:
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 (owned by the process)
        self.proc = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return self
            except OSError:
                if self.proc.poll() is not None:
                    log_text = (self.root / "orthanc.log").read_text()[-2000:]
                    raise AssertionError("Orthanc exited: " + log_text) from None
                time.sleep(0.2)
        raise AssertionError("Orthanc did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=10) as r:
            body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" \
            else body

    def instances(self) -> list[str]:
        """Orthanc's ids of the instances it stores."""
        return list(self.get("/instances"))

    def tags(self, instance: str) -> dict[str, Any]:
        """An instance's tags by keyword (Orthanc's simplified form)."""
        return dict(self.get(f"/instances/{instance}/simplified-tags"))

    def file(self, instance: str) -> bytes:
        """An instance's DICOM file as Orthanc stores it."""
        return bytes(self.get(f"/instances/{instance}/file"))
