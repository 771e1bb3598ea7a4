"""Secrets: the pseudonym key (key file, environment, or generated once into the state folder),
the age identity for encrypted drops, and the fail-closed check that an enclave start was
attested (its secrets were injected)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from radiomicsd.daemon.settings import AGE_IDENTITY_ENV, AGE_IDENTITY_FILE_ENV, PSEUDONYM_KEY_ENV
from radiomicsd.pipeline.deid.pseudonym import MIN_KEY_BYTES
from radiomicsd.pipeline.errors import ConfigError

GENERATED_KEY_NAME = "pseudonym.key"


def _decode(text: bytes) -> bytes:
    """Hex text (64+ hex digits) is decoded; anything else is used as raw bytes."""
    stripped = text.strip()
    try:
        if len(stripped) >= 2 * MIN_KEY_BYTES:
            return bytes.fromhex(stripped.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        pass
    return stripped


def write_new_key(path: Path) -> None:
    """Write 32 random bytes as hex into a new file of mode 0600 (never overwrites)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_pseudonym_key(*, key_file: Path | None, state_dir: Path,
                       allow_generate: bool = True) -> tuple[bytes, str]:
    """Return (key, source) where source is 'file', 'env', 'generated' or 'state'.

    Order: ``pseudonym_key_file``, then ``$RADIOMICSD_PSEUDONYM_KEY``, then the key kept in
    ``state_dir``; if none exists and ``allow_generate``, a new one is written there (0600).
    """
    if key_file is not None:
        try:
            key, source = _decode(key_file.read_bytes()), "file"
        except OSError as exc:
            raise ConfigError(f"cannot read pseudonym_key_file: {exc.strerror}") from None
    elif os.environ.get(PSEUDONYM_KEY_ENV):
        key, source = _decode(os.environ[PSEUDONYM_KEY_ENV].encode()), "env"
    else:
        stored = state_dir / GENERATED_KEY_NAME
        source = "state"
        if not stored.exists():
            if not allow_generate:
                raise ConfigError(f"no pseudonym key: set {PSEUDONYM_KEY_ENV} or "
                                  "pseudonym_key_file")
            try:
                write_new_key(stored)
                source = "generated"
            except FileExistsError:
                pass
        key = _decode(stored.read_bytes())
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"pseudonym key too short: need at least {MIN_KEY_BYTES} bytes")
    return key, source


def load_age_identity(identity_file: Path | None) -> object | None:
    """The X25519 identity for ``*.age`` drops, or None when none is configured.

    Order: ``$RADIOMICSD_AGE_IDENTITY`` (how a SCONE session injects it), then the file named by
    ``$RADIOMICSD_AGE_IDENTITY_FILE``, then ``age.identity_file``. Comment lines are skipped.
    """
    text = os.environ.get(AGE_IDENTITY_ENV)
    source = os.environ.get(AGE_IDENTITY_FILE_ENV) or identity_file
    if not text and source:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the age identity file: {exc.strerror}") from None
    if not text:
        return None
    import pyrage

    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        return pyrage.x25519.Identity.from_str(lines[0])
    except Exception:  # IndexError (no line) or pyrage's IdentityError
        raise ConfigError("the age identity is not an AGE-SECRET-KEY-1... string") from None


def keygen(identity_file: Path) -> str:
    """Write a new age identity to ``identity_file`` (mode 0600, never overwrites); return the
    recipient string (``age1...``) that senders encrypt to."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    identity_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# recipient: {recipient}\n{identity}\n")
    return recipient


def check_attestation(marker: Path) -> None:
    """Fail closed unless the attestation marker and the injected secrets are present."""
    missing = []
    if not marker.is_file():
        missing.append("attestation marker file")
    if not os.environ.get(PSEUDONYM_KEY_ENV):
        missing.append(PSEUDONYM_KEY_ENV)
    if not os.environ.get(AGE_IDENTITY_ENV):
        missing.append(AGE_IDENTITY_ENV)
    if missing:
        raise ConfigError("require_attestation is set but this start was not attested: missing "
                          + ", ".join(missing))
