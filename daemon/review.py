"""``needs_review``: what the daemon leaves for a person, and ``radiomicsd review``.

A clip the live-image detector cannot vouch for is quarantined as any refusal (``q-<id>`` and
its note ``q-<id>.json``), plus the proposed mask ``q-<id>.mask.png`` (0/255 grey) and its
preview ``q-<id>.preview.png`` (:mod:`radiomicsd.pipeline.deid.preview`: pixelated, no legible
text). The note's ``review`` holds the input's non-identifying facts, the detector's method and
the kept share.

``radiomicsd review list | show ID | approve ID [--profile NAME] | reject ID``:

* ``approve`` pins the proposed mask for this content (and, with ``--profile``, for the device:
  :mod:`radiomicsd.daemon.pins`), marks the content ``approved`` in the journal and moves the
  file back into the input folder as ``review-<id>``, where the daemon (or ``radiomicsd
  anonymise`` with the same state folder) exports it with that mask, the OCR check included;
* ``reject`` deletes the quarantined file and its review files; the journal keeps the content
  quarantined, so the same bytes dropped again are skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from radiomicsd.daemon.beneath import InputRoot, move_out, write_private
from radiomicsd.daemon.pins import Pins, profile_key
from radiomicsd.pipeline.deid.preview import decode_mask, encode_png
from radiomicsd.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from radiomicsd.daemon.export import ReviewMaterial
    from radiomicsd.daemon.settings import Settings

REASON = "needs_review"
MASK_SUFFIX, PREVIEW_SUFFIX = ".mask.png", ".preview.png"


def review_note(material: ReviewMaterial) -> dict[str, Any]:
    """The note's ``review`` entry: facts, method, kept share (0..1)."""
    share = float(np.count_nonzero(material.keep)) / material.keep.size
    return {"facts": material.facts, "method": material.method,
            "kept_share": round(share, 4)}


def write_review_files(quarantined: Path, material: ReviewMaterial) -> None:
    """The proposed mask and its preview beside the quarantined file (0600)."""
    folder, name = quarantined.parent, quarantined.name
    write_private(folder, name + MASK_SUFFIX, encode_png(material.keep))
    write_private(folder, name + PREVIEW_SUFFIX, encode_png(material.preview))


@dataclass(frozen=True)
class Entry:
    """One quarantined ``needs_review`` input: its id (the quarantine name) and note."""

    folder: Path
    id: str
    note: dict[str, Any]

    @property
    def file(self) -> Path:
        return self.folder / self.id

    @property
    def mask_file(self) -> Path:
        return self.folder / (self.id + MASK_SUFFIX)

    @property
    def preview_file(self) -> Path:
        return self.folder / (self.id + PREVIEW_SUFFIX)

    def paths(self) -> list[Path]:
        return [self.file, self.folder / (self.id + ".json"), self.mask_file,
                self.preview_file]


def entries(quarantine_dir: Path) -> list[Entry]:
    """The ``needs_review`` entries whose file is still in the quarantine, oldest first."""
    found = []
    for note_path in sorted(quarantine_dir.glob("q-*.json")) if quarantine_dir.is_dir() else []:
        try:
            note = json.loads(note_path.read_text())
        except (OSError, ValueError):
            continue
        entry = Entry(quarantine_dir, note_path.stem, note)
        if isinstance(note, dict) and note.get("reason") == REASON and entry.file.is_file():
            found.append(entry)
    return sorted(found, key=lambda e: e.note.get("time", 0))


def find(quarantine_dir: Path, entry_id: str) -> Entry:
    for entry in entries(quarantine_dir):
        if entry.id == entry_id:
            return entry
    raise ConfigError(f"no needs_review entry {entry_id!r} in the quarantine folder")


def describe(entry: Entry) -> str:
    """One line: id, UTC time, device or frame size, method, kept share, preview or not."""
    review = entry.note.get("review") or {}
    facts = review.get("facts") or {}
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.note.get("time", 0)))
    if facts.get("format") == "dicom":
        source = (f"dicom {facts.get('manufacturer') or '?'} "
                  f"{facts.get('manufacturer_model_name') or '?'} "
                  f"{facts.get('columns')}x{facts.get('rows')}")
    else:
        source = f"video {facts.get('width')}x{facts.get('height')}"
    kept = review.get("kept_share")
    kept_text = "-" if kept is None else f"{100 * kept:.1f}%"
    preview = "preview" if entry.preview_file.is_file() else "no preview"
    return (f"{entry.id}  {when}  {source}  {review.get('method', '-')}  kept {kept_text}  "
            f"{preview}")


def approve(settings: Settings, entry_id: str, *, profile: str | None = None) -> str:
    """Approve entry ``entry_id``; returns what was done, for the console."""
    from radiomicsd.daemon.journal import open_journal

    entry = find(settings.quarantine_dir, entry_id)
    digest = entry.note.get("digest")
    review = entry.note.get("review") or {}
    if not digest:
        raise ConfigError("the entry has no content digest")
    try:
        keep = decode_mask(entry.mask_file.read_bytes())
    except OSError:
        keep = None
    if keep is None:
        raise ConfigError("the entry has no proposed mask to approve")
    pins = Pins(settings.state_dir)
    pins.approve(digest, keep)
    done = ["mask pinned for this content"]
    if profile is not None:
        key = profile_key(review.get("facts") or {}, (keep.shape[0], keep.shape[1]))
        pins.write_profile(profile, key, keep)
        done.append(f"profile {profile} written for {key['format']} inputs like it")
    journal = open_journal(settings, key=b"")
    try:
        journal.approve(digest)
    finally:
        journal.close()
    try:
        with InputRoot(settings.quarantine_dir) as root:
            moved = move_out(root, entry.file, settings.input_dir, f"review-{entry.id}")
    except FileExistsError:
        raise ConfigError(f"review-{entry.id} exists in the input folder already") from None
    for path in entry.paths()[1:]:
        path.unlink(missing_ok=True)
    done.append(f"input back in the input folder as {moved.name}")
    return "approved: " + "; ".join(done)


def reject(settings: Settings, entry_id: str) -> str:
    """Delete entry ``entry_id`` (file, note, mask, preview); the journal keeps it refused."""
    entry = find(settings.quarantine_dir, entry_id)
    for path in entry.paths():
        path.unlink(missing_ok=True)
    return f"rejected: {entry.id} deleted; the same content dropped again is skipped"


def run(settings: Settings, action: str, entry_id: str | None, *, profile: str | None,
        copy_to: Path | None, console: TextIO) -> int:
    """``radiomicsd review ACTION [ID]``; 0 on success (ConfigError: exit code 2)."""
    if action == "list":
        found = entries(settings.quarantine_dir)
        for entry in found:
            console.write(describe(entry) + "\n")
        console.write(f"{len(found)} input(s) need review\n")
        return 0
    if entry_id is None:
        raise ConfigError(f"review {action} needs the entry's id (see: radiomicsd review list)")
    if action == "show":
        entry = find(settings.quarantine_dir, entry_id)
        console.write(describe(entry) + "\n")
        if not entry.preview_file.is_file():
            raise ConfigError("the entry has no preview")
        if copy_to is not None:
            write_private(copy_to.parent, copy_to.name, entry.preview_file.read_bytes())
            console.write(f"preview written to {copy_to}\n")
        else:
            console.write(f"preview: {entry.preview_file}\n")
        return 0
    result = (approve(settings, entry_id, profile=profile) if action == "approve"
              else reject(settings, entry_id))
    console.write(result + "\n")
    return 0
