"""Sending: a C-STORE SCU of every committed DICOM output, through a persistent outbox.

The outbox is ``state_dir/outbox``. An export that writes ``image.dcm`` stages a hard link (a
copy across file systems) of it as ``.<pseudonym>.dcm.part`` before its commit and renames it
to ``<pseudonym>.dcm`` after: an instance is queued if and only if its output was committed.
At start-up a ``.part`` whose output exists is queued, any other is dropped. The sender thread
sends what is queued, oldest first, over one association at a time, deletes an entry once the
destination answered Success (or a warning), and after a failure (no association, a refusal,
a failure status) waits ``retry_base_seconds * 2^(n-1)`` (at most ``retry_max_seconds``)
before the next try of that entry. A destination that is down loses nothing: the outbox holds
the instances until it is back. An instance whose Success answer was lost to a crash is sent
again: a PACS stores an instance once by its SOP Instance UID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radiomicsd.daemon.logs import get_logger
from radiomicsd.daemon.metrics import Metrics
from radiomicsd.pipeline.settings import setting

log = get_logger("radiomicsd.send")
OUTBOX = "outbox"


@dataclass(frozen=True)
class SendSettings:
    """Where committed DICOM outputs go (see the module docstring)."""

    enabled: bool = setting(False, "send every committed image.dcm by C-STORE (needs "
                            "output_format dicom or both)")
    host: str = setting("127.0.0.1", "destination host")
    port: int = setting(4242, "destination port", ge=1, le=65535)
    ae_title: str = setting("ORTHANC", "destination (called) AE title")
    calling_ae_title: str = setting("RADIOMICSD", "this sender's (calling) AE title")
    retry_base_seconds: float = setting(2.0, "backoff after a failure: base * 2^(n-1)", gt=0)
    retry_max_seconds: float = setting(300.0, "longest wait between tries", gt=0)
    timeout_seconds: float = setting(30.0, "connection, ACSE, DIMSE and network timeouts",
                                     gt=0)


class Outbox:
    """The queued instances under ``state_dir/outbox`` (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / OUTBOX
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.wake = threading.Event()

    def stage(self, instance: Path, name: str) -> Path:
        """Link (or copy) ``instance`` as the hidden part of entry ``name``; fsync'ed."""
        part = self.folder / f".{name}.dcm.part"
        part.unlink(missing_ok=True)
        try:
            os.link(instance, part)
        except OSError:
            shutil.copyfile(instance, part)
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return part

    def ready(self, name: str) -> None:
        """The output of ``name`` is committed: queue its instance."""
        os.rename(self.folder / f".{name}.dcm.part", self.folder / f"{name}.dcm")
        self.wake.set()

    def drop(self, name: str) -> None:
        (self.folder / f".{name}.dcm.part").unlink(missing_ok=True)

    def recover(self, out_dir: Path) -> int:
        """Queue the parts whose output was committed, drop the others; returns how many were
        queued."""
        queued = 0
        for part in self.folder.glob(".*.dcm.part"):
            name = part.name[1:].removesuffix(".dcm.part")
            if (out_dir / name / "image.dcm").is_file():
                os.rename(part, self.folder / f"{name}.dcm")
                queued += 1
            else:
                part.unlink(missing_ok=True)
        return queued

    def entries(self) -> list[Path]:
        """Queued instances, oldest first."""
        return sorted(self.folder.glob("[!.]*.dcm"), key=lambda p: p.stat().st_mtime_ns)


class Sender:
    """The sending thread: :meth:`start`, :meth:`stop`."""

    def __init__(self, settings: SendSettings, outbox: Outbox, metrics: Metrics) -> None:
        self.settings = settings
        self.outbox = outbox
        self.metrics = metrics
        self._stop = threading.Event()
        self._due: dict[str, tuple[int, float]] = {}  # entry name -> (failures, next try)
        self._thread = threading.Thread(target=self._run, name="send", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.outbox.wake.set()
        self._thread.join(self.settings.timeout_seconds + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            entries = self.outbox.entries()
            self.metrics.outbox.set(len(entries))
            due = [e for e in entries if self._due.get(e.name, (0, 0.0))[1] <= now]
            if due:
                self._send(due)
                continue
            waits = [t - now for _, t in (self._due.get(e.name, (0, 0.0)) for e in entries)]
            self.outbox.wake.wait(min([*waits, 5.0]) if waits else 5.0)
            self.outbox.wake.clear()

    def _send(self, entries: list[Path]) -> None:
        """Send ``entries`` over one association; back off the ones that failed."""
        import pydicom

        assoc = self._associate(entries)
        try:
            for entry in entries:
                if self._stop.is_set():
                    return
                ok = False
                if assoc is not None and assoc.is_established:
                    try:
                        status = assoc.send_c_store(pydicom.dcmread(entry))
                        ok = bool(status) and status.Status in (0x0000, 0xB000, 0xB006,
                                                                0xB007)
                    except (OSError, ValueError, RuntimeError):
                        ok = False
                self._done(entry, ok)
        finally:
            if assoc is not None and assoc.is_established:
                with contextlib.suppress(Exception):
                    assoc.release()

    def _associate(self, entries: list[Path]) -> Any:
        import pydicom
        from pynetdicom import AE

        s = self.settings
        ae = AE(ae_title=s.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = s.timeout_seconds
        ae.connection_timeout = s.timeout_seconds
        contexts = set()
        for entry in entries[:64]:
            meta = pydicom.dcmread(entry, stop_before_pixels=True).file_meta
            contexts.add(str(meta.MediaStorageSOPClassUID))
        for sop_class in sorted(contexts):
            ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
        try:
            assoc = ae.associate(s.host, s.port, ae_title=s.ae_title)
        except (OSError, RuntimeError):
            return None
        return assoc if assoc.is_established else None

    def _done(self, entry: Path, ok: bool) -> None:
        if ok:
            entry.unlink(missing_ok=True)
            self._due.pop(entry.name, None)
            self.metrics.dicom_sent.labels("sent").inc()
            log.info("send.sent", pseudonym=entry.stem)
            return
        failures = self._due.get(entry.name, (0, 0.0))[0] + 1
        wait = min(self.settings.retry_max_seconds,
                   self.settings.retry_base_seconds * 2 ** (failures - 1))
        self._due[entry.name] = (failures, time.monotonic() + wait)
        self.metrics.dicom_sent.labels("retry").inc()
        log.warning("send.retry", pseudonym=entry.stem, failures=failures,
                    wait_seconds=round(wait, 1))
