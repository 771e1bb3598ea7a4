"""De-identified DICOM headers: PS3.15 Annex E, the Basic Application Level Confidentiality
Profile with the Clean Pixel Data Option, table-driven.

The table is the standard's Table E.1-1 (``annex_e.tsv`` beside this module, with its
provenance). Each attribute of a source header is treated by its row:

===========  ===============================================================================
action       here
===========  ===============================================================================
X            removed
Z            kept with a zero-length value (an empty sequence for SQ)
D            a dummy value of its VR (names and IDs: the keyed patient pseudonym)
U            a keyed, deterministic UID: ``2.25.`` + the integer of the first 128 bits of
             HMAC-SHA-256(key, original UID); the same study gives the same new Study UID
Z/D          zero length (the table's Z/D attributes are Type 2 in ultrasound and secondary
             capture IODs)
X/Z, X/Z/D   zero length for the attributes of :data:`TYPE_2`, removed otherwise
X/D          removed
X/Z/U*       a UID: new as for U; any other VR: removed
K            kept; a sequence's items are treated attribute by attribute
===========  ===============================================================================

Options: **Retain Device Identity** (``retain_device_identity``) applies the table's device
column (K: kept); **Retain Longitudinal Temporal Information with Modified Dates**
(``dates: shift``) applies its column: every date (DA, and the date part of DT) is moved back by
a keyed offset per patient, 1..``max_shift_days`` days, from HMAC(key, Patient ID); times stay.
Without it, dates follow the Basic Profile (mostly zero length or removed).

Attributes not in the table are kept (the profile holds every attribute that may identify), except
private attributes, which are removed (the Retain Safe Private Option is not offered), and
sequences, whose items are treated recursively. The result says what was done:
PatientIdentityRemoved YES, BurnedInAnnotation NO, DeidentificationMethod and its code sequence
(CID 7050), LongitudinalTemporalInformationModified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from radiomicsd.pipeline.deid.profile import DatePolicy, ProfileSettings


@dataclass(frozen=True)
class Row:
    """One row of Table E.1-1."""

    tag: str      #: GGGGEEEE, x for repeating-group digits
    basic: str    #: the Basic Profile's action code
    options: dict[str, str]
    name: str


@cache
def table() -> dict[str, Row]:
    """Table E.1-1 by tag (GGGGEEEE, upper-case hex, x in repeating groups)."""
    text = resources.files("radiomicsd.pipeline.deid").joinpath("annex_e.tsv").read_text()
    rows = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        tag, basic, options, _, name = line.split("\t")
        opts = dict(o.split("=") for o in options.split(";")) if options != "-" else {}
        rows[tag] = Row(tag, basic, opts, name)
    return rows


@cache
def _repeating() -> list[tuple[re.Pattern[str], Row]]:
    return [(re.compile(tag.replace("x", "[0-9A-F]")), row) for tag, row in table().items()
            if "x" in tag]


def row_of(tag: int) -> Row | None:
    """The table's row for ``tag`` (repeating groups included), or None."""
    text = f"{tag:08X}"
    row = table().get(text)
    if row is not None:
        return row
    return next((r for pattern, r in _repeating() if pattern.fullmatch(text)), None)


#: Attributes the table empties or removes that are Type 2 (present, maybe empty) in the
#: ultrasound and secondary capture IODs: kept empty; the table's other X/Z and X/Z/D
#: attributes are removed (a Type 1C or 3 attribute may be absent, an empty 1C is an error).
TYPE_2 = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Laterality",
    "Manufacturer", "InstanceNumber", "PatientOrientation", "ContentDate", "ContentTime",
})

#: CID 7050 codes (scheme DCM) for DeidentificationMethodCodeSequence.
CODES = {"basic": ("113100", "Basic Application Confidentiality Profile"),
         "clean_pixels": ("113101", "Clean Pixel Data Option"),
         "device_identity": ("113109", "Retain Device Identity Option"),
         "long_modified_dates": ("113107", "Retain Longitudinal Temporal Information "
                                           "Modified Dates Option")}

#: Dummy values by VR for action D (PN and LO IDs get the patient pseudonym instead).
_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0",
          "DS": "0", "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0,
          "CS": "ANONYMIZED"}


