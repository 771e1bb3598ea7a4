"""Pinned masks: a person's decision replaces the live-image detector, never the OCR check.

Two kinds, both written by ``radiomicsd review approve`` into the state folder:

* an **approval** pins the mask of one content: ``approved/<digest>.png``; the next export of
  those bytes uses it;
* a **device profile** pins the live-image area of a device a site has checked once:
  ``profiles/<name>.json`` (what it matches) and ``profiles/<name>.png`` (the mask). A DICOM
  file matches on manufacturer, model name, rows and columns; a video on its frame size only
  (a video file names no device: every video of that size from any device gets the profile, so
  give a video profile only where one device makes videos of that size).

A mask is a 0/255 grey PNG of the frame's size; one of another size is ignored. Whatever mask
is pinned, the OCR check before commit still runs (:mod:`radiomicsd.pipeline.deid.verify`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radiomicsd.daemon.beneath import write_private
from radiomicsd.pipeline.deid.preview import decode_mask, encode_png

APPROVED = "approved"
PROFILES = "profiles"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DICOM_KEYS = ("manufacturer", "manufacturer_model_name", "rows", "columns")


def profile_key(facts: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """What a profile matches for an input with manifest ``source`` facts and (H, W) frames."""
    if facts.get("format") == "dicom":
        return {"format": "dicom", **{k: facts.get(k) for k in _DICOM_KEYS}}
    return {"format": "video", "width": shape[1], "height": shape[0]}


@dataclass(frozen=True)
class Pinned:
    """A pinned mask: uint8 (H, W) 0/255, and what pinned it (``approval`` or the profile's
    ``profile:<name>``)."""

    keep: NDArray[np.uint8]
    by: str


@dataclass(frozen=True)
class Pins:
    """The pinned masks under ``state_dir``."""

    state_dir: Path

    def for_input(self, digest: str | Callable[[], str], facts: dict[str, Any],
                  shape: tuple[int, int]) -> Pinned | None:
        """The approval of ``digest`` (hex, or a function giving it, called only when there are
        approvals: a digest still being computed is not waited for in vain), else the first
        profile (by name) matching, else None."""
        approvals = self.state_dir / APPROVED
        if approvals.is_dir() and any(approvals.iterdir()):
            hexdigest = digest() if callable(digest) else digest
            approved = self._mask(approvals / f"{hexdigest}.png", shape)
            if approved is not None:
                return Pinned(approved, "approval")
        key = profile_key(facts, shape)
        folder = self.state_dir / PROFILES
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                match = json.loads(path.read_text()).get("match")
            except (OSError, ValueError, AttributeError):
                continue
            if match == key:
                keep = self._mask(path.with_suffix(".png"), shape)
                if keep is not None:
                    return Pinned(keep, f"profile:{path.stem}")
        return None

    @staticmethod
    def _mask(path: Path, shape: tuple[int, int]) -> NDArray[np.uint8] | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return decode_mask(data, shape)

    def approve(self, digest: str, keep: NDArray[np.uint8]) -> Path:
        """Pin ``keep`` for the content ``digest`` (hex); replaces an earlier approval."""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("a content digest is 64 hex digits")
        return self._write(self.state_dir / APPROVED, f"{digest}.png", encode_png(keep))

    def write_profile(self, name: str, key: dict[str, Any], keep: NDArray[np.uint8]) -> Path:
        """Write profile ``name`` (letters, digits, ``_.-``); an existing one is not replaced."""
        if not _NAME.fullmatch(name):
            raise ValueError("a profile name is 1-64 letters, digits, '_', '.' or '-'")
        folder = self.state_dir / PROFILES
        if (folder / f"{name}.json").exists():
            raise FileExistsError(f"profile {name} exists; remove it first to replace it")
        self._write(folder, f"{name}.png", encode_png(keep))
        return self._write(folder, f"{name}.json",
                           json.dumps({"match": key}, indent=2).encode() + b"\n")

    @staticmethod
    def _write(folder: Path, name: str, data: bytes) -> Path:
        (folder / name).unlink(missing_ok=True)
        return write_private(folder, name, data)
