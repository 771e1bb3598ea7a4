"""Keyed pseudonyms and content digests.

A pseudonym is HMAC-SHA-256(key, SHA-256(content)), hex, cut to 32 characters (128 bits).
Without the key nobody can link a pseudonym to a guessed video; with the same key the same
content always gets the same pseudonym, wherever the file lies and whatever it is called.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import BinaryIO

PSEUDONYM_CHARS = 32
MIN_KEY_BYTES = 16


def content_digest(stream: BinaryIO, chunk_bytes: int = 1 << 20) -> bytes:
    """SHA-256 of everything ``stream`` yields, read in chunks (constant memory)."""
    h = hashlib.sha256()
    for chunk in iter(lambda: stream.read(chunk_bytes), b""):
        h.update(chunk)
    return h.digest()


def pseudonym(key: bytes, digest: bytes) -> str:
    """Keyed pseudonym of a content digest (32 lowercase hex characters)."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"pseudonym key must have at least {MIN_KEY_BYTES} bytes")
    return hmac.new(key, digest, hashlib.sha256).hexdigest()[:PSEUDONYM_CHARS]