def keyed_uid(key: bytes, value: str) -> str:
    """``2.25.<int>`` from the first 128 bits of HMAC-SHA-256(key, 'uid:' + value)."""
    digest = hmac.new(key, b"uid:" + value.strip().encode("ascii", "replace"),
                      hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def patient_pseudonym(key: bytes, patient_id: str) -> str:
    """The keyed pseudonym of a patient: 'P' + 24 hex digits of HMAC(key, 'patient:' + id)."""
    digest = hmac.new(key, b"patient:" + patient_id.encode("utf-8", "replace"),
                      hashlib.sha256).hexdigest()
    return "P" + digest[:24].upper()


def shift_days(key: bytes, patient_id: str, limit: int) -> int:
    """The keyed offset, 1..``limit`` days, of a patient's dates."""
    digest = hmac.new(key, b"date-shift:" + patient_id.encode("utf-8", "replace"),
                      hashlib.sha256).digest()
    return 1 + int.from_bytes(digest[:8], "big") % limit


@dataclass(frozen=True, kw_only=True)
class Deidentifier:
    """Applies the profile to headers of one patient (see the module docstring)."""

    key: bytes
    settings: ProfileSettings
    patient_id: str  #: the source's Patient ID ('' when absent): keys pseudonym and offset

    @property
    def pseudonym(self) -> str:
        return patient_pseudonym(self.key, self.patient_id)

    def action(self, element: DataElement) -> str:
        """The action for ``element`` after the options: X, Z, D, U, K, C (shift) or keep."""
        if element.tag.is_private:
            return "X"
        row = row_of(int(element.tag))
        if row is None:
            return "K"
        if self.settings.retain_device_identity and "device_identity" in row.options:
            return row.options["device_identity"]
        if self.settings.dates is DatePolicy.SHIFT and "long_modified_dates" in row.options:
            return "C" if element.VR in ("DA", "DT") else "K"
        if row.basic == "X/Z/U*":
            return "U" if element.VR == "UI" else "X"
        if row.basic in ("X/Z", "X/Z/D"):
            return "Z" if element.keyword in TYPE_2 else "X"
        return {"Z/D": "Z", "X/D": "X"}.get(row.basic, row.basic)

    def apply(self, source: Dataset) -> Dataset:
        """A new dataset: ``source`` (without file meta and pixel data) de-identified."""
        out = self._clean(source)
        self._stamp(out)
        return out

    def _clean(self, source: Dataset) -> Dataset:
        """Every attribute of ``source`` treated; values the reader deferred (over 1 MiB) are
        dropped unread (the stream they came from is gone; no identity is that long, and a
        deferred value of the table's would be removed or emptied anyway)."""
        out = Dataset()
        for tag in source.keys():  # noqa: SIM118 (iterating a Dataset loads every element)
            raw = source.get_item(tag, keep_deferred=True)
            if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
                continue
            element = source[tag]
            if element.tag >= 0x7FE00010 or element.tag.group == 0x0002:
                continue  # pixel data (and what may follow it), file meta: the writer's
            new = self._element(element)
            if new is not None:
                out.add(new)
        return out

    def _element(self, element: DataElement) -> DataElement | None:
        action = self.action(element)
        vr, tag = element.VR, element.tag
        if action == "X":
            return None
        if action == "Z":
            return DataElement(tag, vr, Sequence() if vr == "SQ" else None)
        if action == "U":
            return DataElement(tag, vr, self._uids(element.value))
        if action == "D":
            return DataElement(tag, vr, self._dummy(element))
        if action == "C":
            return DataElement(tag, vr, self._shift(element.value, vr))
        if vr == "SQ":
            return DataElement(tag, vr, Sequence([self._clean(item) for item in element.value]))
        return DataElement(tag, vr, element.value)

    def _uids(self, value: Any) -> Any:
        if isinstance(value, (MultiValue, list)):
            return [keyed_uid(self.key, str(v)) for v in value]
        return keyed_uid(self.key, str(value)) if value else value

    def _dummy(self, element: DataElement) -> Any:
        if element.VR == "SQ":
            return Sequence()
        if element.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC"):
            if element.VR == "PN":
                return self.pseudonym + "^"
            return self.pseudonym if element.VR in ("LO", "SH") else "ANONYMIZED"
        return _DUMMY.get(element.VR)

    def _shift(self, value: Any, vr: str) -> Any:
        if not value:
            return value
        days = shift_days(self.key, self.patient_id, self.settings.max_shift_days)
        values = value if isinstance(value, (MultiValue, list)) else [value]
        out = []
        for text in (str(v).strip() for v in values):
            try:
                day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
            except ValueError:
                out.append("")  # a date that does not parse cannot be shifted: dropped
                continue
            moved = (day - dt.timedelta(days=days)).strftime("%Y%m%d")
            out.append(moved + (text[8:] if vr == "DT" else ""))
        return out if isinstance(value, (MultiValue, list)) else out[0]

    def _stamp(self, out: Dataset) -> None:
        """The attributes that record the de-identification."""
        out.PatientName = self.pseudonym + "^"  # the pseudonym as the family name
        out.PatientID = self.pseudonym
        out.PatientIdentityRemoved = "YES"
        out.BurnedInAnnotation = "NO"
        used = ["basic", "clean_pixels"]
        if self.settings.retain_device_identity:
            used.append("device_identity")
        if self.settings.dates is DatePolicy.SHIFT:
            used.append("long_modified_dates")
        out.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.settings.dates is DatePolicy.SHIFT else "REMOVED")
        out.DeidentificationMethod = ["radiomicsd, PS3.15 Table E.1-1",
                                      *(CODES[u][1] for u in used)]
        codes = []
        for name in used:
            item = Dataset()
            item.CodeValue, item.CodeMeaning = CODES[name]
            item.CodingSchemeDesignator = "DCM"
            codes.append(item)
        out.DeidentificationMethodCodeSequence = Sequence(codes)
