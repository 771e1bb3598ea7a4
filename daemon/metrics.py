"""Prometheus metrics and ``/healthz`` on one small HTTP server (loopback by default)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The daemon's instruments, in a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.videos = Counter("radiomicsd_videos", "Videos by outcome and reason code",
                              ["outcome", "reason"], registry=r)
        self.frames = Counter("radiomicsd_frames", "Frames written", registry=r)
        self.processing = Histogram(
            "radiomicsd_processing_seconds", "Processing time per video", registry=r,
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640))
        self.latency = Histogram(
            "radiomicsd_latency_seconds", "End-to-end latency, settled -> output committed",
            registry=r, buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280))
        self.queue_depth = Gauge("radiomicsd_queue_depth", "Videos waiting for a worker",
                                 registry=r)
        self.in_flight = Gauge("radiomicsd_in_flight", "Videos being processed", registry=r)
        self.paused = Gauge("radiomicsd_output_paused",
                            "1 while the output side cannot take commits (work waits)",
                            registry=r)
        self.last_success = Gauge("radiomicsd_last_success_timestamp_seconds",
                                  "Unix time of the last committed output", registry=r)
        self.retries = Counter("radiomicsd_retries", "Transient failures retried", ["reason"],
                               registry=r)
        self.dicom_associations = Counter(
            "radiomicsd_dicom_associations", "DICOM associations by result (accepted, "
            "rejected)", ["result"], registry=r)
        self.dicom_sent = Counter(
            "radiomicsd_dicom_sent", "Instances sent by C-STORE (sent) and tries that failed "
            "(retry)", ["result"], registry=r)
        self.outbox = Gauge("radiomicsd_outbox", "Instances waiting to be sent", registry=r)
        self.dicom_instances = Counter(
            "radiomicsd_dicom_instances", "C-STORE instances by result (received, refused, "
            "failed)", ["result"], registry=r)


class HealthServer:
    """Serves ``/metrics`` and ``/healthz`` (200 while ``healthy()``, else 503) in a thread."""

    def __init__(self, metrics: Metrics, healthy: Callable[[], bool], host: str,
                 port: int) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/metrics":
                    body, code, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                elif self.path == "/healthz":
                    ok = healthy()
                    body = b"ok\n" if ok else b"unhealthy\n"
                    code, ctype = (200 if ok else 503), "text/plain"
                else:
                    body, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:  # access logs would be noise
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
