"""The options of the DICOM output's confidentiality profile (PS3.15 Annex E), apart from
:mod:`radiomicsd.pipeline.deid.dicom_header` so that reading the settings imports no pydicom."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from radiomicsd.pipeline.settings import setting


class DatePolicy(str, enum.Enum):
    """What happens to dates."""

    REMOVE = "remove"  #: the Basic Profile: zero length or removed
    SHIFT = "shift"    #: Retain Longitudinal Temporal Information with Modified Dates


@dataclass(frozen=True)
class ProfileSettings:
    """The options of the confidentiality profile (see the module docstring)."""

    retain_device_identity: bool = setting(
        False, "Retain Device Identity Option: keep station name, device serial number and "
        "the other device attributes of the table")
    dates: DatePolicy = setting(
        DatePolicy.REMOVE, "remove: as the Basic Profile | shift: every date moved back by a "
        "keyed per-patient offset (Retain Longitudinal Temporal Information with Modified "
        "Dates Option)")
    max_shift_days: int = setting(3650, "shift: offsets are 1..this many days", ge=1,
                                  le=36500)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dates", DatePolicy(self.dates))
