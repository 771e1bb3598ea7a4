"""Is it DICOM? A content check that needs no DICOM library (so videos never import one).

DICOM is recognised by the ``DICM`` marker at offset 128, or, for files written without the
preamble, by a dataset whose first elements parse: a group up to 0x0008 first, tags
ascending, valid VRs (explicit) or lengths that fit.
"""

from __future__ import annotations

import struct
from pathlib import Path

from radiomicsd.pipeline.video import Source

#: Bytes :func:`is_dicom` reads.
SNIFF_BYTES = 4096
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_VRS = _LONG_VRS | {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS",
                    b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                    b"US"}


def is_dicom(source: Source) -> bool:
    """Whether ``source`` holds DICOM, by content: the ``DICM`` prefix at offset 128, or a
    dataset without preamble (its first elements parse as DICOM: a group up to 0x0008 first,
    tags ascending, valid VRs or lengths). Reads at most :data:`SNIFF_BYTES`; a stream's
    position is kept."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            head = f.read(SNIFF_BYTES)
    else:
        origin = source.tell()
        try:
            source.seek(0)
            head = source.read(SNIFF_BYTES)
        finally:
            source.seek(origin)
    if head[128:132] == b"DICM":
        return True
    return any(_plausible_dataset(head, implicit=implicit, little=little)
               for implicit, little in ((True, True), (False, True), (False, False)))


def _plausible_dataset(head: bytes, *, implicit: bool, little: bool) -> bool:
    """At least three whole elements at the start of ``head`` read as a DICOM dataset."""
    end = "<" if little else ">"
    pos, last, seen = 0, -1, 0
    while pos + 8 <= len(head) and seen < 3:
        group, elem = struct.unpack_from(end + "HH", head, pos)
        tag = group << 16 | elem
        if tag <= last or (seen == 0 and group > 0x0008):
            return False
        if implicit:
            (length,) = struct.unpack_from(end + "L", head, pos + 4)
            pos += 8
        else:
            vr = head[pos + 4:pos + 6]
            if vr not in _VRS:
                return False
            if vr in _LONG_VRS:
                if pos + 12 > len(head):
                    break
                (length,) = struct.unpack_from(end + "L", head, pos + 8)
                pos += 12
            else:
                (length,) = struct.unpack_from(end + "H", head, pos + 6)
                pos += 8
        if length == 0xFFFFFFFF:
            return seen >= 1  # a sequence of undefined length after a valid element
        if length > SNIFF_BYTES * 16:
            return False
        pos += length
        last, seen = tag, seen + 1
    return seen >= 3 or (seen >= 1 and pos == len(head))
