"""The DICOM Storage SCP of ``radiomicsd watch``: ultrasound machines and PACS send C-STORE.

Off by default (``dicom_scp.enabled``). A received instance is written, with its file meta, to
a hidden file in ``input_dir/<dicom_scp.folder>/``, fsync'ed, renamed to the first 32 hex
digits of its SHA-256 and the folder fsync'ed: only then is the C-STORE answered Success. A
crash after the answer loses nothing (the file is durable in the input folder and the daemon's
start-up scan finds it); a sender's retry of the same instance lands on the same name and is
processed once (the journal knows the content). Everything else, refusals included, is the
watched folder's ordinary path.

Callers are checked against ``allowed_callers`` (empty: any), associations and PDU sizes are
bounded, C-ECHO is answered, TLS is optional. Nothing of a received header is logged; the
calling AE title of a rejected association (a device's name, not a patient's) is.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radiomicsd.daemon.logs import get_logger
from radiomicsd.daemon.metrics import Metrics
from radiomicsd.pipeline.errors import ConfigError
from radiomicsd.pipeline.settings import setting

log = get_logger("radiomicsd.dicom")

#: Storage SOP classes taken: ultrasound image and multi-frame (and their retired forms, which
#: old devices still send) and the secondary captures scan converters and PACS exports make.
STORAGE_CLASSES = ("1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",
                   "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3",
                   "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.4")
VERIFICATION = "1.2.840.10008.1.1"
#: Transfer syntaxes refused (by UID prefix): MPEG-2, MPEG-4/H.264, HEVC (not decoded here).
_VIDEO_SYNTAXES = ("1.2.840.10008.1.2.4.10", "1.2.840.10008.1.2.4.11")


def transfer_syntaxes() -> list[str]:
    """Every transfer syntax pynetdicom knows but the video ones: the uncompressed ones,
    deflate, JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000, RLE."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES

    return [ts for ts in ALL_TRANSFER_SYNTAXES if not ts.startswith(_VIDEO_SYNTAXES)]


SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


@dataclass(frozen=True)
class ScpSettings:
    """The Storage SCP (see the module docstring)."""

    enabled: bool = setting(False, "accept C-STORE from ultrasound machines and PACS")
    host: str = setting("127.0.0.1", "listen address: loopback unless you mean it")
    port: int = setting(11112, "TCP port", ge=1, le=65535)
    ae_title: str = setting("RADIOMICSD", "this SCP's AE title (1-16 characters)")
    allowed_callers: tuple[str, ...] = setting((), "calling AE titles accepted; empty = any")
    folder: str = setting("dicom-scp", "subfolder of input_dir that received files land in")
    max_associations: int = setting(8, "concurrent associations", ge=1, le=256)
    max_pdu_bytes: int = setting(65536, "largest PDU accepted (bytes)", ge=4096,
                                 le=16 * 1024 * 1024)
    max_instance_bytes: int = setting(1 << 30, "largest instance accepted (bytes)", ge=1024)
    timeout_seconds: float = setting(30.0, "ACSE, DIMSE and network idle timeouts", gt=0)
    tls_cert: Path | None = setting(None, "PEM certificate: TLS on (with tls_key)")
    tls_key: Path | None = setting(None, "PEM private key of tls_cert")
    tls_ca: Path | None = setting(None, "PEM CA bundle: callers must present a certificate")

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title.strip()) <= 16:
            raise ValueError("dicom_scp.ae_title: 1 to 16 characters")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("dicom_scp.tls_cert and tls_key go together")
        if "/" in self.folder or self.folder.startswith("."):
            raise ValueError("dicom_scp.folder: a plain folder name, not hidden")


def _ssl_context(settings: ScpSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_ca)
    return context


def write_durably(folder: Path, data: bytes) -> Path:
    """``data`` as ``folder/<sha256[:32]>.dcm``, fsync'ed with its folder before returning;
    an existing file of that name (the same content, sent again) is left as it is."""
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / (hashlib.sha256(data).hexdigest()[:32] + ".dcm")
    if target.exists():
        return target
    hidden = folder / f".{secrets.token_hex(8)}.part"
    fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(hidden, target)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


class StorageScp:
    """The listening SCP; :meth:`start` binds (ConfigError when the port is taken)."""

    def __init__(self, settings: ScpSettings, input_dir: Path, metrics: Metrics) -> None:
        self.settings = settings
        self.folder = input_dir / settings.folder
        self.metrics = metrics
        from pynetdicom import AE  # pynetdicom only when the SCP is on

        ae = AE(ae_title=settings.ae_title)
        ae.maximum_associations = settings.max_associations
        ae.maximum_pdu_size = settings.max_pdu_bytes
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_seconds
        if settings.allowed_callers:
            ae.require_calling_aet = list(settings.allowed_callers)
        ae.add_supported_context(VERIFICATION)
        for sop_class in STORAGE_CLASSES:
            ae.add_supported_context(sop_class, transfer_syntaxes())
        self.ae = ae
        self.server: Any = None

    def start(self) -> None:
        from pynetdicom import evt

        handlers: list[Any] = [(evt.EVT_C_STORE, self._store), (evt.EVT_C_ECHO, self._echo),
                    (evt.EVT_ACCEPTED, self._accepted), (evt.EVT_REJECTED, self._rejected)]
        try:
            self.server = self.ae.start_server(
                (self.settings.host, self.settings.port), block=False, evt_handlers=handlers,
                ssl_context=_ssl_context(self.settings))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.settings.host}:{self.settings.port} "
                              f"for DICOM: {exc.strerror}") from None
        log.info("dicom.listening", host=self.settings.host, port=self.port,
                 ae_title=self.settings.ae_title)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1]) if self.server is not None else 0

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _accepted(self, _event: Any) -> None:
        self.metrics.dicom_associations.labels("accepted").inc()

    def _rejected(self, event: Any) -> None:
        self.metrics.dicom_associations.labels("rejected").inc()
        log.warning("dicom.association_rejected",
                    calling_ae=str(event.assoc.requestor.ae_title).strip())

    def _echo(self, _event: Any) -> int:
        return SUCCESS

    def _store(self, event: Any) -> int:
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # a dataset pynetdicom cannot encode: not understood
            self.metrics.dicom_instances.labels("refused").inc()
            log.warning("dicom.store_refused", detail="a dataset pynetdicom cannot encode")
            return CANNOT_UNDERSTAND
        if len(data) > self.settings.max_instance_bytes:
            self.metrics.dicom_instances.labels("refused").inc()
            log.warning("dicom.store_refused", detail="larger than max_instance_bytes",
                        bytes=len(data))
            return OUT_OF_RESOURCES
        try:
            write_durably(self.folder, data)
        except OSError as exc:
            self.metrics.dicom_instances.labels("failed").inc()
            log.error("dicom.store_failed", error=exc.strerror)
            return OUT_OF_RESOURCES
        self.metrics.dicom_instances.labels("received").inc()
        return SUCCESS


def echo(host: str, port: int, *, ae_title: str = "RADIOMICSD", called: str = "ANY-SCP",
         timeout: float = 10.0) -> str:
    """C-ECHO ``host:port``; returns a one-line result (raises ConfigError when it fails)."""
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise ConfigError(f"no association with {host}:{port} (refused, rejected or no answer)")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != SUCCESS:
        raise ConfigError(f"C-ECHO to {host}:{port} failed")
    return f"C-ECHO {host}:{port} ({called}): success"
