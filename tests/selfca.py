"""A self-made certificate authority for TLS tests (openssl's command line): a CA, and
certificates it signs for 127.0.0.1 (CN and IP subjectAltName)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def make_cert(folder: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    """(key, certificate) PEM files of ``name`` in ``folder``: a self-signed CA when ``ca`` is
    None, else a certificate for 127.0.0.1 signed by ``ca`` = (key, certificate)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    if ca is None:
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", f"/CN={name}", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
    else:
        csr = folder / f"{name}.csr"
        subprocess.run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=127.0.0.1", "-keyout", key, "-out", csr],
                       check=True, capture_output=True)
        ext = folder / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        subprocess.run([openssl, "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0],
                        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
                       check=True, capture_output=True)
    return key, cert
