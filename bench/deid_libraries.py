"""How faithfully maintained de-identification libraries follow PS3.15 Table E.1-1.

Each attribute of the table (pipeline/deid/annex_e.tsv) is put alone, with a value of its VR,
into a small US dataset; each library de-identifies it; the result is compared with the Basic
Profile's action (X removed; Z emptied or replaced; D replaced; U a new UID; X/Z, X/D, Z/D and
X/Z/D removed, emptied or replaced). This is why radiomicsd applies the table itself
(pipeline/deid/dicom_header.py; tests/test_dicom_output.py walks every row). The libraries are
not dependencies; run it in a venv of its own:

    python3 -m venv /tmp/libs && /tmp/libs/bin/pip install dicognito dicom-anonymizer deid
    /tmp/libs/bin/python bench/deid_libraries.py

Measured 2026-12-02, of the 616 rows left when the file meta and Patient Name / ID (which every
library replaces) are set aside: dicognito 0.19.0 131, dicom-anonymizer 2.1.0 569 (it misses,
e.g., Overlay Date, Curve Date, Last Menstrual Date), deid 0.4.13 with its default recipe 178
(2 errors); radiomicsd 616 (tests/test_dicom_output.py).
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

TABLE = Path(__file__).resolve().parent.parent / "pipeline" / "deid" / "annex_e.tsv"
SAMPLE: dict[str, Any] = {
    "AE": "STATION1", "AS": "011Y", "CS": "VALUE", "DA": "20110405", "DS": "1.5",
    "DT": "20110405093000", "IS": "7", "LO": "Long text", "LT": "A long text", "PN": "DOE^JANE",
    "SH": "Short", "ST": "Short text", "TM": "093000", "UC": "Unlimited", "UI": "1.2.3.4.5",
    "UR": "http://example.org", "UT": "Text", "FL": 1.5, "FD": 1.5, "SL": 3, "SS": 3, "UL": 3,
    "US": 3, "SV": 3, "UV": 3, "AT": 0x00100010, "OB": b"\x01\x02", "OW": b"\x01\x02",
    "OF": b"\0\0\0\0", "UN": b"\x01\x02", "OD": b"\0" * 8, "OL": b"\0" * 4, "OV": b"\0" * 8}


def rows() -> list[tuple[int, str, str]]:
    """(tag, basic action, name) of every concrete row of the table."""
    out = []
    for line in TABLE.read_text().splitlines():
        if not line.strip() or line.startswith(("#", "GGGG")):
            continue
        tag, basic, _, _, name = line.split("\t")
        out.append((int(tag.replace("x", "0"), 16), basic, name))
    return out


def base() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.6.1", "1.2.3.9"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.7", "1.2.3.8"
    ds.PatientID, ds.PatientName, ds.Modality = "4711", "DOE^JANE", "US"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def as_table_says(basic: str, before: DataElement, after: DataElement | None) -> bool:
    changed = after is None or not after.value or after.value != before.value
    if basic == "X" or (basic == "X/Z/U*" and before.VR != "UI"):
        return after is None
    if basic in ("Z", "D", "U", "X/Z/U*"):
        return after is not None and changed
    return changed  # X/Z, X/D, Z/D, X/Z/D


def measure(name: str, apply: Callable[[Dataset], Dataset]) -> None:
    ok = bad = errors = 0
    misses = []
    for tag, basic, attribute in rows():
        if tag >> 16 == 0x0002 or tag in (0x00100010, 0x00100020):
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        ds = base()
        value = Sequence([Dataset()]) if vr == "SQ" else SAMPLE[vr]
        if vr == "SQ":
            value[0].CodeValue = "X1"
        ds.add_new(tag, vr, value)
        before = copy.deepcopy(ds[tag])
        try:
            after = apply(ds).get(tag)
        except Exception:  # noqa: BLE001 (a library's failure is a figure here)
            errors += 1
            continue
        if as_table_says(basic, before, after):
            ok += 1
        else:
            bad += 1
            misses.append(f"{tag:08X} {basic} {attribute}")
    print(f"{name}: {ok} as the table says, {bad} not, {errors} errors; e.g. {misses[:6]}")


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    import dicognito.anonymizer
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    from dicomanonymizer import anonymize_dataset

    anonymizer = dicognito.anonymizer.Anonymizer()

    def with_dicognito(ds: Dataset) -> Dataset:
        anonymizer.anonymize(ds)
        return ds

    def with_dicom_anonymizer(ds: Dataset) -> Dataset:
        anonymize_dataset(ds, delete_private_tags=True)
        return ds

    recipe = DeidRecipe()

    def with_deid(ds: Dataset) -> Dataset:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.dcm"
            ds.save_as(path, enforce_file_format=True)
            return replace_identifiers([str(path)], deid=recipe, save=False,
                                       remove_private=True)[0]

    measure("dicognito", with_dicognito)
    measure("dicom-anonymizer", with_dicom_anonymizer)
    measure("deid (default recipe)", with_deid)


if __name__ == "__main__":
    main()
