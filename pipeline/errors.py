"""Typed errors with stable reason codes.

Every way a video can be refused maps to one exception class and one reason code. Reason codes
are stable strings: they appear in the journal, in quarantine notes, in metrics labels and in the
batch summary, so renaming one is a breaking change.
"""

from __future__ import annotations


class RadiomicsError(Exception):
    """Base class: ``reason`` is the stable reason code, ``detail`` a short human text.

    ``detail`` must never contain the input's name, path or any burned-in text.
    """

    reason: str = "error"
    transient: bool = False

    def __init__(self, detail: str = "", reason: str | None = None) -> None:
        super().__init__(detail or self.reason)
        if reason is not None:
            self.reason = reason
        self.detail = detail


class InputError(RadiomicsError):
    """The input itself is bad: quarantine it, never retry."""

    reason = "bad_input"


class UnreadableContainer(InputError):
    reason = "unreadable_container"


class NoFrames(InputError):
    reason = "no_frames"


class Truncated(InputError):
    reason = "truncated"


class TooLarge(InputError):
    """A configured limit (file bytes, frame pixels, frame count) was exceeded."""

    reason = "too_large"


class EmptyFile(InputError):
    reason = "empty_file"


class NotRegularFile(InputError):
    reason = "not_regular_file"


class SymlinkRefused(InputError):
    reason = "symlink_refused"


class Unreadable(InputError):
    """The operating system refused to open the file (permissions)."""

    reason = "permission_denied"


class AgeWrongRecipient(InputError):
    """An age drop not encrypted to this daemon's recipient."""

    reason = "age_wrong_recipient"


class AgeTruncated(InputError):
    reason = "age_truncated"


class AgeTampered(InputError):
    """An encrypted chunk failed authentication before the last one."""

    reason = "age_tampered"


class AgeNoIdentity(InputError):
    """An age drop arrived but no identity is configured."""

    reason = "age_no_identity"


class ContentChanged(RadiomicsError):
    """The file changed while it was processed: treat it as new content, not as an error."""

    reason = "content_changed"
    transient = True


class TransientError(RadiomicsError):
    """Trouble reading an input that may pass (an I/O error): retry with backoff."""

    reason = "io_error"
    transient = True


class OutputUnavailable(TransientError):
    """The output side cannot take a commit (unwritable, gone, I/O error).

    Never the input's fault: the daemon pauses, reports itself unhealthy and retries its queue
    once the output works again; no input is quarantined for it.
    """

    reason = "output_unavailable"


class DiskFull(OutputUnavailable):
    reason = "disk_full"


class JournalUnavailable(OutputUnavailable):
    """The journal's database cannot be reached (a PostgreSQL server restarting, a network
    break): the daemon pauses like for an unwritable output and loses nothing."""

    reason = "journal_unavailable"


class ConfigError(RadiomicsError):
    """A configuration value is missing or invalid (exit code 2)."""

    reason = "config_error"


class NoDopplerTexture(RadiomicsError):
    """No frame of the video has Doppler pixels to measure texture on.

    An analysis outcome, not a bad file: the video is still de-identified, it just has no RHD
    grade.
    """

    reason = "no_doppler_texture"


class InvalidModel(ConfigError):
    """A model or weights file is missing, unreadable or made for another architecture.

    A configuration problem (the configured file is wrong), so it stops start-up rather than
    quarantining videos.
    """

    reason = "invalid_model"


class SparseFile(InputError):
    """Most of the file is holes (blocks never written): a copy still being filled in place
    (some copy tools set the final size first) or a crafted file, never a finished recording.

    Refused before any decoder reads it: holes cost no disk, but a decoder that trusts the
    sizes declared over them may allocate memory for all of them.
    """

    reason = "sparse_file"


class LyingContainer(InputError):
    """A container header declares sizes its file cannot hold, or no recording would need.

    E.g. an mp4 ``ftyp`` box spanning gigabytes, a box that overruns the box holding it, a
    sample table with more entries than bytes, an AVI RIFF size beyond the end of a complete
    file. Refused before FFmpeg, which would trust the size and allocate for it.
    """

    reason = "lying_container"


class DicomNoPixels(InputError):
    """A DICOM file without pixel data (a structured report, a presentation state, a
    waveform, a header-only object): there is nothing to de-identify as frames."""

    reason = "dicom_no_pixels"


class DicomUnsupportedSyntax(InputError):
    """A DICOM file whose pixel data no installed decoder reads: its transfer syntax (e.g. an
    MPEG/H.264/HEVC video syntax, a private one), or a pixel encoding outside what ultrasound
    uses (samples per pixel, bits allocated, photometric interpretation, float pixel data)."""

    reason = "dicom_unsupported_syntax"


class DicomBadGeometry(InputError):
    """A DICOM header's frame geometry (Number of Frames, Rows, Columns, samples, bits)
    disagrees with its pixel data, or is missing: decoding would yield wrong or shifted frames.
    A file cut short is ``truncated`` instead."""

    reason = "dicom_bad_geometry"
