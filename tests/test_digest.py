"""The digests of a batch input made beside its decoding (daemon/digest.py): the same digest as
before decoding, and a change made while the file is decoded is still caught before commit."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from radiomicsd.daemon.digest import CHUNK, Bracket
from radiomicsd.daemon.sources import open_input


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.bin"
    path.write_bytes(os.urandom(5 * CHUNK + 12345))
    return path


def _read_all(stream, piece: int = 300_000) -> bytes:
    out = bytearray()
    while chunk := stream.read(piece):
        out += chunk
    return bytes(out)


def test_deferred_digest_is_the_digest_of_the_bytes(data_file: Path) -> None:
    opened = open_input(data_file, defer_digest=True)
    try:
        data = _read_all(opened.stream)
        assert data == data_file.read_bytes()
        assert opened.digest == hashlib.sha256(data).digest()
        assert opened.unchanged()
    finally:
        opened.close()
    plain = open_input(data_file)
    try:
        assert plain.digest == hashlib.sha256(data).digest() and plain.unchanged()
    finally:
        plain.close()


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))


def test_a_change_after_the_first_digest_is_caught(data_file: Path) -> None:
    opened = open_input(data_file, defer_digest=True)
    try:
        opened.stream.read(2 * CHUNK)
        assert opened.digest  # hashed whole, then the file changes where it is not read yet
        _flip(data_file, 4 * CHUNK)
        decoded = _read_all(opened.stream)
        assert decoded and not opened.unchanged()
    finally:
        opened.close()


@pytest.mark.parametrize("where", [100, 2 * CHUNK + 7, 4 * CHUNK])
def test_what_is_decoded_is_what_was_hashed_or_the_change_is_caught(data_file: Path,
                                                                   where: int) -> None:
    """A change at any time, anywhere: either the check before commit says so, or every byte
    the decoder got is a byte the digest (the pseudonym's) was made of."""
    for _ in range(5):  # the threads' timing differs from run to run
        data_file.write_bytes(os.urandom(5 * CHUNK + 12345))
        opened = open_input(data_file, defer_digest=True)
        try:
            decoded = opened.stream.read(2 * CHUNK)
            _flip(data_file, where)
            decoded += _read_all(opened.stream)
            assert not opened.unchanged() or hashlib.sha256(decoded).digest() == opened.digest
        finally:
            opened.close()


def test_a_read_going_back_falls_back_to_a_whole_second_digest(data_file: Path) -> None:
    opened = open_input(data_file, defer_digest=True)
    try:
        _read_all(opened.stream)
        assert opened.digest  # the first digest is complete
        bracket = opened._bracket
        assert isinstance(bracket, Bracket)
        deadline = time.monotonic() + 10
        while bracket._second_at < CHUNK and time.monotonic() < deadline:
            time.sleep(0.01)  # the second digest follows the reads
        opened.stream.seek(0)  # a demuxer seeking back over what was read
        opened.stream.read(1000)
        assert bracket._reread
        assert opened.unchanged()  # nothing changed: the whole second digest agrees
        with open(data_file, "r+b") as f:
            f.write(b"\x00" * 10)
        assert not bracket.unchanged()
    finally:
        opened.close()


def test_closing_early_stops_the_threads(data_file: Path) -> None:
    opened = open_input(data_file, defer_digest=True)
    opened.stream.read(10)
    opened.close()  # no digest asked for: the threads stop, nothing hangs
    bracket = opened._bracket
    assert bracket is not None and not any(t.is_alive() for t in bracket._threads)
